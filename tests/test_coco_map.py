"""COCO box mAP through pycocotools: figures derived by hand from COCOeval's rules
(10 IoU thresholds .50:.05:.95, a detection matches when IoU >= the threshold,
precision made monotone from the right and read at 101 recall points 0, .01, ..., 1;
COCOeval divides by tp + fp + 2**-52, so a perfect 1 comes back as 1 - 2e-16),
crowd regions for DontCare, and the evaluator's own handling of edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detplug.core.errors import DataError
from detplug.core.evaluate.contract import ImageDetections, ImageTruth, format_table
from detplug.plugins.evaluators import COCO_MAP, CocoMapParams
from detplug.plugins.evaluators.coco_map import coco_map_evaluator

BOX = [100.0, 100.0, 200.0, 200.0]  # 100 x 100 px
ELSEWHERE = [400.0, 100.0, 500.0, 200.0]


def evaluate(truths, found, classes=("Car", "Pedestrian"), **params):
    return coco_map_evaluator(CocoMapParams(**params), classes=classes).evaluate(truths, found).metrics


def test_perfect_detector_scores_one():
    truths = [ImageTruth("a", [BOX], ["Car"]), ImageTruth("b", [BOX, ELSEWHERE], ["Car", "Pedestrian"])]
    found = [ImageDetections("a", [BOX], ["Car"], [0.9]),
             ImageDetections("b", [BOX, ELSEWHERE], ["Car", "Pedestrian"], [0.8, 0.7])]
    metrics = evaluate(truths, found)
    assert metrics == pytest.approx({"mAP": 1.0, "AP50": 1.0, "AP75": 1.0, "AP/Car": 1.0, "AP/Pedestrian": 1.0})


def test_one_of_two_boxes_found():
    # Recall 0.5 at precision 1, nothing beyond: the 101 recall points 0, .01, ..., .50
    # (51 of them) read precision 1, the 50 above read 0: AP = 51/101 at every IoU threshold.
    truths = [ImageTruth("a", [BOX, ELSEWHERE], ["Car", "Car"])]
    found = [ImageDetections("a", [BOX], ["Car"], [0.9])]
    metrics = evaluate(truths, found)
    for key in ("mAP", "AP50", "AP75", "AP/Car"):
        assert metrics[key] == pytest.approx(51 / 101, abs=1e-12), key


def test_iou_062_counts_for_ap50_but_not_ap75():
    # The detection is the top 62% of the box: IoU 0.62 matches at thresholds .50, .55, .60
    # (3 of 10), so AP50 = 1, AP75 = 0, mAP = 3/10.
    truths = [ImageTruth("a", [BOX], ["Car"])]
    found = [ImageDetections("a", [[100.0, 100.0, 200.0, 162.0]], ["Car"], [0.9])]
    metrics = evaluate(truths, found)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == 0.0
    assert metrics["mAP"] == pytest.approx(0.3, abs=1e-12)


def test_higher_scoring_false_positive_halves_precision():
    # FP (0.95) then TP (0.9): precision 0 at recall 0, then 1/2 at recall 1; monotone from
    # the right every recall point reads 1/2: AP = 0.5.
    truths = [ImageTruth("a", [BOX], ["Car"])]
    found = [ImageDetections("a", [BOX, ELSEWHERE], ["Car", "Car"], [0.9, 0.95])]
    assert evaluate(truths, found)["mAP"] == pytest.approx(0.5, abs=1e-12)


def test_dont_care_region_is_a_crowd_region():
    # The false positive above, inside a DontCare region: matched to the crowd region and
    # ignored, so the set is perfect again -- unless DontCare is not an ignore name.
    truths = [ImageTruth("a", [BOX, [380.0, 80.0, 520.0, 220.0]], ["Car", "DontCare"])]
    found = [ImageDetections("a", [BOX, ELSEWHERE], ["Car", "Car"], [0.9, 0.95])]
    assert evaluate(truths, found)["mAP"] == pytest.approx(1.0)
    assert evaluate(truths, found, ignore_names=())["mAP"] == pytest.approx(0.5, abs=1e-12)


def test_class_without_ground_truth_is_undefined_and_left_out_of_the_mean():
    truths = [ImageTruth("a", [BOX], ["Car"])]
    found = [ImageDetections("a", [BOX, ELSEWHERE], ["Car", "Pedestrian"], [0.9, 0.8])]
    metrics = evaluate(truths, found)
    assert math.isnan(metrics["AP/Pedestrian"]) and metrics["mAP"] == pytest.approx(1.0)


def test_no_detections_score_zero():
    truths = [ImageTruth("a", [BOX], ["Car"]), ImageTruth("b", [], [])]
    metrics = evaluate(truths, [])
    assert metrics["mAP"] == 0.0 and metrics["AP/Car"] == 0.0 and math.isnan(metrics["AP/Pedestrian"])


def test_max_detections_keeps_the_highest_scores():
    # Two cars, both found; keeping one detection per image leaves recall 0.5: 51/101.
    truths = [ImageTruth("a", [BOX, ELSEWHERE], ["Car", "Car"])]
    found = [ImageDetections("a", [BOX, ELSEWHERE], ["Car", "Car"], [0.9, 0.8])]
    assert evaluate(truths, found)["mAP"] == pytest.approx(1.0)
    assert evaluate(truths, found, max_detections=1)["mAP"] == pytest.approx(51 / 101, abs=1e-12)


def test_every_detection_counts_unless_max_detections_is_set():
    # A scene of 150 trees, each found: COCO's cap of 100 would hold recall at 100/150, so AP
    # to 67 of the 101 recall points; unset, the cap is the most any image has.
    trees = [[x * 20.0, y * 20.0, x * 20.0 + 15, y * 20.0 + 15] for y in range(10) for x in range(15)]
    truths = [ImageTruth("scene", trees, ["Car"] * 150)]
    found = [ImageDetections("scene", trees, ["Car"] * 150, np.linspace(0.9, 0.5, 150))]
    assert evaluate(truths, found)["AP50"] == pytest.approx(1.0)
    assert evaluate(truths, found, max_detections=100)["AP50"] == pytest.approx(67 / 101, abs=1e-12)


def test_names_are_compared_without_case_and_other_names_left_out():
    truths = [ImageTruth("a", [BOX, ELSEWHERE], ["car", "Tram"])]
    found = [ImageDetections("a", [BOX, [600.0, 100.0, 700.0, 200.0]], ["CAR", "Tram"], [0.9, 0.95])]
    assert evaluate(truths, found)["AP/Car"] == pytest.approx(1.0)


def test_detections_of_an_unknown_image_are_an_error():
    with pytest.raises(DataError, match="without ground truth"):
        evaluate([ImageTruth("a", [BOX], ["Car"])], [ImageDetections("z", [BOX], ["Car"], [0.9])])


def test_table_lists_each_class_and_all():
    truths = [ImageTruth("a", [BOX], ["Car"])]
    result = coco_map_evaluator(CocoMapParams(), classes=("Car",)).evaluate(
        truths, [ImageDetections("a", [BOX], ["Car"], [0.9])])
    lines = format_table(result).splitlines()
    assert lines[0].split() == ["class", "AP", "AP50", "AP75", "GT"]
    assert lines[2].split() == ["Car", "100.00", "100.00", "100.00", "1"]
    assert lines[-1] == "coco_map mAP: 100.00 (AP in %)"


def test_coco_map_meets_the_component_contract():
    from detplug.testing import check_component

    assert "check_params_defaults" in check_component(COCO_MAP)
    with pytest.raises(ValueError, match="'ignore_names' must be a list of class names"):
        CocoMapParams(ignore_names="DontCare")
