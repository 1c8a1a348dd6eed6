"""The score losses: objectness BCE with YOLOv3's ignore rule, and per-class BCE.

Factory contract (registry.py, kind ``loss``): ``factory(params, chain)``
returns ``callable(pred, target, boxes) -> (batch,)`` for one stride. Both
work on the logits in ``pred["raw"]`` (channel 4 objectness, 5: classes):
BCE from logits is stable where BCE from a saturated sigmoid is not.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from detplug.core import boxes as box_ops
from detplug.core.specs import Chain


class ObjectnessLoss:
    """Per image: BCE of the objectness logit on positive cells, plus on negative
    cells whose predicted box overlaps no box of the image by ``ignore_threshold``
    or more.

    ``negative_weight`` scales the no-object term (YOLOv1's lambda_noobj): an image
    has thousands of negative cells to a few positive ones, and a short training
    run learns objectness faster when they weigh less. 1.0 is YOLOv3's sum.

    The ignore rule (YOLOv3 §2.1) keeps the model from being taught "no object"
    where a box it predicts from a non-assigned anchor does fit an object, or an
    ignore region such as KITTI's DontCare: ``boxes`` holds both. With
    ``ignore_threshold = 0`` every negative is ignored; with 1 none is (short
    of an exact match).
    """

    def __init__(self, *, ignore_threshold: float = 0.5, negative_weight: float = 1.0) -> None:
        if not 0.0 <= ignore_threshold <= 1.0:
            raise ValueError(f"'ignore_threshold' must be in [0, 1] (got {ignore_threshold!r})")
        if negative_weight < 0.0:
            raise ValueError(f"'negative_weight' must be >= 0 (got {negative_weight!r})")
        self.ignore_threshold = float(ignore_threshold)
        self.negative_weight = float(negative_weight)

    def __call__(self, pred: Mapping[str, tf.Tensor], target: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        target = tf.cast(target, tf.float32)
        logit = tf.cast(pred["raw"][..., 4], tf.float32)
        positive = target[..., 4]
        best_iou = self._best_iou(tf.cast(pred["yxhw"], tf.float32), tf.cast(boxes, tf.float32))
        # The rule selects which terms count; it must not push boxes around.
        counted_negative = (1.0 - positive) * tf.cast(best_iou < self.ignore_threshold, tf.float32)
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logit)
        weight = positive + self.negative_weight * counted_negative
        return tf.reduce_sum(cross_entropy * weight, axis=[1, 2, 3])

    @staticmethod
    def _best_iou(pred_yxhw: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        """(B, H, W, A): each predicted box's best IoU with any box of its image.

        Zero-padded rows have IoU 0 with everything, so they never ignore.
        """
        pairs = box_ops.iou(pred_yxhw[..., None, :], boxes[:, None, None, None, :, :])
        return tf.stop_gradient(tf.reduce_max(pairs, axis=-1))

    def __repr__(self) -> str:
        return f"ObjectnessLoss(ignore_threshold={self.ignore_threshold!r}, negative_weight={self.negative_weight!r})"


class CategoryLoss:
    """Per image: BCE of every class logit against the one-hot target, summed
    over classes and over positive cells (YOLOv3's independent logistic classifiers)."""

    def __call__(self, pred: Mapping[str, tf.Tensor], target: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        target = tf.cast(target, tf.float32)
        logits = tf.cast(pred["raw"][..., 5:], tf.float32)
        positive = target[..., 4]
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=target[..., 5:], logits=logits)
        return tf.reduce_sum(positive * tf.reduce_sum(cross_entropy, axis=-1), axis=[1, 2, 3])

    def __repr__(self) -> str:
        return "CategoryLoss()"


def objectness_loss_from_params(params: Any, chain: Chain | None) -> ObjectnessLoss:
    return ObjectnessLoss(ignore_threshold=params.ignore_threshold, negative_weight=params.negative_weight)


def category_loss_from_params(params: Any, chain: Chain | None) -> CategoryLoss:
    return CategoryLoss()
