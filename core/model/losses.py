"""Weighs and sums the per-stride losses of a plan's loss combination, and says how
each built-in loss is normalised.

A loss component (core/build.py, kind ``loss``) gives a callable
``loss(pred, target, boxes) -> (batch,)`` for one stride: each image's share
of the loss, so that the batch mean of the shares is the loss. A
:class:`LossCombination` runs each one on every stride and returns the total
the optimizer minimizes plus every part for the logs::

    total = mean over the batch of sum over losses and strides of weight * share
    parts = {"ciou": ..., "ciou/8": ..., "ciou/16": ..., ..., "total": total}

Parts are unweighted, so logs compare across combinations.

Normalisation (the built-in losses, as YOLOv5 and its successors do it):

* box (``ciou``): the mean of ``1 - CIoU`` over the batch's positive cells at
  the stride, a number in [0, 2] however many objects there are;
* category: the BCE averaged over the positive cells and the classes;
* objectness: the BCE averaged over every cell and anchor of the stride, times
  the stride's weight (``stride_balance``, YOLOv5's 4, 1, 0.4 from the finest).

YOLOv3 (Darknet) summed every term over cells and images instead. Then the
objectness sum grows with the grid (7,560 cells at 192x640, for a few
objects) and swamps the others: it was 119 of a total of 125 after the
flagship run, while the category sum, normalised by nothing, stalled. With
means, each term is of order 1 whatever the image size, the object count or
the number of classes, so the plan's weights say how much each matters
(YOLOv5's gains: box 0.05, objectness 1.0, category 0.5 x classes / 80,
with the first two scaled to the input size) and one set of weights works
for every dataset. The per-positive means use the positives of the whole
batch, not of each image, so an object in a crowded image counts as much as
one alone: a loss normalised that way returns per-image sums times
``batch / positives`` (:func:`share_per_positive`).

Under a distribution strategy each replica passes ``global_batch``, the
images of the step on all replicas: its shares are summed and divided by
that instead of averaged over its own batch, so the replicas' totals and
gradients add up to the global mean. Per-positive losses count the
positives of the global batch too (an all-reduce in :func:`share_per_positive`),
so N replicas take the step one device takes. Everything here is plain
TensorFlow on dynamic shapes: it traces once inside ``tf.function`` and
serves a short last batch without retracing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from detplug.core.errors import DetplugError

#: ``loss(pred, target, boxes) -> (batch,)`` for one stride.
LossFn = Callable[[Mapping[str, tf.Tensor], tf.Tensor, tf.Tensor], tf.Tensor]
#: ``factory(params, chain) -> LossFn``, what a loss component's factory string names.
LossFactory = Callable[[Any, Any], LossFn]

BOXES_KEY = "boxes"


def share_per_positive(sums: tf.Tensor, positive: tf.Tensor) -> tf.Tensor:
    """Per-image shares of a loss averaged over the batch's positive cells.

    ``sums`` (batch,) are each image's sums over its positive cells; ``positive``
    (batch, ...) marks the positive cells with 1. Returns ``sums * batch / positives``
    so that the batch mean of the shares is ``sum(sums) / positives`` (0 without any).
    Under a distribution strategy with several replicas, batch and positives are
    those of the global batch (an all-reduce), so the replicas' shares add up to the
    mean over all the positives, as one device computes it.
    """
    batch = tf.cast(tf.shape(sums)[0], sums.dtype)
    positives = tf.reduce_sum(tf.cast(positive, sums.dtype))
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        batch, positives = context.all_reduce(tf.distribute.ReduceOp.SUM, [batch, positives])
    return sums * batch / tf.maximum(positives, 1.0)


class LossError(DetplugError):
    """A loss combination names an unknown loss, has a bad weight, or gets outputs it cannot pair with targets."""


class LossCombination:
    """Weighted sum of named per-stride losses over every stride of the model."""

    def __init__(self, *, losses: Mapping[str, tuple[float, LossFn]]) -> None:
        if not losses:
            raise LossError("a loss combination needs at least one loss (got none)")
        checked: dict[str, tuple[float, LossFn]] = {}
        for name, entry in losses.items():
            try:
                weight, loss_fn = entry
                weight = float(weight)
            except (TypeError, ValueError):
                raise LossError(f"loss '{name}' must be given as (weight, callable) (got {entry!r})") from None
            if name == "total" or "/" in str(name):
                # Both would collide with the part names ("total", "<name>/<stride>").
                raise LossError(f"a loss cannot be named {name!r}: 'total' and names with '/' are taken by the parts")
            if not math.isfinite(weight) or weight < 0:
                raise LossError(f"loss '{name}': weight must be a finite number >= 0 (got {weight!r})")
            if not callable(loss_fn):
                raise LossError(f"loss '{name}': {loss_fn!r} is not callable")
            checked[str(name)] = (weight, loss_fn)
        self.losses = checked

    @property
    def weights(self) -> dict[str, float]:
        return {name: weight for name, (weight, _) in self.losses.items()}

    def __call__(
        self, outputs: Mapping[str, Mapping[str, tf.Tensor]], targets: Mapping[str, tf.Tensor], *,
        global_batch: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """``outputs`` = {str(stride): decoded dict}; ``targets`` = {str(stride): target, "boxes": boxes}.

        Returns ``(total, parts)``, all float32 scalars: means over the batch, or
        sums over it divided by ``global_batch`` when given.
        """
        if global_batch is None:
            mean = tf.reduce_mean
        else:
            def mean(per_image: tf.Tensor) -> tf.Tensor:
                return tf.math.divide_no_nan(tf.reduce_sum(per_image), tf.cast(global_batch, per_image.dtype))
        strides = self._strides(outputs, targets)
        boxes = targets[BOXES_KEY]
        per_image_total = None
        parts: dict[str, tf.Tensor] = {}
        for name, (weight, loss_fn) in self.losses.items():
            for stride in strides:
                per_image = tf.cast(loss_fn(outputs[stride], targets[stride], boxes), tf.float32)
                if per_image.shape.rank is not None and per_image.shape.rank != 1:
                    raise LossError(
                        f"loss '{name}' at stride {stride} must return one value per image, shape (batch,) "
                        f"(got shape {per_image.shape})"
                    )
                parts[f"{name}/{stride}"] = mean(per_image)
                weighted = weight * per_image
                per_image_total = weighted if per_image_total is None else per_image_total + weighted
            parts[name] = tf.add_n([parts[f"{name}/{stride}"] for stride in strides])
        parts["total"] = mean(per_image_total)
        return parts["total"], parts

    @staticmethod
    def _strides(outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> list[str]:
        if BOXES_KEY not in targets:
            raise LossError(f"the targets have no '{BOXES_KEY}' entry (got keys {sorted(targets)})")
        output_strides = {str(key) for key in outputs}
        target_strides = {str(key) for key in targets if str(key).isdigit()}
        if not output_strides or output_strides != target_strides:
            raise LossError(
                f"the model's outputs are at strides {sorted(output_strides, key=_stride_order)} but the "
                f"targets are at strides {sorted(target_strides, key=_stride_order)}; the decoder and the "
                f"dataset's target assignment must use the same strides"
            )
        return sorted(output_strides, key=_stride_order)

    def __repr__(self) -> str:
        return f"LossCombination(weights={self.weights!r})"


def _stride_order(stride: str) -> tuple[int, str]:
    return (int(stride), stride) if stride.isdigit() else (-1, stride)


def build_loss_combination(
    *,
    weights: Mapping[str, float],
    components: Mapping[str, tuple[LossFactory, Any]],
    chain: Any = None,
) -> LossCombination:
    """A :class:`LossCombination` from a plan's ``{loss name: weight}`` table.

    ``components`` maps each available loss name to ``(factory, params)``;
    each factory is called ``factory(params, chain)``.
    """
    losses = {}
    for name, weight in weights.items():
        if name not in components:
            raise LossError(
                f"unknown loss '{name}' in the loss combination; available losses: "
                f"{', '.join(sorted(components)) or 'none'}"
            )
        factory, params = components[name]
        losses[name] = (weight, factory(params, chain))
    return LossCombination(losses=losses)
