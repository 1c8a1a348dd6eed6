"""KITTI 2D AP as the devkit (cpp/evaluate_object.cpp) computes it: hand-computed
figures for hits, misses, duplicates, DontCare regions, neighbouring classes,
difficulties and the IoU threshold; KITTI result files read and written; the
``--kitti-eval`` entry point.

How the devkit turns true positives into AP (used by every figure below):
getThresholds walks the TP scores from the highest and keeps the i-th
(0-based) when it is the last one or when ``k/40 <= (i + 1.5)/n_gt``, k being
the thresholds kept so far. Precision at the k-th kept threshold is stored at
recall point k (of 0..40), made monotone from the right, and
AP40 = sum(points 1..40) / 40, AP11 = sum(points 0, 4, ..., 40) / 11.
With n_gt = 80 that rule keeps i = 0, 1, 3, 5, ..., 79 (2k <= i + 1.5),
one threshold per two TPs after the first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from detplug.core.cli.kitti_eval import run_kitti_eval
from detplug.core.errors import DataError
from detplug.core.evaluate.contract import ImageDetections, ImageTruth, format_table
from detplug.core.evaluate.kitti_files import read_kitti_labels, read_kitti_results, write_kitti_results
from detplug.core.plan.specs import Chain, LabelSpec, SpecError
from detplug.plugins.evaluators import KITTI_AP, KittiAPParams
from detplug.plugins.evaluators.kitti_ap import get_thresholds, kitti_ap_evaluator

#: 100 x 50 px: tall enough for every difficulty (40 / 25 / 25 px).
BOX = [100.0, 100.0, 200.0, 150.0]
#: Somewhere else in the image, overlapping nothing.
ELSEWHERE = [400.0, 100.0, 500.0, 150.0]
DIFFICULTIES = ("easy", "moderate", "hard")


def score(rank: int) -> float:
    """Distinct scores, highest first: 0.99, 0.98, ..., 0.20 for ranks 0..79."""
    return 1 - (rank + 1) / 100


def images(count: int = 80, cls: str = "Car", box=BOX):
    """``count`` images holding one object each, and a perfect detector's detections."""
    truths = [ImageTruth(f"{i:06d}", [box], [cls]) for i in range(count)]
    found = [ImageDetections(f"{i:06d}", [box], [cls], [score(i)]) for i in range(count)]
    return truths, found


def with_objects(image: ImageTruth, boxes, names, **columns) -> ImageTruth:
    def extended(name, default):
        extra = columns.get(name, [default] * len(boxes))
        return [*getattr(image, name), *extra]

    return ImageTruth(image.image_id, [*image.boxes, *boxes], [*image.names, *names],
                      truncated=extended("truncated", 0.0), occluded=extended("occluded", 0))


def with_detections(found: ImageDetections, boxes, names, scores) -> ImageDetections:
    return ImageDetections(found.image_id, [*found.boxes, *boxes], [*found.names, *names],
                           [*found.scores, *scores])


def evaluate(truths, found, classes=("Car", "Pedestrian", "Cyclist"), **params):
    return kitti_ap_evaluator(KittiAPParams(**params), classes=classes).evaluate(truths, found).metrics


def assert_ap(metrics, cls, ap40, ap11, difficulties=DIFFICULTIES):
    for difficulty in difficulties:
        assert metrics[f"{cls}/{difficulty}/AP40"] == pytest.approx(ap40, abs=1e-12), difficulty
        assert metrics[f"{cls}/{difficulty}/AP11"] == pytest.approx(ap11, abs=1e-12), difficulty


# -- the devkit's arithmetic ---------------------------------------------------


def test_perfect_detector_scores_one():
    # n_gt = 80, 80 TPs: thresholds at i = 0, 1, 3, ..., 79 -> 41 of them, each with
    # precision 1, so all 41 recall points are 1: AP40 = 40/40, AP11 = 11/11.
    truths, found = images(80)
    metrics = evaluate(truths, found)
    assert_ap(metrics, "Car", 1.0, 1.0)
    assert metrics["mAP_moderate_AP40"] == 1.0
    # No pedestrian or cyclist ground truth: undefined, and left out of the mean.
    assert math.isnan(metrics["Pedestrian/moderate/AP40"]) and math.isnan(metrics["Cyclist/easy/AP11"])


def test_few_ground_truths_give_the_devkits_low_ap():
    # The devkit's own result for a tiny set (its "9.09"): one box found out of one keeps
    # one threshold, so only recall point 0 holds precision 1:
    # AP11 = 1/11, AP40 = 0/40 (point 0 is not in AP40).
    truths, found = images(1)
    assert_ap(evaluate(truths, found), "Car", 0.0, 1 / 11)


def test_missing_half_the_boxes_halves_ap40():
    # n_gt = 80, 40 TPs: thresholds at i = 0, 1, 3, ..., 39 (2k <= i + 1.5) -> 21, each with
    # precision 1 -> recall points 0..20 are 1, 21..40 are 0:
    # AP40 = 20/40 = 0.5; AP11 = points 0, 4, 8, 12, 16, 20 = 6/11.
    truths, found = images(80)
    assert_ap(evaluate(truths, found[:40]), "Car", 0.5, 6 / 11)


def test_duplicate_detection_is_a_false_positive():
    # Image 0 gets a second Car box on its car (IoU 0.8, score 0.985, between the top two
    # TP scores 0.99 and 0.98). Collecting TP scores takes the highest-scoring candidate
    # (0.99) and counting takes the best-overlapping one (IoU 1), so the duplicate is an
    # unmatched FP from the second threshold (0.98) on:
    #   threshold 0 (0.99): tp 1, fp 0 -> 1
    #   threshold k >= 1 (score of TP 2k-1): tp 2k, fp 1 -> 2k/(2k+1), rising to 80/81
    # Monotone from the right: point 0 = 1, points 1..40 = 80/81.
    # AP40 = 80/81; AP11 = (1 + 10 * 80/81)/11 = 881/891.
    truths, found = images(80)
    duplicate = [100.0, 100.0, 180.0, 150.0]  # inside BOX, 80% of its area: IoU 0.8
    found[0] = with_detections(found[0], [duplicate], ["Car"], [0.985])
    assert_ap(evaluate(truths, found), "Car", 80 / 81, 881 / 891)


def test_detection_in_dont_care_region_is_ignored():
    truths, found = images(80)
    found[0] = with_detections(found[0], [ELSEWHERE], ["Car"], [0.985])
    # Without the region it is a FP ranked like the duplicate above: AP40 = 80/81.
    assert_ap(evaluate(truths, found), "Car", 80 / 81, 881 / 891)
    # Inside a DontCare region it is neither hit nor false positive.
    region = [380.0, 80.0, 520.0, 170.0]
    truths[0] = with_objects(truths[0], [region], ["DontCare"], truncated=[-1.0], occluded=[-1])
    assert_ap(evaluate(truths, found), "Car", 1.0, 1.0)


def test_dont_care_is_measured_over_the_detections_area():
    # Devkit: boxoverlap(det, dontcare, 0) = intersection / detection area > the class's
    # minimum overlap. A huge region holding 75% of the detection covers it (0.75 > 0.7)
    # though their IoU is tiny; one holding 65% does not (0.65 < 0.7): still a FP.
    truths, found = images(80)
    found[0] = with_detections(found[0], [ELSEWHERE], ["Car"], [0.985])
    for covered, expected in ((75.0, 1.0), (65.0, 80 / 81)):
        region = [400.0 + 100 - covered, 0.0, 1200.0, 370.0]
        covered_truths = list(truths)
        covered_truths[0] = with_objects(truths[0], [region], ["DontCare"])
        assert evaluate(covered_truths, found)["Car/moderate/AP40"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("cls, neighbour", [("Car", "Van"), ("Pedestrian", "Person_sitting")])
def test_neighbouring_class_is_neither_hit_nor_miss(cls, neighbour):
    truths, found = images(80, cls)
    # A neighbour detected as the class: not a FP; another neighbour missed: not a miss.
    truths[0] = with_objects(truths[0], [ELSEWHERE, [600.0, 100.0, 700.0, 150.0]], [neighbour, neighbour])
    found[0] = with_detections(found[0], [ELSEWHERE], [cls], [0.985])
    assert_ap(evaluate(truths, found), cls, 1.0, 1.0)
    # The same detection on a Truck, which neighbours nothing, is a FP (as in the duplicate test).
    truths[0] = with_objects(images(1, cls)[0][0], [ELSEWHERE], ["Truck"])
    assert_ap(evaluate(truths, found), cls, 80 / 81, 881 / 891)


def missed_second_cars(**second):
    """80 images with a detected car and a second, missed car described by ``second``."""
    truths, found = images(80)
    height = second.pop("height", 50.0)
    box = [300.0, 100.0, 400.0, 100.0 + height]
    return [with_objects(t, [box], ["Car"], **{k: [v] for k, v in second.items()}) for t in truths], found


@pytest.mark.parametrize(
    "second, expected",
    [
        # Heights: easy needs >= 40 px, moderate and hard >= 25 px.
        ({"height": 39.0}, {"easy": 1.0, "moderate": 0.5, "hard": 0.5}),
        ({"height": 25.0}, {"easy": 1.0, "moderate": 0.5, "hard": 0.5}),
        ({"height": 24.0}, {"easy": 1.0, "moderate": 1.0, "hard": 1.0}),
        # Occlusion: easy 0, moderate <= 1, hard <= 2; 3 (unknown) never counts.
        ({"occluded": 1}, {"easy": 1.0, "moderate": 0.5, "hard": 0.5}),
        ({"occluded": 2}, {"easy": 1.0, "moderate": 1.0, "hard": 0.5}),
        ({"occluded": 3}, {"easy": 1.0, "moderate": 1.0, "hard": 1.0}),
        # Truncation: easy <= 0.15, moderate <= 0.30, hard <= 0.50.
        ({"truncated": 0.2}, {"easy": 1.0, "moderate": 0.5, "hard": 0.5}),
        ({"truncated": 0.4}, {"easy": 1.0, "moderate": 1.0, "hard": 0.5}),
        ({"truncated": 0.6}, {"easy": 1.0, "moderate": 1.0, "hard": 1.0}),
    ],
)
def test_ground_truth_outside_a_difficulty_is_ignored_there(second, expected):
    # Where the missed car counts, n_gt = 160 with 80 TPs: thresholds at i = 0, 3, 7, ..., 79
    # (4k <= i + 1.5) -> 21, precision 1 -> AP40 = 20/40 = 0.5 (AP11 = 6/11).
    # Where it is ignored, the set is the perfect one: 1.0.
    truths, found = missed_second_cars(**second)
    metrics = evaluate(truths, found)
    for difficulty, ap40 in expected.items():
        assert metrics[f"Car/{difficulty}/AP40"] == pytest.approx(ap40, abs=1e-12), difficulty
        assert metrics[f"Car/{difficulty}/AP11"] == pytest.approx(1.0 if ap40 == 1 else 6 / 11, abs=1e-12)


def test_detection_below_the_minimum_height_is_ignored():
    # A 30 px false positive counts at moderate (>= 25 px) but is ignored at easy (< 40 px).
    truths, found = images(80)
    found[0] = with_detections(found[0], [[400.0, 100.0, 500.0, 130.0]], ["Car"], [0.985])
    metrics = evaluate(truths, found)
    assert metrics["Car/easy/AP40"] == 1.0
    assert metrics["Car/moderate/AP40"] == pytest.approx(80 / 81, abs=1e-12)


@pytest.mark.parametrize(
    "detected_height, car_ap40, pedestrian_ap40",
    [
        (71.0, 1.0, 1.0),  # IoU 0.71 > 0.7
        (70.0, 0.0, 1.0),  # IoU 0.70: the devkit needs strictly more than the minimum
        (69.0, 0.0, 1.0),  # IoU 0.69: a Car miss plus a FP, still a Pedestrian hit (> 0.5)
    ],
)
def test_iou_threshold_is_per_class(detected_height, car_ap40, pedestrian_ap40):
    # Ground truth 100 x 100 px; the detection is its top part, so IoU = height / 100.
    ground_truth = [100.0, 100.0, 200.0, 200.0]
    detected = [100.0, 100.0, 200.0, 100.0 + detected_height]
    for cls, expected in (("Car", car_ap40), ("Pedestrian", pedestrian_ap40)):
        truths, _ = images(80, cls, ground_truth)
        found = [ImageDetections(t.image_id, [detected], [cls], [score(i)]) for i, t in enumerate(truths)]
        assert evaluate(truths, found)[f"{cls}/moderate/AP40"] == expected


def test_params_set_the_minimum_overlap():
    truths, _ = images(80, "Car", [100.0, 100.0, 200.0, 200.0])
    found = [ImageDetections(t.image_id, [[100.0, 100.0, 200.0, 169.0]], ["Car"], [score(i)])
             for i, t in enumerate(truths)]
    assert evaluate(truths, found, car_iou=0.6)["Car/moderate/AP40"] == 1.0


def test_get_thresholds_keeps_one_score_per_recall_step():
    # n_gt = 80: keep i = 0, 1, 3, ..., 79 -> 41 scores.
    scores = [score(i) for i in range(80)]
    assert get_thresholds(scores, 80) == [scores[0]] + scores[1::2]
    # n_gt = 40: every TP is a step of 1/40 -> all 40 kept.
    assert get_thresholds(scores[:40], 40) == scores[:40]


# -- the evaluator as a component --------------------------------------------


def test_factory_evaluates_the_kitti_classes_among_the_plans_classes():
    evaluator = kitti_ap_evaluator(KittiAPParams(), classes=("car", "Van", "Pedestrian"))
    assert evaluator.classes == ("car", "Pedestrian")
    # Names are compared without case, as the devkit's strcasecmp does.
    truths, found = images(80)
    assert evaluator.evaluate(truths, found).metrics["car/moderate/AP40"] == 1.0
    with pytest.raises(SpecError, match="Car, Pedestrian, Cyclist"):
        kitti_ap_evaluator(KittiAPParams(), classes=("person", "dog"))


def test_spec_rejects_a_dataset_without_kitti_classes():
    assert KITTI_AP.spec(KittiAPParams(), Chain(labels=LabelSpec(("Car", "Van"), 8))) == ("Car",)
    with pytest.raises(SpecError, match="evaluator 'kitti_ap'.*coco_map"):
        KITTI_AP.spec(KittiAPParams(), Chain(labels=LabelSpec(("person", "dog"), 8)))


def test_kitti_ap_meets_the_component_contract():
    from detplug.testing import check_component

    assert "check_manifest_without_tensorflow" in check_component(KITTI_AP)


def test_detections_of_an_unknown_image_are_an_error():
    truths, found = images(2)
    with pytest.raises(DataError, match="without ground truth .*000099"):
        evaluate(truths, [*found, ImageDetections("000099", [BOX], ["Car"], [0.5])])


def test_result_table_and_json_show_every_class_and_the_mean():
    truths, found = images(80)
    result = kitti_ap_evaluator(KittiAPParams(), classes=("Car", "Pedestrian")).evaluate(truths, found[:40])
    table = format_table(result)
    assert "moderate AP40" in table and "Pedestrian" in table
    car_row = next(line for line in table.splitlines() if line.startswith("Car"))
    assert car_row.split()[1:4] == ["50.00", "50.00", "50.00"]
    assert table.splitlines()[-1] == "kitti_ap mAP_moderate_AP40: 50.00 (AP in %)"
    document = json.loads(result.to_json())
    assert document["metrics"]["Car/moderate/AP40"] == 0.5
    assert document["metrics"]["Pedestrian/moderate/AP40"] is None  # no ground truth: NaN -> null
    assert document["curves"]["Car"]["ap"] == 0.5 and document["curves"]["Car"]["iou"] == 0.7


# -- KITTI files ----------------------------------------------------------------


LABEL_LINES = (
    "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
    "Van 0.12 1 1.55 1.00 150.00 120.00 230.00 2.00 1.90 4.50 -8.00 1.50 13.00 1.00\n"
    "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"
)


def test_label_files_are_read_with_truncation_and_occlusion(tmp_path: Path):
    (tmp_path / "000001.txt").write_text(LABEL_LINES)
    (tmp_path / "000000.txt").write_text("")
    truths = read_kitti_labels(tmp_path)
    assert [t.image_id for t in truths] == ["000000", "000001"]
    assert len(truths[0].boxes) == 0
    truth = truths[1]
    assert truth.names == ("Car", "Van", "DontCare")
    np.testing.assert_array_equal(truth.boxes[0], [587.01, 173.33, 614.12, 200.12])
    np.testing.assert_array_equal(truth.truncated, [0.0, 0.12, -1.0])
    np.testing.assert_array_equal(truth.occluded, [0, 1, -1])


def test_result_files_round_trip(tmp_path: Path):
    written = [
        ImageDetections("000000", [[1.5, 2.25, 100.0, 80.75], [10.0, 20.0, 30.0, 60.0]],
                        ["Car", "Pedestrian"], [0.987654, 0.5]),
        ImageDetections.empty("000001"),
    ]
    paths = write_kitti_results(tmp_path / "results", written)
    assert [p.name for p in paths] == ["000000.txt", "000001.txt"]
    assert (tmp_path / "results" / "000001.txt").read_text() == ""
    assert len((tmp_path / "results" / "000000.txt").read_text().splitlines()[0].split()) == 16
    read = read_kitti_results(tmp_path / "results")
    assert [r.image_id for r in read] == ["000000", "000001"]
    np.testing.assert_array_equal(read[0].boxes, written[0].boxes)
    assert read[0].names == ("Car", "Pedestrian")
    np.testing.assert_array_equal(read[0].scores, [0.987654, 0.5])
    assert len(read[1].boxes) == 0


@pytest.mark.parametrize(
    "reader, text, message",
    [
        (read_kitti_results, "Car 0 0 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10\n",
         r"000007\.txt:1: expected 16 columns \(the label columns and a score\), found 15"),
        (read_kitti_results, "Car -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10 0.9\n"
                             "\nCar -1 -1 -10 1 2 x 4 -1 -1 -1 -1000 -1000 -1000 -10 0.9\n",
         r"000007\.txt:3: column 'x2' must be a number \(got 'x'\)"),
        (read_kitti_labels, "Car 0 0 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000\n",
         r"000007\.txt:1: expected 15 or 16 columns \(the label columns, then an optional score\), found 14"),
        (read_kitti_labels, "Car 0 0.5 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10\n",
         r"000007\.txt:1: column 'occluded' must be an integer"),
    ],
)
def test_bad_lines_are_errors_naming_file_and_line(tmp_path: Path, reader, text, message):
    (tmp_path / "000007.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        reader(tmp_path)


def test_missing_folders_are_errors(tmp_path: Path):
    with pytest.raises(DataError, match="is not a folder"):
        read_kitti_results(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds no label files"):
        read_kitti_labels(tmp_path)


# -- python run.py --kitti-eval ----------------------------------------------


def kitti_folders(tmp_path: Path, detected: int) -> tuple[Path, Path]:
    """80 label files with one car; result files for the first ``detected`` images only."""
    labels, results = tmp_path / "label_2", tmp_path / "results"
    labels.mkdir()
    truths, found = images(80)
    for truth in truths:
        (labels / f"{truth.image_id}.txt").write_text(
            "Car 0.00 0 -10 100.00 100.00 200.00 150.00 -1 -1 -1 -1000 -1000 -1000 -10\n")
    write_kitti_results(results, found[:detected])
    return labels, results


def test_kitti_eval_reads_both_folders_prints_and_writes_json(tmp_path: Path, capsys):
    labels, results = kitti_folders(tmp_path, detected=40)  # 40 result files missing
    # As the devkit does, a label file without its result file is refused ...
    with pytest.raises(DataError, match=r"40 of the 80 label files in .* have no result file in .* \(000040\.txt, "
                                        r"000041\.txt, 000042\.txt, \.\.\.\); the devkit refuses such a submission"):
        run_kitti_eval(labels, results)
    assert not (tmp_path / "out").exists()
    # ... unless --missing-as-empty counts those images as without detections.
    result = run_kitti_eval(labels, results, json_path=tmp_path / "out" / "kitti.json", missing_as_empty=True)
    # Only Car is detected, so only Car is evaluated, as the devkit does.
    assert result.metrics["Car/moderate/AP40"] == 0.5 and "Pedestrian/moderate/AP40" not in result.metrics
    printed = capsys.readouterr().out
    assert "Car" in printed and printed.strip().endswith("mAP_moderate_AP40: 50.00 (AP in %)")
    assert json.loads((tmp_path / "out" / "kitti.json").read_text())["metrics"]["mAP_moderate_AP40"] == 0.5


def test_kitti_eval_accepts_the_devkits_data_folder(tmp_path: Path):
    labels, results = kitti_folders(tmp_path, detected=80)
    (tmp_path / "method").mkdir()
    results.rename(tmp_path / "method" / "data")  # the devkit's results/<method>/data/ layout
    assert run_kitti_eval(labels, tmp_path / "method").metrics["Car/moderate/AP40"] == 1.0


def test_kitti_eval_refuses_results_of_other_images(tmp_path: Path):
    labels, results = kitti_folders(tmp_path, detected=80)
    (labels / "000079.txt").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) without ground truth \(000079\)"):
        run_kitti_eval(labels, results)


def test_few_moderate_objects_are_noted_under_the_table_with_why_the_ap_is_capped():
    truths, found = images(3)
    result = kitti_ap_evaluator(KittiAPParams(), classes=("Car",)).evaluate(truths, found)
    # Three perfect detections: the devkit's sampling gives recall points at 1/3, 2/3 and 1 only.
    assert result.metrics["Car/moderate/AP40"] < 0.1
    assert result.notes == ("Car has 3 moderate objects, fewer than the devkit's 40 recall points: it samples at "
                            "most one score threshold per object, so its AP is capped far below 100 even for perfect "
                            "detections; evaluate on more images for a figure to compare",)
    assert "\nnote: Car has 3 moderate objects" in format_table(result)
    many, found = images(80)
    assert kitti_ap_evaluator(KittiAPParams(), classes=("Car",)).evaluate(many, found).notes == ()
