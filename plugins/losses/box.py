"""The box loss: 1 - CIoU of the predicted box, averaged over the cells that hold an object.

Factory contract (core/build.py, kind ``loss``): ``factory(params, chain)``
returns ``callable(pred, target, boxes) -> (batch,)`` for one stride.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from detplug.core.model import boxes as box_ops
from detplug.core.model.losses import share_per_positive
from detplug.core.plan.specs import Chain, ImageSpec


class CiouLoss:
    """The mean over the batch's positive cells of ``1 - CIoU(pred yxhw, target yxhw)``,
    returned as each image's share of it (core/model/losses.py).

    ``image_size`` (height, width in pixels), when given, scales the ratio
    boxes to pixels before CIoU: its centre-distance and aspect terms are
    defined on the image's geometry, and a 192x640 KITTI image squeezes x by
    3.3 in ratio space. IoU, and so a perfect prediction's zero loss, do not
    depend on it.
    """

    def __init__(self, *, image_size: tuple[int, int] | None = None) -> None:
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))

    def __call__(self, pred: Mapping[str, tf.Tensor], target: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        # float32 whatever the model's compute dtype: eps and sums need the range.
        target = tf.cast(target, tf.float32)
        pred_yxhw = tf.cast(pred["yxhw"], tf.float32)
        true_yxhw = target[..., :4]
        if self.image_size is not None:
            height, width = self.image_size
            scale = tf.constant([height, width, height, width], tf.float32)
            pred_yxhw, true_yxhw = pred_yxhw * scale, true_yxhw * scale
        positive = target[..., 4]
        per_cell = positive * (1.0 - box_ops.ciou(pred_yxhw, true_yxhw))
        return share_per_positive(tf.reduce_sum(per_cell, axis=[1, 2, 3]), positive)

    def __repr__(self) -> str:
        return f"CiouLoss(image_size={self.image_size!r})"


def ciou_loss_from_params(params: Any, chain: Chain | None) -> CiouLoss:
    """Build :class:`CiouLoss`; in pixel space when the chain knows the input image."""
    image: ImageSpec | None = getattr(chain, "image", None)
    return CiouLoss(image_size=None if image is None else (image.height, image.width))
