"""YOLOv3 target assignment (TensorFlow, graph-safe: runs inside tf.data).

Each ground-truth box goes to exactly one anchor: the one, over the anchors of
all strides, whose shape best matches the box (IoU of (h, w) with both centred
at the same point), at that anchor's stride, in the cell holding the box
centre. Its target is [y, x, h, w, 1, one-hot class]: the box itself as ratios
of the image, objectness 1 and the class.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from detplug.core.specs import AnchorRatios, ImageSpec


def grid_size(image: ImageSpec, stride: int) -> tuple[int, int]:
    """(rows, cols) of the output grid at ``stride``."""
    if image.height % stride or image.width % stride:
        raise ValueError(f"{image} is not divisible by stride {stride}")
    return image.height // stride, image.width // stride


def shape_iou(boxes_hw: tf.Tensor, anchors_hw: tf.Tensor) -> tf.Tensor:
    """IoU of (h, w) pairs aligned at a common centre: (M, 2) x (K, 2) -> (M, K)."""
    intersection = tf.reduce_prod(tf.minimum(boxes_hw[:, None, :], anchors_hw[None, :, :]), axis=-1)
    union = tf.reduce_prod(boxes_hw, axis=-1)[:, None] + tf.reduce_prod(anchors_hw, axis=-1)[None, :] - intersection
    return intersection / tf.maximum(union, 1e-12)


def assign_targets(
    boxes_yxhw: tf.Tensor,
    classes: tf.Tensor,
    anchors: Mapping[int, AnchorRatios],
    image: ImageSpec,
    num_classes: int,
) -> dict[str, tf.Tensor]:
    """Targets ``{str(stride): (H/s, W/s, anchors, 5 + num_classes)}`` for one image.

    ``boxes_yxhw`` (M, 4) are centre and size as ratios of the image;
    ``classes`` (M,) class indices. Boxes with a negative class (ignore
    regions) or zero size (padding) get no target. When two boxes claim the
    same cell and anchor the earlier one keeps it, so the result does not
    depend on scatter order.
    """
    strides = sorted(anchors)
    anchors_hw = tf.constant([hw for stride in strides for hw in anchors[stride]], tf.float32)
    boxes = tf.convert_to_tensor(boxes_yxhw, tf.float32)
    classes = tf.cast(classes, tf.int32)
    boxes_hw = boxes[:, 2:4]

    best_anchor = tf.argmax(shape_iou(boxes_hw, anchors_hw), axis=1, output_type=tf.int32)
    valid = (classes >= 0) & (boxes_hw[:, 0] > 0) & (boxes_hw[:, 1] > 0)
    values = tf.concat(
        [boxes, tf.ones_like(boxes[:, :1]), tf.one_hot(tf.maximum(classes, 0), num_classes, dtype=tf.float32)],
        axis=-1,
    )
    positions = tf.range(tf.shape(boxes)[0])
    earlier = positions[None, :] < positions[:, None]  # [i, j]: box j comes before box i

    targets = {}
    first_anchor = 0
    for stride in strides:
        rows, cols = grid_size(image, stride)
        count = len(anchors[stride])
        here = valid & (best_anchor >= first_anchor) & (best_anchor < first_anchor + count)
        row = tf.clip_by_value(tf.cast(tf.floor(boxes[:, 0] * rows), tf.int32), 0, rows - 1)
        col = tf.clip_by_value(tf.cast(tf.floor(boxes[:, 1] * cols), tf.int32), 0, cols - 1)
        anchor = best_anchor - first_anchor
        slot = (row * cols + col) * count + anchor
        taken_before = tf.reduce_any((slot[:, None] == slot[None, :]) & here[None, :] & earlier, axis=1)
        keep = here & ~taken_before
        indices = tf.boolean_mask(tf.stack([row, col, anchor], axis=1), keep)
        targets[str(stride)] = tf.scatter_nd(
            indices, tf.boolean_mask(values, keep), [rows, cols, count, 5 + num_classes]
        )
        first_anchor += count
    return targets
