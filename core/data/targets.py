"""YOLO target assignment (TensorFlow, graph-safe: runs inside tf.data).

By default each ground-truth box goes to exactly one anchor: the one, over
the anchors of all strides, whose shape best matches the box (IoU of (h, w)
with both centred at the same point), at that anchor's stride, in the cell
holding the box centre (YOLOv3). :class:`~detplug.core.plan.assignment.Assignment`
can add YOLOv5's positives: every anchor of similar shape, and the two cells
next to the centre nearest to it. A positive's target is
``[y, x, h, w, 1, one-hot class]``: the box itself as ratios of the image
(the same box for every positive of it), objectness 1 and the class.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from detplug.core.plan.assignment import Assignment
from detplug.core.plan.specs import AnchorRatios, ImageSpec

#: (row, column) offsets of the cells a box may train: its own, then left, up, right, down.
_CELL_OFFSETS = ((0, 0), (0, -1), (-1, 0), (0, 1), (1, 0))


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


def matched_anchors(boxes_hw: tf.Tensor, anchors_hw: tf.Tensor, anchor_ratio: float) -> tf.Tensor:
    """(M, K) bool: the anchors each box trains. The best shape match always; with
    ``anchor_ratio`` > 0 also every anchor whose height and width both lie within that
    factor of the box's (YOLOv5: ``max(r, 1 / r) < anchor_t`` for r = box / anchor)."""
    best = tf.argmax(shape_iou(boxes_hw, anchors_hw), axis=1, output_type=tf.int32)
    matched = tf.one_hot(best, tf.shape(anchors_hw)[0], on_value=True, off_value=False)
    if anchor_ratio > 0:
        ratio = boxes_hw[:, None, :] / tf.maximum(anchors_hw[None, :, :], 1e-12)
        worst = tf.reduce_max(tf.maximum(ratio, 1.0 / tf.maximum(ratio, 1e-12)), axis=-1)
        matched = matched | (worst < anchor_ratio)
    return matched


def assign_targets(
    boxes_yxhw: tf.Tensor,
    classes: tf.Tensor,
    anchors: Mapping[int, AnchorRatios],
    image: ImageSpec,
    num_classes: int,
    assignment: Assignment | None = None,
) -> dict[str, tf.Tensor]:
    """Targets ``{str(stride): (H/s, W/s, anchors, 5 + num_classes)}`` for one image.

    ``boxes_yxhw`` (M, 4) are centre and size as ratios of the image;
    ``classes`` (M,) class indices. Boxes with a negative class (ignore
    regions) or zero size (padding) get no target. When two positives claim
    the same cell and anchor, one in its centre's cell beats one in a
    neighbour cell, then the earlier box wins, so the result does not depend
    on scatter order.
    """
    assignment = assignment or Assignment()
    strides = sorted(anchors)
    anchors_hw = tf.constant([hw for stride in strides for hw in anchors[stride]], tf.float32)
    boxes = tf.convert_to_tensor(boxes_yxhw, tf.float32)
    classes = tf.cast(classes, tf.int32)
    boxes_hw = boxes[:, 2:4]
    box_count = tf.shape(boxes)[0]

    valid = (classes >= 0) & (boxes_hw[:, 0] > 0) & (boxes_hw[:, 1] > 0)
    matched = matched_anchors(boxes_hw, anchors_hw, assignment.anchor_ratio) & valid[:, None]
    values = tf.concat(
        [boxes, tf.ones_like(boxes[:, :1]), tf.one_hot(tf.maximum(classes, 0), num_classes, dtype=tf.float32)],
        axis=-1,
    )
    offsets = _CELL_OFFSETS if assignment.neighbours else _CELL_OFFSETS[:1]

    targets = {}
    first_anchor = 0
    for stride in strides:
        rows, cols = grid_size(image, stride)
        count = len(anchors[stride])
        here = matched[:, first_anchor:first_anchor + count]  # (M, A)
        # Centres in grid units; a centre on the far edge (y = 1) belongs to the last cell.
        grid_y, grid_x = boxes[:, 0] * rows, boxes[:, 1] * cols
        row = tf.clip_by_value(tf.cast(tf.floor(grid_y), tf.int32), 0, rows - 1)
        col = tf.clip_by_value(tf.cast(tf.floor(grid_x), tf.int32), 0, cols - 1)
        frac_y, frac_x = grid_y - tf.cast(row, tf.float32), grid_x - tf.cast(col, tf.float32)
        # YOLOv5's nearest neighbours: across on the side of the centre's half, and up or down alike.
        takes = {(0, 0): True, (0, -1): (frac_x < 0.5) & (col > 0), (-1, 0): (frac_y < 0.5) & (row > 0),
                 (0, 1): (frac_x > 0.5) & (col < cols - 1), (1, 0): (frac_y > 0.5) & (row < rows - 1)}
        slots, ranks, keeps, sources = [], [], [], []
        for number, (d_row, d_col) in enumerate(offsets):
            take = tf.broadcast_to(takes[(d_row, d_col)], [box_count])
            cell = (row + d_row) * cols + (col + d_col)  # (M,)
            slots.append(cell[:, None] * count + tf.range(count)[None, :])  # (M, A)
            # Lower rank wins a slot: centre-cell positives first, then by box order.
            rank = tf.range(box_count) + (0 if number == 0 else box_count)
            ranks.append(tf.broadcast_to(rank[:, None], [box_count, count]))
            keeps.append(here & take[:, None])
            sources.append(tf.broadcast_to(tf.range(box_count)[:, None], [box_count, count]))
        keep = tf.reshape(tf.stack(keeps), [-1])
        slot = tf.boolean_mask(tf.reshape(tf.stack(slots), [-1]), keep)
        rank = tf.boolean_mask(tf.reshape(tf.stack(ranks), [-1]), keep)
        source = tf.boolean_mask(tf.reshape(tf.stack(sources), [-1]), keep)
        winner = tf.math.unsorted_segment_min(rank, slot, num_segments=rows * cols * count)
        wins = tf.equal(rank, tf.gather(winner, slot))
        slot, source = tf.boolean_mask(slot, wins), tf.boolean_mask(source, wins)
        indices = tf.stack([slot // (cols * count), (slot // count) % cols, slot % count], axis=1)
        targets[str(stride)] = tf.scatter_nd(
            indices, tf.gather(values, source), [rows, cols, count, 5 + num_classes]
        )
        first_anchor += count
    return targets
