"""PR curves of --evaluate: the curve data each evaluator gives, hand-computed on tiny
made-up sets, its AP equal to the evaluator's own figure, and pr_curve.png drawn from it.

KITTI (rules in test_kitti_ap.py's docstring): the curve is the devkit's 41 interpolated
precisions at moderate difficulty against recall i/40; AP40 = mean of points 1..40.
COCO (rules in test_coco_map.py's docstring): the curve is COCOeval's 101 precisions at
IoU 0.50 against recall 0, .01, ..., 1; its AP (the mean) is the table's AP50, and
COCOeval's 2**-52 in the denominator makes a precision of 1 read 1 - 2e-16.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detplug.core.evaluate.contract import EvaluationResult, ImageDetections, ImageTruth, PrecisionRecall
from detplug.core.pictures.pr_curves import (
    FILE_NAME,
    HEIGHT,
    WIDTH,
    draw_pr_curves,
    legend_label,
    pr_curve_path,
    title,
    write_pr_curves,
)
from detplug.plugins.evaluators import CocoMapParams, KittiAPParams
from detplug.plugins.evaluators.coco_map import coco_map_evaluator
from detplug.plugins.evaluators.kitti_ap import kitti_ap_evaluator

#: 100 x 50 px: tall enough for every KITTI difficulty (40 / 25 / 25 px).
KITTI_BOX = [100.0, 100.0, 200.0, 150.0]
#: 100 x 30 px: a moderate object, too small for easy (< 40 px).
KITTI_SMALL = [100.0, 100.0, 200.0, 130.0]
COCO_BOX = [100.0, 100.0, 200.0, 200.0]  # 100 x 100 px
ELSEWHERE = [400.0, 100.0, 500.0, 200.0]
KITTI_RECALL = np.arange(41) / 40
COCO_RECALL = np.arange(101) / 100
#: COCOeval's precision of 1: tp / (tp + fp + 2**-52).
COCO_ONE = 1 - 2e-16


def kitti(truths, found, classes=("Car", "Pedestrian"), **params) -> EvaluationResult:
    return kitti_ap_evaluator(KittiAPParams(**params), classes=classes).evaluate(truths, found)


def coco(truths, found, classes=("Car", "Pedestrian")) -> EvaluationResult:
    return coco_map_evaluator(CocoMapParams(), classes=classes).evaluate(truths, found)


def one_car_each(count: int, box=KITTI_BOX) -> tuple[list[ImageTruth], list[ImageDetections]]:
    """``count`` images with one Car each, found exactly, scores 0.99, 0.98, ... (distinct)."""
    truths = [ImageTruth(f"{i:06d}", [box], ["Car"]) for i in range(count)]
    found = [ImageDetections(f"{i:06d}", [box], ["Car"], [1 - (i + 1) / 100]) for i in range(count)]
    return truths, found


def coco_row(result: EvaluationResult, name: str) -> dict:
    return dict(zip(result.columns, next(row for row in result.rows if row[0] == name)))


# -- KITTI: the devkit's 41 points at moderate ----------------------------------------


def test_kitti_curve_with_a_false_positive_above_the_hits():
    # Two cars, hits scored 0.9 (image a) and 0.8 (image b), a false positive at 0.95 in a.
    # getThresholds (n_gt 2) keeps both TP scores: threshold 0.9 sees tp 1, fp 1 -> 1/2;
    # threshold 0.8 sees tp 2, fp 1 -> 2/3; points 2..40 have no threshold -> 0.
    # Monotone from the right: points 0 and 1 read 2/3. AP40 = (2/3)/40 = 1/60.
    truths = [ImageTruth("a", [KITTI_BOX], ["Car"]), ImageTruth("b", [KITTI_BOX], ["Car"])]
    found = [ImageDetections("a", [KITTI_BOX, [400.0, 100.0, 500.0, 150.0]], ["Car", "Car"], [0.9, 0.95]),
             ImageDetections("b", [KITTI_BOX], ["Car"], [0.8])]
    result = kitti(truths, found)
    curve = result.curves["Car"]
    np.testing.assert_allclose(curve.recall, KITTI_RECALL)
    np.testing.assert_allclose(curve.precision, [2 / 3, 2 / 3] + [0.0] * 39, atol=1e-12)
    assert curve.ap == pytest.approx(1 / 60, abs=1e-12)
    assert curve.ap == result.metrics["Car/moderate/AP40"]
    assert curve.ap == pytest.approx(np.sum(curve.precision[1:]) / 40, abs=1e-15)


def test_kitti_curve_of_half_the_cars_found():
    # n_gt 80, 40 hits: 21 thresholds (i = 0, 1, 3, ..., 39), each at precision 1 ->
    # points 0..20 read 1, points 21..40 read 0; AP40 = 20/40.
    truths, found = one_car_each(80)
    result = kitti(truths, found[:40])
    curve = result.curves["Car"]
    np.testing.assert_array_equal(curve.precision, [1.0] * 21 + [0.0] * 20)
    assert curve.ap == result.metrics["Car/moderate/AP40"] == 0.5


def test_kitti_curve_is_at_moderate_with_the_devkits_iou_per_class():
    # 30 px cars count at moderate and are ignored at easy (no easy ground truth: NaN):
    # the curve is moderate's, a perfect one (41 points at precision 1, AP40 1).
    truths, found = one_car_each(80, box=KITTI_SMALL)
    result = kitti(truths, found, classes=("Car", "Pedestrian", "Cyclist"))
    car = result.curves["Car"]
    assert math.isnan(result.metrics["Car/easy/AP40"]) and result.metrics["Car/moderate/AP40"] == 1.0
    assert car.difficulty == "moderate" and car.ap == 1.0
    np.testing.assert_array_equal(car.precision, np.ones(41))
    assert {name: curve.iou for name, curve in result.curves.items()} == {"Car": 0.7, "Pedestrian": 0.5,
                                                                          "Cyclist": 0.5}
    assert kitti(truths, found, car_iou=0.5).curves["Car"].iou == 0.5


def test_kitti_class_without_ground_truth_has_an_undefined_curve():
    truths, found = one_car_each(3)
    curve = kitti(truths, found).curves["Pedestrian"]
    assert math.isnan(curve.ap) and len(curve.precision) == 41


# -- COCO: COCOeval's 101 points at IoU 0.50 -------------------------------------------


def test_coco_curve_with_a_false_positive_between_the_hits():
    # Two cars; hit 0.9, false positive 0.8, hit 0.7: (recall, precision) = (.5, 1),
    # (.5, 1/2), (1, 2/3); monotone from the right 1, 2/3, 2/3. Recall points 0..0.50
    # (51) take the first, 0.51..1 (50) the last: AP50 = (51 + 50 * 2/3) / 101.
    truths = [ImageTruth("a", [COCO_BOX, ELSEWHERE], ["Car", "Car"])]
    found = [ImageDetections("a", [COCO_BOX, [700.0, 100.0, 800.0, 200.0], ELSEWHERE], ["Car"] * 3,
                             [0.9, 0.8, 0.7])]
    result = coco(truths, found)
    curve = result.curves["Car"]
    np.testing.assert_allclose(curve.recall, COCO_RECALL, atol=1e-15)
    np.testing.assert_allclose(curve.precision, [1.0] * 51 + [2 / 3] * 50, atol=1e-12)
    assert curve.iou == 0.5 and curve.difficulty is None
    assert curve.ap == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    assert curve.ap == coco_row(result, "Car")["AP50"]


def test_coco_curve_is_at_iou_050_not_the_headline_average():
    # The box is the top 62% of the car (IoU 0.62): a hit at IoU .50, so the curve reads
    # 1 at all 101 points and its AP is AP50 (1), while the class's .50:.95 AP is 3/10.
    truths = [ImageTruth("a", [COCO_BOX], ["Car"])]
    found = [ImageDetections("a", [[100.0, 100.0, 200.0, 162.0]], ["Car"], [0.9])]
    result = coco(truths, found)
    curve = result.curves["Car"]
    np.testing.assert_allclose(curve.precision, np.full(101, COCO_ONE), atol=1e-12)
    assert curve.ap == coco_row(result, "Car")["AP50"] == pytest.approx(1.0)
    assert result.metrics["AP/Car"] == pytest.approx(0.3, abs=1e-12)


def test_coco_class_without_ground_truth_and_no_detections_at_all():
    truths = [ImageTruth("a", [COCO_BOX], ["Car"])]
    result = coco(truths, [])
    assert math.isnan(result.curves["Pedestrian"].ap) and np.isnan(result.curves["Pedestrian"].precision).all()
    assert result.curves["Car"].ap == 0.0 and not result.curves["Car"].precision.any()


# -- the contract ----------------------------------------------------------------------


def test_curves_are_optional_and_json_keeps_its_keys():
    plain = EvaluationResult("third_party", {"mAP": 0.5}, "mAP")
    assert plain.curves == {} and json.loads(plain.to_json())["curves"] == {}
    truths, found = one_car_each(3)
    document = json.loads(kitti(truths, found).to_json())
    assert list(document)[:5] == ["evaluator", "headline", "metrics", "columns", "rows"]
    car, pedestrian = document["curves"]["Car"], document["curves"]["Pedestrian"]
    assert car["iou"] == 0.7 and car["difficulty"] == "moderate" and len(car["recall"]) == 41
    assert pedestrian["ap"] is None  # no ground truth: NaN -> null, as the metrics write it


def test_a_curve_needs_one_precision_per_recall_point():
    with pytest.raises(ValueError, match="'precision' has 2 points for 3 recall points"):
        PrecisionRecall(recall=[0.0, 0.5, 1.0], precision=[1.0, 1.0], ap=1.0, iou=0.5)


# -- the picture -----------------------------------------------------------------------


def test_pr_curve_png_is_written_at_its_size(tmp_path: Path):
    truths, found = one_car_each(80)
    result = kitti(truths, found[:40])
    path = tmp_path / "deeper" / FILE_NAME
    assert write_pr_curves(result, path) == f"wrote {path}"
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size == (round(100 * WIDTH), round(100 * HEIGHT))
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]  # no temporary file left


def test_coco_pr_curve_png_is_written(tmp_path: Path):
    truths = [ImageTruth("a", [COCO_BOX, ELSEWHERE], ["Car", "Pedestrian"])]
    found = [ImageDetections("a", [COCO_BOX, ELSEWHERE], ["Car", "Pedestrian"], [0.9, 0.4])]
    path = draw_pr_curves(coco(truths, found), tmp_path / FILE_NAME)
    with Image.open(path) as picture:
        picture.verify()


def test_legend_and_title_name_the_ap_iou_difficulty_and_the_classes_left_out():
    truths, found = one_car_each(80)
    result = kitti(truths, found[:40], classes=("Car", "Pedestrian", "Cyclist"))
    assert legend_label("Car", result.curves["Car"]) == "Car  AP 50.0"
    text = title(result.evaluator, result.curves, ["Pedestrian", "Cyclist"])
    assert text == ("kitti_ap, moderate difficulty, IoU Car 0.7, Pedestrian 0.5, Cyclist 0.5\n"
                    "no ground truth, not drawn: Pedestrian, Cyclist")
    same_iou = {"Car": result.curves["Car"]}
    assert title("kitti_ap", same_iou, []) == "kitti_ap, moderate difficulty, IoU 0.7"


def test_an_evaluator_without_curves_draws_nothing_and_says_so(tmp_path: Path):
    path = tmp_path / FILE_NAME
    notice = write_pr_curves(EvaluationResult("third_party", {"mAP": 0.5}, "mAP"), path)
    assert "no PR curve was drawn because evaluator 'third_party' gives none" in notice
    assert not path.exists()


def test_the_picture_goes_beside_the_json_or_into_the_run_folder(tmp_path: Path):
    assert pr_curve_path(tmp_path / "run", tmp_path / "reports" / "ap.json") == tmp_path / "reports" / FILE_NAME
    assert pr_curve_path(tmp_path / "run", None) == tmp_path / "run" / FILE_NAME


def test_drawing_imports_no_tensorflow():
    code = ("import sys\n"
            "from detplug.core.pictures import pr_curves\n"
            "from detplug.core.evaluate.contract import EvaluationResult\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
