"""The score losses: objectness BCE per cell with YOLOv3's ignore rule, and per-class BCE
per positive cell (normalised as core/model/losses.py states).

Factory contract (core/build.py, kind ``loss``): ``factory(params, chain)``
returns ``callable(pred, target, boxes) -> (batch,)`` for one stride. Both
work on the logits in ``pred["raw"]`` (channel 4 objectness, 5: classes):
BCE from logits is stable where BCE from a saturated sigmoid is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from detplug.core.model import boxes as box_ops
from detplug.core.model.losses import share_per_positive
from detplug.core.plan.specs import Chain
from detplug.plugins.losses import stride_balance


class ObjectnessLoss:
    """Per image: the mean over the stride's cells and anchors of the objectness logit's
    BCE, on positive cells and on negative cells whose predicted box overlaps no box of
    the image by ``ignore_threshold`` or more (ignored cells add 0), times the stride's
    weight in ``stride_weights`` ({stride: weight}; 1 for a stride not listed, or when
    the image size, which tells the stride from the grid, is not given).

    ``negative_weight`` scales the no-object term (YOLOv1's lambda_noobj): an image
    has thousands of negative cells to a few positive ones, and a short training
    run learns objectness faster when they weigh less. 1.0 is YOLOv3's sum.

    The ignore rule (YOLOv3 §2.1) keeps the model from being taught "no object"
    where a box it predicts from a non-assigned anchor does fit an object, or an
    ignore region such as KITTI's DontCare: ``boxes`` holds both. With
    ``ignore_threshold = 0`` every negative is ignored; with 1 none is (short
    of an exact match).
    """

    def __init__(self, *, ignore_threshold: float = 0.5, negative_weight: float = 1.0,
                 stride_weights: Mapping[int, float] | None = None, image_height: int | None = None,
                 iou_target: bool = False) -> None:
        if not 0.0 <= ignore_threshold <= 1.0:
            raise ValueError(f"'ignore_threshold' must be in [0, 1] (got {ignore_threshold!r})")
        if negative_weight < 0.0:
            raise ValueError(f"'negative_weight' must be >= 0 (got {negative_weight!r})")
        self.ignore_threshold = float(ignore_threshold)
        self.negative_weight = float(negative_weight)
        self.stride_weights = {int(stride): float(weight) for stride, weight in (stride_weights or {}).items()}
        self.image_height = image_height
        self.iou_target = bool(iou_target)

    def __call__(self, pred: Mapping[str, tf.Tensor], target: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        target = tf.cast(target, tf.float32)
        logit = tf.cast(pred["raw"][..., 4], tf.float32)
        pred_yxhw = tf.cast(pred["yxhw"], tf.float32)
        positive = target[..., 4]
        best_iou = self._best_iou(pred_yxhw, tf.cast(boxes, tf.float32))
        # The rule selects which terms count; it must not push boxes around.
        counted_negative = (1.0 - positive) * tf.cast(best_iou < self.ignore_threshold, tf.float32)
        label = positive
        if self.iou_target:
            # YOLOv5: a positive's target is how well its box fits, a constant for the gradient.
            fit = tf.stop_gradient(tf.clip_by_value(box_ops.iou(pred_yxhw, target[..., :4]), 0.0, 1.0))
            label = positive * fit
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logit)
        weight = positive + self.negative_weight * counted_negative
        return self._stride_weight(logit) * tf.reduce_mean(cross_entropy * weight, axis=[1, 2, 3])

    def _stride_weight(self, logit: tf.Tensor) -> tf.Tensor:
        """The weight of the stride whose grid ``logit`` (B, H, W, A) is: image height / H."""
        if not self.stride_weights or self.image_height is None:
            return tf.constant(1.0)
        stride = self.image_height // tf.shape(logit)[1]
        strides = tf.constant(list(self.stride_weights), tf.int32)
        weights = tf.constant(list(self.stride_weights.values()), tf.float32)
        listed = tf.equal(strides, stride)
        return tf.where(tf.reduce_any(listed), tf.reduce_sum(tf.where(listed, weights, 0.0)), 1.0)

    @staticmethod
    def _best_iou(pred_yxhw: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        """(B, H, W, A): each predicted box's best IoU with any box of its image.

        Zero-padded rows have IoU 0 with everything, so they never ignore.
        """
        pairs = box_ops.iou(pred_yxhw[..., None, :], boxes[:, None, None, None, :, :])
        return tf.stop_gradient(tf.reduce_max(pairs, axis=-1))

    def __repr__(self) -> str:
        return (f"ObjectnessLoss(ignore_threshold={self.ignore_threshold!r}, negative_weight={self.negative_weight!r}, "
                f"stride_weights={self.stride_weights!r}, iou_target={self.iou_target!r})")


class CategoryLoss:
    """BCE of every class logit against the one-hot target (YOLOv3's independent logistic
    classifiers), averaged over the classes and over the batch's positive cells; returned
    as each image's share of that mean (core/model/losses.py)."""

    def __call__(self, pred: Mapping[str, tf.Tensor], target: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        target = tf.cast(target, tf.float32)
        logits = tf.cast(pred["raw"][..., 5:], tf.float32)
        positive = target[..., 4]
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=target[..., 5:], logits=logits)
        sums = tf.reduce_sum(positive * tf.reduce_mean(cross_entropy, axis=-1), axis=[1, 2, 3])
        return share_per_positive(sums, positive)

    def __repr__(self) -> str:
        return "CategoryLoss()"


def objectness_loss_from_params(params: Any, chain: Chain | None) -> ObjectnessLoss:
    """Build :class:`ObjectnessLoss`; the stride weights need the chain's image and strides."""
    image, decoded = getattr(chain, "image", None), getattr(chain, "decoded", None)
    weights = None if decoded is None else stride_balance(params.stride_balance, tuple(decoded))
    return ObjectnessLoss(ignore_threshold=params.ignore_threshold, negative_weight=params.negative_weight,
                          stride_weights=weights, image_height=None if image is None else image.height,
                          iou_target=params.iou_target)


def category_loss_from_params(params: Any, chain: Chain | None) -> CategoryLoss:
    return CategoryLoss()
