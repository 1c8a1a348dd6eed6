"""Anchors fitted to a dataset: k-means on box shapes with an IoU distance (YOLOv2).

Everything here is numpy, except :func:`read_boxes_wh`, which reads a prepared
dataset's TFRecords and imports TensorFlow inside itself. The pieces, in the
order ``run.py --anchors`` uses them::

    boxes = read_boxes_wh(prepared)                      # (N, 2) pixel (w, h) at the input size
    anchors = kmeans_anchors(boxes, 9, seed=0)           # (9, 2), sorted by area
    table = group_by_stride(anchors, (8, 16, 32))        # {8: ((w, h), x3), 16: ..., 32: ...}
    best_possible_recall(boxes, anchors, threshold=0.5)  # share of boxes some anchor fits
    anchor_table_toml(table)                             # '{ 8 = [[10, 13], ...], ... }' for a plan

Anchors are pixel (width, height) pairs of the model's input image, as
``model.anchors`` in a plan and :data:`detplug.core.plan.anchors.ANCHOR_POOLS`
write them.

The distance between a box and an anchor is ``1 - IoU`` of the two placed at a
common corner (YOLOv2 §"Dimension Clusters"): it ranks shapes the way target
assignment does (:mod:`detplug.core.data.targets` gives each box the anchor of
highest such IoU), whereas a Euclidean distance would let large boxes dominate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: A table of anchors: stride -> (width, height) pixel pairs, smallest first.
AnchorTable = dict[int, tuple[tuple[float, float], ...]]


def corner_iou(boxes_wh: np.ndarray, anchors_wh: np.ndarray) -> np.ndarray:
    """IoU of every box with every anchor, both placed at a common corner: (N, 2) x (K, 2) -> (N, K)."""
    boxes_wh = np.asarray(boxes_wh, np.float64).reshape(-1, 2)
    anchors_wh = np.asarray(anchors_wh, np.float64).reshape(-1, 2)
    intersection = np.prod(np.minimum(boxes_wh[:, None, :], anchors_wh[None, :, :]), axis=-1)
    union = np.prod(boxes_wh, axis=-1)[:, None] + np.prod(anchors_wh, axis=-1)[None, :] - intersection
    return intersection / np.maximum(union, 1e-12)


def mean_best_iou(boxes_wh: np.ndarray, anchors_wh: np.ndarray) -> float:
    """YOLOv2's "Avg IoU": the mean over boxes of the IoU with their best anchor."""
    return float(corner_iou(boxes_wh, anchors_wh).max(axis=1).mean())


def best_possible_recall(boxes_wh: np.ndarray, anchors_wh: np.ndarray, threshold: float = 0.5) -> float:
    """The share of boxes whose best anchor has a corner-aligned IoU of at least ``threshold``.

    IoU rather than YOLOv5's width/height-ratio rule (``max ratio < 4``): it is
    the measure the k-means above minimises and the one target assignment
    ranks anchors by. ``threshold`` 0.5 asks for an anchor that covers the box
    about as well as a matching detection would.
    """
    boxes_wh = _valid_boxes(boxes_wh)
    if not len(boxes_wh):
        raise ValueError("best_possible_recall: no boxes with positive width and height")
    return float((corner_iou(boxes_wh, anchors_wh).max(axis=1) >= threshold).mean())


def kmeans_anchors(
    boxes_wh: np.ndarray,
    count: int = 9,
    *,
    seed: int = 0,
    iterations: int = 300,
    restarts: int = 5,
) -> np.ndarray:
    """``count`` anchor shapes (``count``, 2) fitted to ``boxes_wh`` (N, 2), sorted by area.

    Lloyd's k-means with distance ``1 - corner IoU`` and mean centres, from a
    k-means++ start; ``restarts`` seeded starts, keeping the one of highest
    :func:`mean_best_iou`. Deterministic for a given ``seed``. Boxes with a
    non-positive side are dropped first.
    """
    boxes_wh = _valid_boxes(boxes_wh)
    if count < 1:
        raise ValueError(f"kmeans_anchors: count must be >= 1 (got {count})")
    if len(boxes_wh) < count:
        raise ValueError(f"kmeans_anchors: {len(boxes_wh)} boxes cannot make {count} anchors")
    rng = np.random.default_rng(seed)
    best: np.ndarray | None = None
    best_score = -1.0
    for _ in range(max(1, restarts)):
        centres = _lloyd(boxes_wh, _kmeans_plus_plus(boxes_wh, count, rng), iterations)
        score = mean_best_iou(boxes_wh, centres)
        if score > best_score:
            best, best_score = centres, score
    # The first restart sets it: the mean IoU of finite boxes is >= 0 > -1.
    assert best is not None
    return best[np.argsort(np.prod(best, axis=1), kind="stable")]


def group_by_stride(anchors_wh: np.ndarray, strides: Sequence[int] = (8, 16, 32)) -> AnchorTable:
    """Anchors sorted by area, split evenly over ``strides``: the smallest to the finest stride."""
    anchors_wh = np.asarray(anchors_wh, np.float64).reshape(-1, 2)
    strides = sorted(int(stride) for stride in strides)
    if not strides or len(anchors_wh) % len(strides):
        raise ValueError(f"group_by_stride: {len(anchors_wh)} anchors do not split evenly over strides {strides}")
    ordered = anchors_wh[np.argsort(np.prod(anchors_wh, axis=1), kind="stable")]
    per_stride = len(ordered) // len(strides)
    return {
        stride: tuple((float(w), float(h)) for w, h in ordered[index * per_stride:(index + 1) * per_stride])
        for index, stride in enumerate(strides)
    }


def anchor_table_toml(table: Mapping[int, Sequence[Sequence[float]]]) -> str:
    """The table as a plan's ``model.anchors`` value, in whole pixels as yolov3.cfg writes them."""
    rows = []
    for stride, pairs in sorted(table.items()):
        pixels = ", ".join(f"[{max(1, round(w))}, {max(1, round(h))}]" for w, h in pairs)
        rows.append(f"{stride} = [{pixels}]")
    return "{ " + ", ".join(rows) + " }"


def read_boxes_wh(prepared: Any, *, split: str = "train", image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Every object box of a prepared dataset's ``split`` as pixel (width, height), (N, 2) float64.

    ``prepared`` is a :class:`detplug.core.data.prepared.PreparedData`; boxes are
    stored as ratios of the letterboxed image, so they are scaled by
    ``image_size`` (height, width; default the records' own, which is the plan's
    input size). Ignore regions (negative class) are left out. Reads the
    TFRecords with TensorFlow, imported here only.
    """
    from detplug.core.data.records import read_boxes

    height, width = image_size if image_size is not None else prepared.image_size
    boxes, classes = read_boxes(prepared.files(split))
    boxes = boxes[classes >= 0]
    return np.stack([(boxes[:, 3] - boxes[:, 1]) * width, (boxes[:, 2] - boxes[:, 0]) * height], axis=1)


# -- k-means internals --


def _valid_boxes(boxes_wh: np.ndarray) -> np.ndarray:
    boxes_wh = np.asarray(boxes_wh, np.float64).reshape(-1, 2)
    return boxes_wh[(boxes_wh > 0).all(axis=1)]


def _kmeans_plus_plus(boxes_wh: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with the IoU distance: each next centre drawn with probability
    proportional to its squared distance from the nearest centre so far."""
    centres = [boxes_wh[rng.integers(len(boxes_wh))]]
    for _ in range(1, count):
        distance = 1.0 - corner_iou(boxes_wh, np.array(centres)).max(axis=1)
        weights = distance**2
        total = weights.sum()
        # Fewer distinct shapes than anchors: any box will do.
        index = rng.integers(len(boxes_wh)) if total <= 0 else rng.choice(len(boxes_wh), p=weights / total)
        centres.append(boxes_wh[index])
    return np.array(centres, np.float64)


def _lloyd(boxes_wh: np.ndarray, centres: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        iou = corner_iou(boxes_wh, centres)
        nearest = iou.argmax(axis=1)
        updated = centres.copy()
        for cluster in range(len(centres)):
            members = boxes_wh[nearest == cluster]
            if len(members):
                updated[cluster] = members.mean(axis=0)
            else:
                # An empty cluster restarts at the box the other anchors fit worst.
                updated[cluster] = boxes_wh[iou.max(axis=1).argmin()]
        if np.allclose(updated, centres, rtol=1e-9, atol=1e-9):
            return updated
        centres = updated
    return centres
