"""Box formats and overlap measures (IoU, GIoU, CIoU) in TensorFlow.

Boxes are ``(..., 4)`` tensors in ``yxhw`` order: centre y, centre x, height,
width, as ratios of the image. Every measure broadcasts over the leading
dimensions, so ``iou(pred[..., None, :], boxes[:, None, :])`` gives all pairs.

Zero-size boxes are normal input here: targets and ``boxes`` are zero-padded.
Every division therefore carries ``eps``, so values and gradients stay finite
for them (a NaN gradient times a zero mask is still NaN).
"""

from __future__ import annotations

import math

import tensorflow as tf

#: Small enough not to move a real box's value, large enough to keep
#: float32 (and float16, as a subnormal) divisions by zero finite.
EPS = 1e-7


def yxhw_to_yxyx(boxes: tf.Tensor) -> tf.Tensor:
    """``(..., 4)`` centre/size to corners ``[y_min, x_min, y_max, x_max]``."""
    boxes = tf.convert_to_tensor(boxes)
    centre, size = boxes[..., :2], boxes[..., 2:]
    return tf.concat([centre - size / 2, centre + size / 2], axis=-1)


def yxyx_to_yxhw(boxes: tf.Tensor) -> tf.Tensor:
    """Corners ``[y_min, x_min, y_max, x_max]`` to ``(..., 4)`` centre/size."""
    boxes = tf.convert_to_tensor(boxes)
    low, high = boxes[..., :2], boxes[..., 2:]
    return tf.concat([(low + high) / 2, high - low], axis=-1)


def _as_pair(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    a = tf.convert_to_tensor(a)
    return a, tf.convert_to_tensor(b, dtype=a.dtype)


def _corners(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    y, x, h, w = tf.unstack(boxes, num=4, axis=-1)
    return y - h / 2, x - w / 2, y + h / 2, x + w / 2


def _iou_and_enclosing(a: tf.Tensor, b: tf.Tensor, eps: float):
    """IoU, the union area and the enclosing box's (height, width) of broadcast pairs."""
    a_y1, a_x1, a_y2, a_x2 = _corners(a)
    b_y1, b_x1, b_y2, b_x2 = _corners(b)
    intersection = tf.maximum(tf.minimum(a_y2, b_y2) - tf.maximum(a_y1, b_y1), 0.0) * tf.maximum(
        tf.minimum(a_x2, b_x2) - tf.maximum(a_x1, b_x1), 0.0
    )
    # Negative sizes (a badly decoded box) must not make a negative area.
    area_a = tf.maximum(a[..., 2], 0.0) * tf.maximum(a[..., 3], 0.0)
    area_b = tf.maximum(b[..., 2], 0.0) * tf.maximum(b[..., 3], 0.0)
    union = area_a + area_b - intersection
    iou_value = intersection / (union + eps)
    enclosing_h = tf.maximum(a_y2, b_y2) - tf.minimum(a_y1, b_y1)
    enclosing_w = tf.maximum(a_x2, b_x2) - tf.minimum(a_x1, b_x1)
    return iou_value, union, enclosing_h, enclosing_w


def iou(a: tf.Tensor, b: tf.Tensor, *, eps: float = EPS) -> tf.Tensor:
    """Intersection over union of yxhw boxes ``a`` and ``b``, broadcast: ``(...)``.

    Two zero-size boxes have IoU 0, never NaN.
    """
    a, b = _as_pair(a, b)
    return _iou_and_enclosing(a, b, eps)[0]


def giou(a: tf.Tensor, b: tf.Tensor, *, eps: float = EPS) -> tf.Tensor:
    """Generalized IoU (Rezatofighi et al. 2019): IoU - (C - U) / C, C the enclosing box area."""
    a, b = _as_pair(a, b)
    iou_value, union, enclosing_h, enclosing_w = _iou_and_enclosing(a, b, eps)
    enclosing_area = enclosing_h * enclosing_w
    return iou_value - (enclosing_area - union) / (enclosing_area + eps)


def ciou(pred: tf.Tensor, truth: tf.Tensor, *, eps: float = EPS) -> tf.Tensor:
    """Complete IoU (Zheng et al. 2020) of predicted against ground-truth yxhw boxes.

    ``CIoU = IoU - rho^2 / c^2 - alpha * v`` where rho is the distance between
    the centres, c the diagonal of the enclosing box,
    ``v = 4 / pi^2 * (atan(w_gt / h_gt) - atan(w / h))^2`` and
    ``alpha = v / (1 - IoU + v)``. As in the paper, alpha is a constant for the
    gradient (``tf.stop_gradient``): it only sets how much the aspect term weighs.

    The centre-distance and aspect terms are not invariant to scaling y and x
    differently: for boxes in ratios of a non-square image, scale them to
    pixels first if the paper's geometry is wanted (the CIoU loss does).
    """
    pred, truth = _as_pair(pred, truth)
    iou_value, _, enclosing_h, enclosing_w = _iou_and_enclosing(pred, truth, eps)
    centre_distance_sq = tf.reduce_sum(tf.square(pred[..., :2] - truth[..., :2]), axis=-1)
    enclosing_diagonal_sq = tf.square(enclosing_h) + tf.square(enclosing_w)
    # w / (h + eps) rather than atan2(w, h): atan2's gradient is 0/0 at a zero-size box.
    aspect_pred = tf.atan(pred[..., 3] / (tf.maximum(pred[..., 2], 0.0) + eps))
    aspect_truth = tf.atan(truth[..., 3] / (tf.maximum(truth[..., 2], 0.0) + eps))
    v = (4.0 / math.pi**2) * tf.square(aspect_truth - aspect_pred)
    # eps: identical boxes give v = 0 and 1 - IoU = 0.
    alpha = tf.stop_gradient(v / (1.0 - iou_value + v + eps))
    return iou_value - centre_distance_sq / (enclosing_diagonal_sq + eps) - alpha * v
