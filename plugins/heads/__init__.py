"""Built-in heads and decoders: declarations only (attrs + detplug specs, no TensorFlow)."""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, DecodedSpec, HeadSpec, NoParams, SpecError, hookimpl

PLUGIN_API = 1

#: YOLOv3's head works at three strides; its 1x1 conv widths per stride at width 1.
YOLOV3_HEAD_CHANNELS = {8: 128, 16: 256, 32: 512}


@frozen(kw_only=True)
class YoloV3HeadParams:
    width: float = field(default=1.0, converter=float, validator=validators.gt(0))


def yolov3_fpn_spec(params: YoloV3HeadParams, chain: Chain) -> dict[int, HeadSpec]:
    features = chain.require("features", "head 'yolov3_fpn'")
    anchors = chain.require("anchors", "head 'yolov3_fpn'")
    labels = chain.require("labels", "head 'yolov3_fpn'")
    needed = tuple(sorted(YOLOV3_HEAD_CHANNELS))
    if tuple(sorted(features)) != needed:
        raise SpecError(
            "needs backbone features at strides 8, 16 and 32",
            field="strides",
            expected=needed,
            found=tuple(sorted(features)),
            upstream="backbone",
        )
    if tuple(sorted(anchors)) != needed:
        raise SpecError(
            "needs anchors for strides 8, 16 and 32",
            field="anchor strides",
            expected=needed,
            found=tuple(sorted(anchors)),
            upstream="anchors",
        )
    return {
        stride: HeadSpec(stride, len(anchors[stride]), 5 + labels.num_classes) for stride in needed
    }


YOLOV3_FPN = Component(
    kind="head",
    name="yolov3_fpn",
    summary="YOLOv3's three-scale head: conv sets, upsample and concatenate from /32 to /8",
    params=YoloV3HeadParams,
    spec=yolov3_fpn_spec,
    factory="detplug.plugins.heads.yolov3:yolov3_fpn_from_params",
)


def yolo_decoder_spec(params: NoParams, chain: Chain) -> dict[int, DecodedSpec]:
    head = chain.require("head", "decoder 'yolo'")
    anchors = chain.require("anchors", "decoder 'yolo'")
    labels = chain.require("labels", "decoder 'yolo'")
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


YOLO_DECODER = Component(
    kind="decoder",
    name="yolo",
    summary="YOLOv3 decoding: sigmoid x/y plus cell, exp(t_wh) times anchor, sigmoid scores",
    params=NoParams,
    spec=yolo_decoder_spec,
    factory="detplug.plugins.heads.decoder:yolo_decoder_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [YOLOV3_FPN, YOLO_DECODER]
