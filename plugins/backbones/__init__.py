"""Built-in backbones: declarations only (attrs + detplug specs, no TensorFlow).

The Keras code lives in the sibling modules the factory strings name.
"""

from __future__ import annotations

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


def darknet53_spec(params: DarknetParams, chain: Chain) -> dict[int, FeatureSpec]:
    image = chain.require("image", "backbone 'darknet53'")
    if image.height % 32 or image.width % 32:
        raise SpecError(
            "needs an image whose height and width are multiples of 32 (its largest stride)",
            field="image size",
            expected="multiples of 32",
            found=f"{image.height}x{image.width}",
            upstream="dataset",
        )
    return {
        stride: FeatureSpec(stride, scaled_channels(DARKNET53_CHANNELS[stage], params.width))
        for stage, stride in ((2, 8), (3, 16), (4, 32))
    }


DARKNET53 = Component(
    kind="backbone",
    name="darknet53",
    summary="YOLOv3's Darknet-53 (conv-BN-LeakyReLU, residual stages 1-2-8-8-4), strides 8/16/32",
    params=DarknetParams,
    spec=darknet53_spec,
    factory="detplug.plugins.backbones.darknet:darknet53_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [DARKNET53]
