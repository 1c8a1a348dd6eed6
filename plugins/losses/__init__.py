"""Built-in losses: declarations only (attrs + detplug specs, no TensorFlow).

Each loss is computed per stride and normalised as detplug.core.model.losses states
(box and class per positive, objectness per cell); the plan's loss combination
weights and sums them.
"""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, NoParams, SpecError, hookimpl

PLUGIN_API = 1


#: YOLOv5's objectness weights of its three output strides, finest first: the fine grid's
#: many cells each weigh less in its mean, and its small objects are the hardest.
YOLOV5_STRIDE_BALANCE = (4.0, 1.0, 0.4)


def _decoded_strides(name: str):
    def spec(params, chain: Chain) -> tuple[int, ...]:
        """Consumes the decoded outputs of every stride and their targets; gives one scalar per image."""
        return tuple(sorted(chain.require("decoded", f"loss '{name}'")))

    return spec


def _as_floats(value):
    if isinstance(value, list):
        return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value)
    return value


def _balance(instance, attribute, value) -> None:
    if not isinstance(value, tuple) or any(not isinstance(v, float) or not v >= 0 for v in value):
        raise ValueError(f"'{attribute.name}' must be a list of weights >= 0, one per stride, finest first "
                         f"(got {value!r})")


def stride_balance(balance: tuple[float, ...], strides: tuple[int, ...]) -> dict[int, float]:
    """``{stride: weight}``: ``balance`` one per stride finest first; empty means YOLOv5's
    (4, 1, 0.4) for three strides and 1 for each stride of any other model."""
    strides = tuple(sorted(strides))
    if not balance:
        balance = YOLOV5_STRIDE_BALANCE if len(strides) == 3 else (1.0,) * len(strides)
    if len(balance) != len(strides):
        raise SpecError(
            "needs one stride_balance weight per decoded stride, finest first",
            field="stride_balance",
            expected=f"{len(strides)} values (strides {', '.join(map(str, strides))})",
            found=f"{len(balance)} values",
            upstream="decoder",
        )
    return dict(zip(strides, balance))


def _objectness_spec(params: ObjectnessParams, chain: Chain) -> tuple[int, ...]:
    """Consumes the decoded outputs of every stride and their targets; stride_balance needs one weight per stride."""
    strides = _decoded_strides("objectness")(params, chain)
    stride_balance(params.stride_balance, strides)
    return strides


@frozen(kw_only=True)
class ObjectnessParams:
    ignore_threshold: float = field(default=0.5, converter=float, validator=[validators.ge(0), validators.le(1)])
    #: Weight of the no-object term against the object term (YOLOv1's lambda_noobj; 1 = YOLOv3, YOLOv5).
    negative_weight: float = field(default=1.0, converter=float, validator=validators.ge(0))
    #: Each stride's weight, finest first; empty: YOLOv5's 4, 1, 0.4 for three strides.
    stride_balance: tuple[float, ...] = field(default=(), converter=_as_floats, validator=_balance)
    #: The target of a positive cell: 1 (YOLOv3), or the IoU of its predicted box with the
    #: object (YOLOv5), so the score also says how well the box fits.
    iou_target: bool = field(default=False, validator=validators.instance_of(bool))


CIOU = Component(
    kind="loss",
    name="ciou",
    summary="Complete-IoU box loss: 1 - CIoU, averaged over the positive cells",
    params=NoParams,
    spec=_decoded_strides("ciou"),
    factory="detplug.plugins.losses.box:ciou_loss_from_params",
)

OBJECTNESS = Component(
    kind="loss",
    name="objectness",
    summary="Objectness BCE per cell; no-object predictions overlapping any box above ignore_threshold are left out",
    params=ObjectnessParams,
    spec=_objectness_spec,
    factory="detplug.plugins.losses.scores:objectness_loss_from_params",
)

CATEGORY = Component(
    kind="loss",
    name="category",
    summary="Per-class BCE, averaged over the positive cells and the classes",
    params=NoParams,
    spec=_decoded_strides("category"),
    factory="detplug.plugins.losses.scores:category_loss_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [CIOU, OBJECTNESS, CATEGORY]
