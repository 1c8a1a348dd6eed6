"""Sliced prediction: a large image cut into the tile grid training's tiles were cut on
(core/data/tiles.py), the tiles through the model in batches, their boxes moved back to the
image and merged; optionally one more look at the whole image shrunk to the model input.

:func:`predict_sliced` is a pure function of an image array and a ``detect`` function over a
batch of letterboxed tiles (core/model/inference.batch_detector: model, flattening and the
per-tile NMS), so ``--predict --tile``, whole-image evaluation and the tests share it.

The merge (:func:`merge_detections`) is class-wise NMS over the whole image, TensorFlow's
(``tf.image.non_max_suppression_overlaps``), with the overlap of two boxes measured as IoU
when they come from the same window and as intersection over the smaller box when they
come from two windows. Why NMS, and why that overlap:

- An object inside the band where two tiles overlap is seen whole by both; their boxes agree
  to a pixel or two, and NMS keeps the better-scored one as the model predicted it. A tile
  that cuts an object sees a part of it, whose box lies inside the whole view's: its IoU with
  the whole is only the part's share (a tenth of the object is IoU 0.1, never suppressed), but
  its intersection over the smaller box is ~1. Across windows that is the only way two boxes
  of one class nest, so the part goes; inside one window the plan's own IoU NMS already ran,
  and nested boxes there are two objects (a car behind a car) and stay two.
- Merging instead of suppressing (SAHI's greedy non-maximum merging, weighted box fusion)
  replaces a cluster by the union or the average of its boxes: in crowded scenes (cars in a
  row) the union swallows neighbours, and the box reported is a home-made blend that no
  window predicted, whose score means something else than a tile's. NMS reports boxes the
  model gave, at their scores, post-processed as the plan post-processes every image.
- Class-wise: a cyclist's box over a pedestrian's is two objects, as within a tile.

What NMS cannot mend: a part that scores above the whole view wins (as in any NMS); objects
larger than the overlap band may be cut in every tile, which the full-image pass is for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from detplug.core.data.slicing import Slicing
from detplug.core.model.inference import letterbox_images, to_source_pixels
from detplug.core.plan.specs import ImageSpec

#: ``detect``: letterboxed images (B, H, W, 3) float32 in [0, 1] at the model input -> boxes
#: (B, K, 4) y1 x1 y2 x2 in [0, 1] of that input, scores (B, K), classes (B, K) and
#: num_detections (B,), as core/model/inference.non_max_suppression gives them.
Detect = Callable[[tf.Tensor], Mapping[str, tf.Tensor]]

#: The merge compares every two candidate boxes of a class (a dense overlap matrix), so it takes
#: at most this many of a class, the best-scored: 4096^2 floats are 64 MB. A tile gives at
#: most [evaluation] max_detections, so a 1242x375 KITTI image in 320 px tiles (10 tiles, 100
#: each) never comes near it; a 4000x3000 aerial image (192 tiles) can, at evaluation's low
#: score threshold, where the dropped boxes are the least confident.
MAX_MERGE_CANDIDATES = 4096


def predict_sliced(image: np.ndarray, detect: Detect, input_spec: ImageSpec, slicing: Slicing, *,
                   iou_threshold: float, max_detections: int, batch_size: int = 8) -> dict[str, np.ndarray]:
    """The detections of ``image`` (H, W, 3) uint8, sliced: boxes (K, 4) x1 y1 x2 y2 in its
    pixels, scores (K,) best first, classes (K,) int32. ``detect`` is asked about
    ``batch_size`` tiles at a time (all of one size: the grid's windows are), each letterboxed
    to ``input_spec``; the windows' boxes are merged by :func:`merge_detections`.

    ``max_detections`` is the cap of one window, as it is of one tile in training's
    evaluations: the whole image keeps up to that many per window. A scene of 600 trees cut
    into 30 tiles is 600 detections; a cap of 100 on the whole would hide five in six."""
    height, width = image.shape[:2]
    tiles = slicing.tiles(height, width)
    boxes, scores, classes, windows = [], [], [], []
    for start in range(0, len(tiles), batch_size):
        batch = tiles[start:start + batch_size]
        found = _detect_letterboxed(detect, np.stack([image[t.top:t.bottom, t.left:t.right] for t in batch]),
                                    input_spec)
        for index, tile in enumerate(batch):
            count = int(found["num_detections"][index])
            boxes.append(found["boxes"][index][:count] + np.array([tile.left, tile.top] * 2, np.float32))
            scores.append(found["scores"][index][:count])
            classes.append(found["classes"][index][:count])
            windows.append(np.full(count, start + index, np.int32))
    if slicing.full_image_pass and len(tiles) > 1:
        found = _detect_letterboxed(detect, image[None], input_spec)
        count = int(found["num_detections"][0])
        boxes.append(found["boxes"][0][:count])
        scores.append(found["scores"][0][:count])
        classes.append(found["classes"][0][:count])
        windows.append(np.full(count, len(tiles), np.int32))
    return merge_detections(np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes),
                            np.concatenate(windows), iou_threshold=iou_threshold,
                            max_detections=max_detections * len(windows))  # one entry per window


def _detect_letterboxed(detect: Detect, pixels: np.ndarray, input_spec: ImageSpec) -> dict[str, np.ndarray]:
    """``detect`` on uint8 windows (B, h, w, 3) of one size; boxes x1 y1 x2 y2 in their pixels."""
    inputs, _, _ = letterbox_images(tf.constant(pixels), input_spec)
    found = detect(inputs)
    boxes = to_source_pixels(tf.convert_to_tensor(found["boxes"], tf.float32), tf.shape(pixels)[1:3], input_spec)
    return {"boxes": boxes.numpy(), "scores": np.asarray(found["scores"], np.float32),
            "classes": np.asarray(found["classes"], np.int32), "num_detections": np.asarray(found["num_detections"])}


def merge_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, windows: np.ndarray, *,
                     iou_threshold: float, max_detections: int) -> dict[str, np.ndarray]:
    """Class-wise NMS over the whole image of boxes (N, 4) x1 y1 x2 y2 found in the windows
    ``windows`` (N,): a box goes when a better-scored one of its class overlaps it by more than
    ``iou_threshold``, measured as IoU within a window and as intersection over the smaller box
    across windows (the module's docstring says why). At most ``max_detections``, best first."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores, classes = np.asarray(scores, np.float32), np.asarray(classes, np.int32)
    kept = []
    for category in np.unique(classes):
        members = np.flatnonzero(classes == category)
        members = members[np.argsort(-scores[members], kind="stable")[:MAX_MERGE_CANDIDATES]]
        overlaps = _overlaps(boxes[members], np.asarray(windows)[members])
        selected = tf.image.non_max_suppression_overlaps(
            tf.constant(overlaps), tf.constant(scores[members]), max_output_size=max_detections,
            overlap_threshold=iou_threshold)
        kept.append(members[selected.numpy()])
    order = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    order = order[np.argsort(-scores[order], kind="stable")][:max_detections]
    return {"boxes": boxes[order], "scores": scores[order], "classes": classes[order]}


def _overlaps(boxes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """(N, N): IoU of two boxes of one window, intersection over the smaller of two windows'."""
    x1, y1, x2, y2 = (boxes[:, index] for index in range(4))
    area = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    width = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0.0, None)
    height = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0.0, None)
    intersection = width * height
    tiny = np.float32(1e-9)  # a box of no area overlaps nothing, rather than dividing by zero
    union = area[:, None] + area[None] - intersection
    smaller = np.minimum(area[:, None], area[None])
    same_window = windows[:, None] == windows[None]
    return np.where(same_window, intersection / np.maximum(union, tiny),
                    intersection / np.maximum(smaller, tiny)).astype(np.float32)
