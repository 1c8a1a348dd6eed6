"""Built-in decoders: declarations only (attrs + detplug specs, no TensorFlow).

A decoder turns the head's raw outputs at each stride into boxes and scores
(``DecodedSpec``); ``yolo.py`` holds the Keras layers.
"""

from __future__ import annotations

import attrs
from attrs import field, frozen

from detplug import Chain, Component, DecodedSpec, NoParams, SpecError, hookimpl

PLUGIN_API = 1

#: yolov4.cfg's ``scale_x_y`` of its three [yolo] layers, strides 8, 16, 32.
YOLOV4_SCALE_XY = (1.2, 1.1, 1.05)


def _as_scales(value: object) -> object:
    # One number means every stride; anything else is left for the validator to name.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, (list, tuple)):
        return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value)
    return value


@frozen(kw_only=True)
class YoloV4DecoderParams:
    #: Grid sensitivity per head stride, finest first (yolov4.cfg: 1.2, 1.1, 1.05 at
    #: strides 8, 16, 32); one value applies to every stride; 1 is YOLOv3's decoding.
    scale_xy: float | tuple[float, ...] = field(
        default=YOLOV4_SCALE_XY, converter=_as_scales, validator=lambda i, a, value: _check_scales(a.name, value)
    )


def _check_scales(name: str, value: object) -> None:
    if not isinstance(value, tuple) or not value or any(not isinstance(s, float) or s < 1.0 for s in value):
        raise ValueError(f"'{name}' must be a number >= 1, or a list of them one per stride (got {value!r})")


def scales_per_stride(scale_xy: tuple[float, ...], strides: tuple[int, ...]) -> dict[int, float]:
    """``scale_xy`` (one value, or one per stride finest first) as {stride: scale}."""
    strides = tuple(sorted(strides))
    if len(scale_xy) == 1:
        return dict.fromkeys(strides, scale_xy[0])
    if len(scale_xy) != len(strides):
        raise ValueError(
            f"scale_xy has {len(scale_xy)} values for {len(strides)} strides {list(strides)}; "
            f"give one value or one per stride"
        )
    return dict(zip(strides, scale_xy))


def _decoded(name: str, chain: Chain) -> dict[int, DecodedSpec]:
    by = f"decoder '{name}'"
    head = chain.require("head", by)
    anchors = chain.require("anchors", by)
    labels = chain.require("labels", by)
    decoded = {}
    for stride, spec in sorted(head.items()):
        if spec.channels_per_anchor != 5 + labels.num_classes:
            raise SpecError(
                f"at stride {stride} needs 5 + {labels.num_classes} classes channels per anchor",
                field=f"channels per anchor at stride {stride}",
                expected=5 + labels.num_classes,
                found=spec.channels_per_anchor,
                upstream="head",
            )
        if stride not in anchors or len(anchors[stride]) != spec.anchors:
            raise SpecError(
                f"at stride {stride} needs one output per anchor",
                field=f"anchors at stride {stride}",
                expected=len(anchors.get(stride, ())),
                found=spec.anchors,
                upstream="head",
            )
        decoded[stride] = DecodedSpec(stride, spec.anchors, labels.num_classes)
    return decoded


def yolo_decoder_spec(params: NoParams, chain: Chain) -> dict[int, DecodedSpec]:
    """One decoded dict per head stride: yxhw, objectness, category, raw."""
    return _decoded("yolo", chain)


def yolov4_decoder_spec(params: YoloV4DecoderParams, chain: Chain) -> dict[int, DecodedSpec]:
    """As 'yolo'; scale_xy must give one value, or one per head stride; centres reach (scale_xy - 1) / 2 cells out."""
    decoded = _decoded("yolov4", chain)
    scale_xy = params.scale_xy
    assert isinstance(scale_xy, tuple)  # _as_scales and _check_scales made it one
    if len(scale_xy) not in (1, len(decoded)):
        raise SpecError(
            "needs one scale_xy, or one per head stride",
            field="scale_xy",
            expected=f"1 or {len(decoded)} values (strides {sorted(decoded)})",
            found=len(scale_xy),
            upstream="head",
        )
    scales = scales_per_stride(scale_xy, tuple(decoded))
    return {stride: attrs.evolve(spec, centre_reach=(scales[stride] - 1.0) / 2.0) for stride, spec in decoded.items()}


YOLO_DECODER = Component(
    kind="decoder",
    name="yolo",
    summary="YOLOv3 decoding: sigmoid x/y plus cell, exp(t_wh) times anchor, sigmoid scores",
    params=NoParams,
    spec=yolo_decoder_spec,
    factory="detplug.plugins.decoders.yolo:yolo_decoder_from_params",
)

YOLOV4_DECODER = Component(
    kind="decoder",
    name="yolov4",
    summary="YOLOv4 decoding: as 'yolo' with grid sensitivity, x/y = s*sigmoid - (s-1)/2 plus cell",
    params=YoloV4DecoderParams,
    spec=yolov4_decoder_spec,
    factory="detplug.plugins.decoders.yolo:yolov4_decoder_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [YOLO_DECODER, YOLOV4_DECODER]
