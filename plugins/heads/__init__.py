"""Built-in heads: declarations only (attrs + detplug specs, no TensorFlow).

Both heads consume the backbone's features at strides 8, 16 and 32, of any
channel counts, so every built-in backbone fits either head.
"""

from __future__ import annotations

from attrs import field, frozen, validators

from detplug import Chain, Component, FeatureSpec, HeadSpec, SpecError, hookimpl

PLUGIN_API = 1

#: The backbone strides both built-in heads consume (and predict at).
HEAD_STRIDES = (8, 16, 32)

#: YOLOv3's head works at three strides; its 1x1 conv widths per stride at width 1.
YOLOV3_HEAD_CHANNELS = {8: 128, 16: 256, 32: 512}

#: YOLOv4's PAN neck: its 1x1 conv widths per stride at width 1 (yolov4.cfg).
PAN_HEAD_CHANNELS = {8: 128, 16: 256, 32: 512}

@frozen(kw_only=True)
class YoloV3HeadParams:
    width: float = field(default=1.0, converter=float, validator=validators.gt(0))


@frozen(kw_only=True)
class PanHeadParams:
    width: float = field(default=1.0, converter=float, validator=validators.gt(0))
    #: YOLOv4's spatial pyramid pooling (max-pool 5, 9, 13 concatenated) on the /32 features.
    spp: bool = field(default=True, validator=validators.instance_of(bool))


def consumed_features(chain: Chain, by: str, strides: tuple[int, ...] = HEAD_STRIDES) -> dict[int, FeatureSpec]:
    """The backbone features and anchors a head needs: exactly ``strides``, any channels."""
    features = chain.require("features", by)
    anchors = chain.require("anchors", by)
    chain.require("labels", by)
    if tuple(sorted(features)) != strides:
        raise SpecError(
            f"consumes backbone features at strides {_listed(strides)} (any channel counts)",
            field="strides",
            expected=strides,
            found=tuple(sorted(features)),
            upstream="backbone",
        )
    if tuple(sorted(anchors)) != strides:
        raise SpecError(
            f"needs anchors for strides {_listed(strides)}",
            field="anchor strides",
            expected=strides,
            found=tuple(sorted(anchors)),
            upstream="anchors",
        )
    return dict(features)


def _listed(strides: tuple[int, ...]) -> str:
    return ", ".join(map(str, strides[:-1])) + f" and {strides[-1]}"


def _head_outputs(chain: Chain) -> dict[int, HeadSpec]:
    anchors, labels = chain.anchors, chain.labels
    assert anchors is not None and labels is not None  # the spec functions' consumed_features required both
    return {stride: HeadSpec(stride, len(anchors[stride]), 5 + labels.num_classes) for stride in HEAD_STRIDES}


def yolov3_fpn_spec(params: YoloV3HeadParams, chain: Chain) -> dict[int, HeadSpec]:
    """Consumes backbone strides 8, 16, 32 (any channels); gives anchors x (5 + classes) per cell."""
    consumed_features(chain, "head 'yolov3_fpn'")
    return _head_outputs(chain)


def pan_spec(params: PanHeadParams, chain: Chain) -> dict[int, HeadSpec]:
    """Consumes backbone strides 8, 16, 32 (any channels); gives anchors x (5 + classes) per cell."""
    consumed_features(chain, "head 'pan'")
    return _head_outputs(chain)


YOLOV3_FPN = Component(
    kind="head",
    name="yolov3_fpn",
    summary="YOLOv3's three-scale head: conv sets, upsample and concatenate from /32 to /8",
    params=YoloV3HeadParams,
    spec=yolov3_fpn_spec,
    factory="detplug.plugins.heads.yolov3:yolov3_fpn_from_params",
    darknet="detplug.plugins.heads.yolov3:yolov3_fpn_darknet_layout",
)

PAN = Component(
    kind="head",
    name="pan",
    summary="YOLOv4's neck and head: SPP, top-down FPN then bottom-up path aggregation, /8 /16 /32",
    params=PanHeadParams,
    spec=pan_spec,
    factory="detplug.plugins.heads.pan:pan_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [YOLOV3_FPN, PAN]

