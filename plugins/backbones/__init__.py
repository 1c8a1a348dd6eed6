"""Built-in backbones: declarations only (attrs + detplug specs, no TensorFlow).

Every built-in backbone returns features at strides 8, 16 and 32. The Keras
code lives in the sibling modules the factory strings name: darknet.py
(darknet53), cspdarknet.py (cspdarknet53), keras_apps.py (resnet50,
mobilenetv2, efficientnetb0). The channel counts the specs declare are kept
here, next to the parameters, and checked against the built models in
tests/test_zoo.py.
"""

from __future__ import annotations

from pathlib import Path

from attrs import field, frozen, validators

from detplug import Chain, Component, FeatureSpec, SpecError, hookimpl

PLUGIN_API = 1


def scaled_channels(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(channels * width + divisor / 2) // divisor * divisor)


def scaled_depth(blocks: int, depth: float) -> int:
    """``blocks * depth`` rounded, at least 1."""
    return max(1, round(blocks * depth))


@frozen(kw_only=True)
class DarknetParams:
    width: float = field(default=1.0, converter=float, validator=validators.gt(0))
    depth: float = field(default=1.0, converter=float, validator=validators.gt(0))


#: Darknet-53's residual blocks per stage (strides 2, 4, 8, 16, 32) and output channels.
DARKNET53_BLOCKS = (1, 2, 8, 8, 4)
DARKNET53_CHANNELS = (64, 128, 256, 512, 1024)
DARKNET53_STEM = 32

#: CSPDarknet53 (yolov4.cfg) has Darknet-53's stem, stages, blocks and channels; the
#: stages are cross-stage-partial and the activation is Mish.
CSPDARKNET53_BLOCKS = DARKNET53_BLOCKS
CSPDARKNET53_CHANNELS = DARKNET53_CHANNELS
CSPDARKNET53_STEM = DARKNET53_STEM

def _require_multiple_of_32(chain: Chain, by: str):
    image = chain.require("image", by)
    if image.height % 32 or image.width % 32:
        raise SpecError(
            "needs an image whose height and width are multiples of 32 (its largest stride)",
            field="image size",
            expected="multiples of 32",
            found=f"{image.height}x{image.width}",
            upstream="dataset",
        )
    return image


def darknet53_spec(params: DarknetParams, chain: Chain) -> dict[int, FeatureSpec]:
    """Darknet-53: /8x256, /16x512, /32x1024 at width 1; image sides multiples of 32."""
    _require_multiple_of_32(chain, "backbone 'darknet53'")
    return {
        stride: FeatureSpec(stride, scaled_channels(DARKNET53_CHANNELS[stage], params.width))
        for stage, stride in ((2, 8), (3, 16), (4, 32))
    }


def cspdarknet53_spec(params: DarknetParams, chain: Chain) -> dict[int, FeatureSpec]:
    """CSPDarknet53: /8x256, /16x512, /32x1024 at width 1; image sides multiples of 32."""
    _require_multiple_of_32(chain, "backbone 'cspdarknet53'")
    return {
        stride: FeatureSpec(stride, scaled_channels(CSPDARKNET53_CHANNELS[stage], params.width))
        for stage, stride in ((2, 8), (3, 16), (4, 32))
    }


DARKNET53 = Component(
    kind="backbone",
    name="darknet53",
    summary="YOLOv3's Darknet-53 (conv-BN-LeakyReLU, residual stages 1-2-8-8-4), strides 8/16/32",
    params=DarknetParams,
    spec=darknet53_spec,
    factory="detplug.plugins.backbones.darknet:darknet53_from_params",
    darknet="detplug.plugins.backbones.darknet:darknet53_darknet_layout",
)

CSPDARKNET53 = Component(
    kind="backbone",
    name="cspdarknet53",
    summary="YOLOv4's CSPDarknet53 (cross-stage-partial stages 1-2-8-8-4, Mish), strides 8/16/32",
    params=DarknetParams,
    spec=cspdarknet53_spec,
    factory="detplug.plugins.backbones.cspdarknet:cspdarknet53_from_params",
)


# -- keras.applications backbones --


def _weights_file(instance, attribute, value: str) -> None:
    # Checked when the plan is read, before TensorFlow: a typo in a path must not
    # cost a model build, and "imagenet" must not start a download.
    if value == "":
        return
    if value == "imagenet":
        raise ValueError(
            f"'{attribute.name}' must be empty (random init) or the path of a local weights file "
            f"(got 'imagenet', which would download); download the *_notop weights file yourself "
            f"and give its path"
        )
    if not Path(value).expanduser().is_file():
        raise ValueError(
            f"'{attribute.name}' must be empty (random init) or the path of a local weights file "
            f"(got {value!r}: no such file)"
        )


@frozen(kw_only=True)
class KerasAppParams:
    #: Empty: random initialisation. Otherwise the path of a local weights file for the
    #: keras.applications model without its top (e.g. resnet50_..._notop.h5); never a download.
    weights: str = field(default="", validator=[validators.instance_of(str), _weights_file])


@frozen(kw_only=True)
class MobileNetV2Params(KerasAppParams):
    #: MobileNetV2's width multiplier (keras' ``alpha``); ImageNet weights exist for
    #: 0.35, 0.5, 0.75, 1.0, 1.3 and 1.4.
    width: float = field(default=1.0, converter=float, validator=validators.gt(0))


def keras_make_divisible(value: float, divisor: int = 8) -> int:
    """keras.applications' ``_make_divisible``: round to a multiple of ``divisor``, never
    more than 10% below ``value``. Repeated here so the spec needs no Keras."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def mobilenetv2_channels(width: float) -> dict[int, int]:
    """The channels of MobileNetV2's block_6_expand_relu, block_13_expand_relu and
    out_relu at keras ``alpha = width``: six times the 32- and 96-channel blocks' widths
    (each ``_make_divisible(int(filters * alpha))``), and 1280 scaled only above 1."""
    return {
        8: 6 * keras_make_divisible(int(32 * width)),
        16: 6 * keras_make_divisible(int(96 * width)),
        32: keras_make_divisible(1280 * width) if width > 1.0 else 1280,
    }


#: The layer whose output is each stride's feature map, and its channels at width 1.
#: The stride-8 and -16 maps are the last layer at that resolution that a detector can use:
#: ResNet's stage outputs; MobileNetV2's expansion ReLU of the first block of the next stage
#: (wide, as in keras-YOLOv3-model-set's MobileNetV2 YOLOv3); EfficientNet's last block add
#: of stages 3 and 5 (EfficientDet's P3 and P4). Checked against the built models in tests.
KERAS_APP_LAYERS: dict[str, dict[int, tuple[str, int]]] = {
    "resnet50": {
        8: ("conv3_block4_out", 512),
        16: ("conv4_block6_out", 1024),
        32: ("conv5_block3_out", 2048),
    },
    "mobilenetv2": {
        8: ("block_6_expand_relu", 192),
        16: ("block_13_expand_relu", 576),
        32: ("out_relu", 1280),
    },
    "efficientnetb0": {
        8: ("block3b_add", 40),
        16: ("block5c_add", 112),
        32: ("top_activation", 1280),
    },
}


def keras_app_channels(app: str, params) -> dict[int, int]:
    """The channels per stride of keras application ``app`` built with ``params``."""
    if app == "mobilenetv2":
        return mobilenetv2_channels(params.width)
    return {stride: channels for stride, (_, channels) in KERAS_APP_LAYERS[app].items()}


def _keras_app_spec(app: str):
    def spec(params, chain: Chain) -> dict[int, FeatureSpec]:
        """Features at strides 8, 16, 32 taken from named internal layers; image sides multiples of 32."""
        _require_multiple_of_32(chain, f"backbone '{app}'")
        return {
            stride: FeatureSpec(stride, channels)
            for stride, channels in sorted(keras_app_channels(app, params).items())
        }

    spec.__doc__ = (
        f"keras.applications {app}: "
        + ", ".join(f"/{s}x{c} ({layer})" for s, (layer, c) in KERAS_APP_LAYERS[app].items())
        + " at width 1; image sides multiples of 32."
    )
    return spec


RESNET50 = Component(
    kind="backbone",
    name="resnet50",
    summary="keras.applications ResNet50 (caffe BGR-mean input), strides 8/16/32; weights from a local file",
    params=KerasAppParams,
    spec=_keras_app_spec("resnet50"),
    factory="detplug.plugins.backbones.keras_apps:resnet50_from_params",
)

MOBILENETV2 = Component(
    kind="backbone",
    name="mobilenetv2",
    summary="keras.applications MobileNetV2 ([-1, 1] input, width = alpha), strides 8/16/32",
    params=MobileNetV2Params,
    spec=_keras_app_spec("mobilenetv2"),
    factory="detplug.plugins.backbones.keras_apps:mobilenetv2_from_params",
)

EFFICIENTNETB0 = Component(
    kind="backbone",
    name="efficientnetb0",
    summary="keras.applications EfficientNetB0 (ImageNet mean/std input), strides 8/16/32",
    params=KerasAppParams,
    spec=_keras_app_spec("efficientnetb0"),
    factory="detplug.plugins.backbones.keras_apps:efficientnetb0_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [DARKNET53, CSPDARKNET53, RESNET50, MOBILENETV2, EFFICIENTNETB0]
