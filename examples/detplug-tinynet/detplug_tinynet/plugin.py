"""detplug-tinynet's manifest: what ``tinynet`` takes and gives, without TensorFlow.

detplug imports this module (entry point ``tinynet`` of group ``detplug``) for
every ``run.py --list`` and ``--check``, so it imports only attrs, pathlib and
detplug's public face. The Keras code is in :mod:`detplug_tinynet.keras_model`,
which the factory string names and detplug imports only to build a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import field, frozen, validators

from detplug import Chain, Component, FeatureSpec, SpecError, hookimpl

#: The detplug plugin API this module is written against.
PLUGIN_API = 1

#: The strides tinynet gives features at: what YOLOv3's head consumes.
STRIDES = (8, 16, 32)

#: Plans shipped with the package (package data, see pyproject.toml).
PLANS_DIR = Path(__file__).resolve().parent / "plans"


def _as_tuple(value: Any) -> Any:
    # A plan gives a list; anything else is left for the validator to name.
    return tuple(value) if isinstance(value, list) else value


def _three_positive_ints(instance: Any, attribute: Any, value: Any) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != len(STRIDES)
        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)
    ):
        raise ValueError(
            f"'{attribute.name}' must be three positive integers, the channels at strides 8, 16 and 32 "
            f"(got {value!r})"
        )


@frozen(kw_only=True)
class TinyNetParams:
    """tinynet's parameters; every one has a default, so ``backbone = "tinynet"`` works."""

    #: Scales every channel count (rounded to a multiple of 8).
    width: float = field(default=1.0, converter=float, validator=validators.gt(0))
    #: Output channels at strides 8, 16 and 32 at width 1.
    channels: tuple[int, int, int] = field(default=(32, 64, 128), converter=_as_tuple,
                                           validator=_three_positive_ints)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8, at least 8."""
    return max(8, int(channels * width + 4) // 8 * 8)


def output_channels(params: TinyNetParams) -> dict[int, int]:
    """Channels of the feature map at each stride: one source for the spec and the model."""
    return {stride: scaled(channels, params.width) for stride, channels in zip(STRIDES, params.channels)}


def tinynet_spec(params: TinyNetParams, chain: Chain) -> dict[int, FeatureSpec]:
    """Feature maps at strides 8, 16 and 32; the image sides must be multiples of 32."""
    image = chain.require("image", "backbone 'tinynet'")
    if image.height % 32 or image.width % 32:
        raise SpecError(
            "needs an image whose height and width are multiples of 32 (its largest stride)",
            field="image size",
            expected="multiples of 32",
            found=f"{image.height}x{image.width}",
            upstream="dataset",
        )
    return {stride: FeatureSpec(stride, channels) for stride, channels in output_channels(params).items()}


TINYNET = Component(
    kind="backbone",
    name="tinynet",
    summary="Ten 3x3 conv-BN-SiLU blocks, strides 8/16/32: a backbone small enough to train on a CPU",
    params=TinyNetParams,
    spec=tinynet_spec,
    factory="detplug_tinynet.keras_model:tinynet_from_params",
)


@hookimpl
def detplug_components() -> list[Component]:
    return [TINYNET]


@hookimpl
def detplug_plan_dirs() -> list[Path]:
    return [PLANS_DIR]
