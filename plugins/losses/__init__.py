"""Built-in losses: declarations only (attrs + detplug specs, no TensorFlow).

Each loss is computed per stride and per image; the plan's loss combination
weights and sums them (detplug.core.losses).
"""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, NoParams, hookimpl

PLUGIN_API = 1


def _decoded_strides(name: str):
    def spec(params, chain: Chain) -> tuple[int, ...]:
        """Consumes the decoded outputs of every stride and their targets; gives one scalar per image."""
        return tuple(sorted(chain.require("decoded", f"loss '{name}'")))

    return spec


@frozen(kw_only=True)
class ObjectnessParams:
    ignore_threshold: float = field(default=0.5, converter=float, validator=[validators.ge(0), validators.le(1)])
    #: Weight of the no-object term against the object term (YOLOv1's lambda_noobj; 1 = YOLOv3).
    negative_weight: float = field(default=1.0, converter=float, validator=validators.ge(0))


CIOU = Component(
    kind="loss",
    name="ciou",
    summary="Complete-IoU box loss (1 - CIoU) on cells that hold an object",
    params=NoParams,
    spec=_decoded_strides("ciou"),
    factory="detplug.plugins.losses.box:ciou_loss_from_params",
)

OBJECTNESS = Component(
    kind="loss",
    name="objectness",
    summary="Objectness BCE; no-object predictions overlapping any box above ignore_threshold are left out",
    params=ObjectnessParams,
    spec=_decoded_strides("objectness"),
    factory="detplug.plugins.losses.scores:objectness_loss_from_params",
)

CATEGORY = Component(
    kind="loss",
    name="category",
    summary="Per-class BCE on cells that hold an object",
    params=NoParams,
    spec=_decoded_strides("category"),
    factory="detplug.plugins.losses.scores:category_loss_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [CIOU, OBJECTNESS, CATEGORY]
