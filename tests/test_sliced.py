"""Sliced prediction: boxes planted in a known grid on a large image are found at their pixels,
each once, through tiles cut on the training grid and merged by class-wise TensorFlow NMS.

The "model" is a real detector of a trivial kind: it finds the white rectangles in the
letterboxed pixels it is given (rows and columns holding white, in runs), the boxes of whole
ones at 0.9 and of those cut by the window's edge at 0.6, as a trained detector is less sure
of a truncated object. No mocks: the tiles are cut, letterboxed and mapped back by the code
under test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detplug.core.data.slicing import Slicing
from detplug.core.model.sliced import merge_detections, predict_sliced
from detplug.core.plan.specs import ImageSpec

#: The model input: as large as a tile, so a tile is letterboxed at scale 1.
INPUT = ImageSpec(64, 64)
WHOLE, CUT = 0.9, 0.6


def runs(present: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], present.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def white_rectangles(images: tf.Tensor) -> dict[str, tf.Tensor]:
    """The detect function: boxes y1 x1 y2 x2 in [0, 1] of the input, as batch_detector gives them."""
    pixels = images.numpy()
    height, width = pixels.shape[1:3]
    found = []
    for image in pixels:
        white = image[..., 0] > 0.5  # the letterbox padding is grey (114 / 255)
        boxes, scores = [], []
        for top, bottom in runs(white.any(axis=1)):
            for left, right in runs(white[top:bottom].any(axis=0)):
                cut = top == 0 or left == 0 or bottom == height or right == width
                boxes.append([top / height, left / width, bottom / height, right / width])
                scores.append(CUT if cut else WHOLE)
        found.append((boxes, scores))
    most = max(1, max(len(boxes) for boxes, _ in found))
    padded_boxes = np.zeros((len(found), most, 4), np.float32)
    padded_scores = np.zeros((len(found), most), np.float32)
    for index, (boxes, scores) in enumerate(found):
        padded_boxes[index, :len(boxes)] = np.reshape(boxes, (-1, 4))
        padded_scores[index, :len(scores)] = scores
    return {"boxes": tf.constant(padded_boxes), "scores": tf.constant(padded_scores),
            "classes": tf.zeros((len(found), most), tf.int32),
            "num_detections": tf.constant([len(boxes) for boxes, _ in found], tf.int32)}


def planted(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = 255
    return image


def test_boxes_planted_in_a_grid_are_found_at_their_pixels_once_each_across_tile_seams():
    # 64 px tiles stepping by 48: windows start at x 0 48 96 144 192 232 and y 0 48 96 136. The
    # 16 px overlap holds a 14 px box whole, so each box is whole in one tile and cut (a sliver
    # as thin as 2 px) by the edges of its neighbours: x 40-54 and x 186-200 cross edges at 48,
    # 64, 192; y 44-58 and y 130-144 at 48, 64, 136, 144.
    size = 14
    planted_boxes = [(x, y, x + size, y + size) for y in (10, 44, 90, 130, 176) for x in (8, 40, 90, 140, 186, 250)]
    image = planted(200, 296, planted_boxes)
    slicing = Slicing(64, 0.25)
    assert len(slicing.tiles(200, 296)) == 24
    found = predict_sliced(image, white_rectangles, INPUT, slicing, iou_threshold=0.45, max_detections=100,
                           batch_size=5)
    assert len(found["boxes"]) == len(planted_boxes), found["boxes"]
    for box in planted_boxes:
        distance = np.abs(found["boxes"] - np.array(box, np.float32)).max(axis=1)
        assert (distance <= 1.0).sum() == 1, (box, found["boxes"][np.argsort(distance)[:3]])
    np.testing.assert_allclose(found["scores"], WHOLE)
    assert (found["classes"] == 0).all()


def test_max_detections_caps_each_window_not_the_whole_image():
    # 35 boxes in a 200x296 image cut into 24 windows: with max_detections 4 the merged image
    # keeps up to 4 x 24, so every box, where a cap of 4 on the whole image would keep 4. (The
    # cap inside one window is detect's: batch_detector's NMS; this detect has none.)
    planted_boxes = [(x, y, x + 10, y + 10) for y in (6, 50, 96, 140, 180) for x in (4, 50, 96, 140, 186, 230, 276)]
    found = predict_sliced(planted(200, 296, planted_boxes), white_rectangles, INPUT, Slicing(64, 0.25),
                           iou_threshold=0.45, max_detections=4)
    assert len(found["boxes"]) == len(planted_boxes)
    for box in planted_boxes:
        assert (np.abs(found["boxes"] - np.array(box, np.float32)).max(axis=1) <= 1.0).sum() == 1, box


def test_the_full_image_pass_finds_an_object_larger_than_a_tile_once():
    image = planted(160, 160, [(40, 40, 120, 120)])  # cut by an edge in each of the 9 tiles
    whole = np.array([40, 40, 120, 120], np.float32)
    sliced_only = predict_sliced(image, white_rectangles, INPUT, Slicing(64, 0.25), iou_threshold=0.45,
                                 max_detections=100)
    assert (np.abs(sliced_only["boxes"] - whole).max(axis=1) >= 8).all()  # parts of it, 8 px short or more
    found = predict_sliced(image, white_rectangles, INPUT, Slicing(64, 0.25, full_image_pass=True),
                           iou_threshold=0.45, max_detections=100)
    assert len(found["boxes"]) == 1, found
    # Shrunk 160 -> 64 for the full pass: a pixel of the input is 2.5 of the image.
    np.testing.assert_allclose(found["boxes"][0], whole, atol=2.5)
    assert found["scores"][0] == pytest.approx(WHOLE)


def test_an_image_no_larger_than_a_tile_is_one_window_at_its_own_pixels():
    image = planted(40, 50, [(5, 6, 25, 30)])
    found = predict_sliced(image, white_rectangles, INPUT, Slicing(64, 0.2, full_image_pass=True),
                           iou_threshold=0.45, max_detections=100)
    np.testing.assert_allclose(found["boxes"], [[5, 6, 25, 30]], atol=1.0)


def merged(boxes: list, scores: list, classes: list, windows: list, max_detections: int = 100) -> dict:
    return merge_detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes),
                            np.array(windows), iou_threshold=0.45, max_detections=max_detections)


def test_merge_keeps_one_of_two_windows_views_of_an_object_the_better_scored():
    found = merged([[10, 10, 30, 30], [10.5, 10, 30, 30.5]], [0.7, 0.8], [1, 1], [0, 1])
    np.testing.assert_allclose(found["boxes"], [[10.5, 10, 30, 30.5]])
    np.testing.assert_allclose(found["scores"], [0.8])


def test_merge_drops_another_windows_part_of_an_object_whatever_its_iou():
    # The part is a tenth of the object: IoU 0.1, intersection over the smaller box 1.
    found = merged([[0, 0, 100, 20], [90, 0, 100, 20]], [0.9, 0.5], [0, 0], [0, 1])
    np.testing.assert_allclose(found["boxes"], [[0, 0, 100, 20]])


def test_merge_keeps_nested_boxes_of_one_window_and_boxes_of_other_classes():
    # A car behind a car, found in one window (its own NMS kept both), and a box of another class.
    found = merged([[0, 0, 100, 40], [60, 10, 90, 40], [0, 0, 100, 40]], [0.9, 0.8, 0.7], [0, 0, 2], [3, 3, 4])
    np.testing.assert_allclose(found["boxes"], [[0, 0, 100, 40], [60, 10, 90, 40], [0, 0, 100, 40]])
    assert found["classes"].tolist() == [0, 0, 2]


def test_merge_returns_at_most_max_detections_best_first_and_nothing_from_nothing():
    boxes = [[index * 20, 0, index * 20 + 10, 10] for index in range(5)]
    found = merged(boxes, [0.1, 0.5, 0.3, 0.9, 0.2], [0, 1, 0, 1, 0], [0, 0, 1, 1, 2], max_detections=3)
    np.testing.assert_allclose(found["scores"], [0.9, 0.5, 0.3])
    empty = merged(np.zeros((0, 4)).tolist(), [], [], [])
    assert empty["boxes"].shape == (0, 4) and len(empty["scores"]) == 0


def test_slicing_says_how_it_cuts_and_refuses_a_bad_grid_in_one_sentence():
    assert Slicing(320, 0.2).describe() == "sliced: 320 px tiles, overlap 0.2"
    assert Slicing(320, 0.25, full_image_pass=True).describe() == "sliced: 320 px tiles, overlap 0.25, and the whole image"
    with pytest.raises(ValueError, match="tile overlap must be in"):
        Slicing(320, 1.0)
    with pytest.raises(ValueError, match="tile size must be"):
        Slicing(0)


def test_a_datasets_tile_param_is_the_default_slicing_and_none_is_no_slicing():
    from types import SimpleNamespace

    from detplug.core.data.slicing import dataset_slicing

    assert dataset_slicing(SimpleNamespace(tile={"size": 320, "overlap": 0.1, "min_area_ratio": 0.5})) == \
        Slicing(320, 0.1)
    assert dataset_slicing(SimpleNamespace(tile=SimpleNamespace(size=256, overlap=0.3))) == Slicing(256, 0.3)
    assert dataset_slicing(SimpleNamespace(tile={"size": 0})) is None
    assert dataset_slicing(SimpleNamespace()) is None


@pytest.mark.parametrize(("options", "message"), [
    (["--overlap", "0.3"], "--overlap goes with --tile SIZE (dataset 'synth' of the plan is not tiled)"),
    (["--tile", "0", "--full-image-pass"], "--full-image-pass goes with --tile SIZE (--tile 0 predicts whole images)"),
    (["--tile", "48", "--overlap", "1.5"], "--tile 48 --overlap 1.5: tile overlap must be in [0, 1)"),
    (["--tile", "-2"], "--tile -2 --overlap 0.2: tile size must be a whole number of pixels >= 1"),
])
def test_a_slicing_option_that_cannot_apply_is_one_sentence(tiny_plan, tmp_path, capsys, options, message):
    from detplug.core.cli.main import main

    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    assert main(["predict", "--plan", str(tiny_plan), "--workdir", str(tmp_path / "run"), str(image),
                 *options]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


@pytest.mark.slow(seconds=12)
def test_predict_tile_writes_every_format_in_the_images_own_pixels(finished, tmp_path, capsys):
    from detplug.core.cli.main import main

    plan, workdir, cache = finished
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    sizes = {"large": (150, 230), "small": (40, 50)}  # (height, width); the small one is one tile
    for name, size in sizes.items():
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(images / f"{name}.png")
    common = ["--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache),
              "--set", "evaluation.score_threshold=0.01", str(images), "--tile", "48", "--full-image-pass"]
    assert main(["predict", *common, "--out", str(tmp_path / "kitti")]) == 0
    assert "predicting 2 images sliced: 48 px tiles, overlap 0.2, and the whole image" in capsys.readouterr().out
    assert main(["predict", *common, "--out", str(tmp_path / "coco"), "--format", "coco"]) == 0
    coco = json.loads((tmp_path / "coco" / "predictions.json").read_text())
    ids = {int(ident): Path(path).stem for ident, path in
           json.loads((tmp_path / "coco" / "image_ids.json").read_text()).items()}
    for name, (height, width) in sizes.items():
        with Image.open(tmp_path / "kitti" / f"{name}.png") as drawn:
            assert drawn.size == (width, height)
        rows = [line.split() for line in (tmp_path / "kitti" / f"{name}.txt").read_text().splitlines()]
        kitti = np.array([[float(v) for v in row[4:8]] for row in rows]).reshape(-1, 4)
        xywh = np.array([row["bbox"] for row in coco if ids[row["image_id"]] == name]).reshape(-1, 4)
        assert len(kitti) == len(xywh) > 0, name  # the same detections, in both formats
        assert (kitti >= 0).all() and (kitti[:, [0, 2]] <= width).all() and (kitti[:, [1, 3]] <= height).all()
        np.testing.assert_allclose(np.sort(xywh[:, 0]), np.sort(kitti[:, 0]), atol=0.01)
