"""Carrying trained weights into the model of another dataset (a period that switches).

Two models built by the same components for different chains (image size, classes,
anchors) hold the same weights in the same order; only the class-dependent layers
(those whose output channels count the classes) change shape with the classes, and no
convolution's weights depend on the image size. Weights are matched by their place in
the model and their shape: equal shapes are copied, and a weight that differs only in
its last axis while the class count changes starts fresh, as the new model built it
(the head's output priors). Any other difference is an error naming the weight and both
shapes: that component cannot move between those datasets.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from detplug.core.errors import CheckError


@attrs.frozen
class Transfer:
    """What carried over into the new model, in parameters, and the layers that start fresh."""

    carried: int
    total: int
    #: (layer, parameters) of each class-dependent layer that starts fresh.
    fresh: tuple[tuple[str, int], ...] = ()
    classes: tuple[int, int] = (0, 0)

    def describe(self) -> str:
        if not self.fresh:
            return f"{self.carried:,} of {self.total:,} parameters carried over; nothing starts fresh"
        layers = ", ".join(name for name, _ in self.fresh)
        parameters = sum(count for _, count in self.fresh)
        return (f"{self.carried:,} of {self.total:,} parameters carried over; new: the {len(self.fresh)} "
                f"class-dependent layers {layers} ({parameters:,} parameters, {self.classes[0]} -> "
                f"{self.classes[1]} classes)")


def _layer_of(variable: Any) -> str:
    """The layer a Keras variable belongs to, as its path names it (``conv2d_7/kernel``)."""
    path = str(getattr(variable, "path", variable.name))
    return path.rsplit("/", 1)[0] if "/" in path else path


def plan_transfer(source: Any, target: Any, *, classes: tuple[int, int], where: str) -> tuple[Transfer, list[bool]]:
    """Match ``source``'s weights to ``target``'s by place and shape; returns the transfer and,
    per weight of ``target``, whether it is copied. ``where`` names the switch in errors."""
    ours, theirs = list(target.weights), list(source.weights)
    if len(ours) != len(theirs):
        raise CheckError(f"{where}: the new model has {len(ours)} weights where the previous one has {len(theirs)}; "
                         f"its components build a different network for this dataset, so nothing can carry over")
    copy: list[bool] = []
    fresh: dict[str, int] = {}
    carried = 0
    for old, new in zip(theirs, ours):
        old_shape, new_shape = tuple(old.shape), tuple(new.shape)
        if old_shape == new_shape:
            copy.append(True)
            carried += int(np.prod(new_shape))
            continue
        if classes[0] != classes[1] and old_shape[:-1] == new_shape[:-1]:
            copy.append(False)
            layer = _layer_of(new)
            fresh[layer] = fresh.get(layer, 0) + int(np.prod(new_shape))
            continue
        raise CheckError(f"{where}: weight {new.path if hasattr(new, 'path') else new.name} is {new_shape} in the "
                         f"new model but {old_shape} in the previous one, and "
                         + ("the class count is the same" if classes[0] == classes[1] else
                            "it is not a class-dependent output")
                         + "; its component cannot carry weights between these datasets: give them the same "
                           "image size and classes, or start the period from init_from in a plan of its own")
    total = int(sum(np.prod(w.shape) for w in ours))
    return Transfer(carried, total, tuple(fresh.items()), classes), copy


def transfer_weights(source: Any, target: Any, *, classes: tuple[int, int], where: str) -> Transfer:
    """Copy ``source``'s weights into ``target`` where they fit (see :func:`plan_transfer`)."""
    transfer, copy = plan_transfer(source, target, classes=classes, where=where)
    for old, new, copied in zip(source.weights, target.weights, copy):
        if copied:
            new.assign(old)
    return transfer
