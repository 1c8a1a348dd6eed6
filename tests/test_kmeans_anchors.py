"""Anchors fitted by k-means on box shapes, and the recall they allow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomllib

from detplug.core.data.kmeans_anchors import (
    anchor_table_toml,
    best_possible_recall,
    corner_iou,
    group_by_stride,
    kmeans_anchors,
    mean_best_iou,
    read_boxes_wh,
)
from detplug.core.plan.anchors import ANCHOR_POOLS, anchor_pixels

#: YOLOv3's nine COCO anchors: well separated shapes to generate clusters around.
CENTRES = np.array([pair for stride in (8, 16, 32) for pair in ANCHOR_POOLS["coco_yolov3"][stride]], float)


def _boxes_around(centres: np.ndarray, per_centre: int = 200, spread: float = 0.05, seed: int = 1) -> np.ndarray:
    """Boxes scattered around each centre by a few percent, multiplicatively (as sizes vary)."""
    rng = np.random.default_rng(seed)
    noise = np.exp(rng.normal(0.0, spread, size=(len(centres), per_centre, 2)))
    return (centres[:, None, :] * noise).reshape(-1, 2)


def test_corner_iou_of_hand_made_shapes():
    iou = corner_iou(np.array([[10, 10], [20, 20], [40, 10]]), np.array([[10, 10], [20, 10]]))
    # (20, 20) vs (10, 10): 100 / 400; (40, 10) vs (20, 10): 200 / 400.
    np.testing.assert_allclose(iou, [[1.0, 0.5], [0.25, 0.5], [0.25, 0.5]])


def test_kmeans_recovers_known_cluster_centres():
    boxes = _boxes_around(CENTRES)
    anchors = kmeans_anchors(boxes, 9, seed=0)
    expected = CENTRES[np.argsort(CENTRES.prod(axis=1))]
    np.testing.assert_allclose(anchors, expected, rtol=0.03)
    assert mean_best_iou(boxes, anchors) > 0.9


def test_kmeans_is_deterministic_per_seed_and_sorted_by_area():
    boxes = np.random.default_rng(3).uniform(5, 300, size=(500, 2))
    first = kmeans_anchors(boxes, 9, seed=7)
    np.testing.assert_array_equal(first, kmeans_anchors(boxes, 9, seed=7))
    areas = first.prod(axis=1)
    assert (np.diff(areas) >= 0).all()


def test_kmeans_drops_empty_boxes_and_needs_enough_of_them():
    boxes = np.array([[10, 10], [0, 5], [20, 20], [-1, 3]], float)
    anchors = kmeans_anchors(boxes, 2, seed=0)
    np.testing.assert_allclose(anchors, [[10, 10], [20, 20]])
    with pytest.raises(ValueError, match="2 boxes cannot make 3 anchors"):
        kmeans_anchors(boxes, 3)


def test_best_possible_recall_by_hand():
    boxes = np.array([[10, 10], [20, 20], [40, 10], [12, 10]], float)
    anchors = np.array([[10, 10]], float)
    # Best IoUs: 1, 0.25, 0.25, 100/120 = 0.833.
    assert best_possible_recall(boxes, anchors, threshold=0.5) == pytest.approx(2 / 4)
    assert best_possible_recall(boxes, anchors, threshold=0.25) == pytest.approx(1.0)
    assert best_possible_recall(boxes, anchors, threshold=0.9) == pytest.approx(1 / 4)
    assert mean_best_iou(boxes, anchors) == pytest.approx((1 + 0.25 + 0.25 + 100 / 120) / 4)


def test_group_by_stride_gives_the_smallest_anchors_to_the_finest_stride():
    anchors = CENTRES[::-1]
    table = group_by_stride(anchors, (32, 8, 16))
    assert list(table) == [8, 16, 32]
    assert table == {stride: tuple(map(tuple, map(lambda p: map(float, p), pool)))
                     for stride, pool in ANCHOR_POOLS["coco_yolov3"].items()}
    with pytest.raises(ValueError, match="do not split evenly"):
        group_by_stride(anchors[:8], (8, 16, 32))


def test_anchor_table_toml_is_a_plan_anchors_value():
    table = group_by_stride(CENTRES + 0.3)
    text = anchor_table_toml(table)
    parsed = tomllib.loads(f"anchors = {text}")["anchors"]
    assert anchor_pixels(parsed) == {s: tuple((float(w), float(h)) for w, h in pool)
                                     for s, pool in ANCHOR_POOLS["coco_yolov3"].items()}


def _example(boxes: list[list[float]], classes: list[int]) -> bytes:
    """One record in detplug's TFRecord format (core/data/records.py): the features training reads."""
    import tensorflow as tf

    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
        "objects/bbox": tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(boxes).tolist())),
        "objects/class": tf.train.Feature(int64_list=tf.train.Int64List(value=classes)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_read_boxes_wh_gives_pixels_of_the_input_and_skips_ignore_regions(tmp_path: Path):
    import tensorflow as tf

    from detplug.core.data.prepared import PreparedData

    shards = {"train-00000-of-00002.tfrecord": [_example([[0.0, 0.0, 0.5, 0.25], [0.1, 0.1, 0.2, 0.2]], [0, -1])],
              "train-00001-of-00002.tfrecord": [_example([[0.5, 0.5, 1.0, 1.0]], [2]), _example([], [])]}
    for name, examples in shards.items():
        with tf.io.TFRecordWriter(str(tmp_path / name)) as writer:
            for example in examples:
                writer.write(example)
    manifest = {"image_size": [64, 128],
                "splits": {"train": {"images": 3, "shards": [{"file": name} for name in shards]}}}
    prepared = PreparedData(tmp_path, manifest)
    # y1 x1 y2 x2 ratios -> (width, height) in pixels of 64x128: (0.25 * 128, 0.5 * 64); the
    # second box of the first image is an ignore region (class -1).
    np.testing.assert_allclose(read_boxes_wh(prepared), [[32.0, 32.0], [64.0, 32.0]])
    np.testing.assert_allclose(read_boxes_wh(prepared, image_size=(10, 20)), [[5.0, 5.0], [10.0, 5.0]])
