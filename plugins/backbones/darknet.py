"""YOLOv3's Darknet-53 in Keras, layer for layer as yolov3.cfg (and qqwweee/keras-yolo3) build it.

Order as in timm: blocks, model, builder. The stage sizes come from the
manifest (:mod:`detplug.plugins.backbones`) so the declared spec and the
built model cannot drift apart.
"""

from __future__ import annotations

import keras
from keras import layers

from detplug.core.plan.specs import Chain
from detplug.plugins.backbones import (
    DARKNET53_BLOCKS,
    DARKNET53_CHANNELS,
    DARKNET53_STEM,
    DarknetParams,
    scaled_channels,
    scaled_depth,
)

#: Darknet's leaky ReLU slope.
LEAKY_SLOPE = 0.1

#: The stages whose outputs the backbone returns (0-based stage index -> stride).
OUTPUT_STAGES = {2: 8, 3: 16, 4: 32}


# -- blocks --


def darknet_conv(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    activation: str = "leaky",
    name: str,
) -> keras.KerasTensor:
    """Darknet's convolutional unit: conv without bias (BN supplies it), BN, then
    ``activation`` ("leaky": LeakyReLU(0.1) as YOLOv3; "mish": as YOLOv4's backbone).

    A stride-2 conv pads only top and left, then convolves 'valid', as Darknet
    does; Keras' 'same' would pad bottom-right and shift every feature by a pixel
    relative to converted Darknet weights.
    """
    if strides == 1:
        padding = "same"
    else:
        x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation == "leaky":
        return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky")(x)
    if activation == "mish":
        return layers.Activation("mish", name=f"{name}_mish")(x)
    raise ValueError(f"darknet_conv: activation must be 'leaky' or 'mish' (got {activation!r})")


def conv_bn_leaky(
    x: keras.KerasTensor, filters: int, kernel_size: int, *, strides: int = 1, name: str
) -> keras.KerasTensor:
    """:func:`darknet_conv` with YOLOv3's LeakyReLU(0.1)."""
    return darknet_conv(x, filters, kernel_size, strides=strides, activation="leaky", name=name)


def residual_block(x: keras.KerasTensor, filters: int, *, name: str) -> keras.KerasTensor:
    """1x1 conv to half the channels, 3x3 conv back, added to the input."""
    shortcut = x
    x = conv_bn_leaky(x, filters // 2, 1, name=f"{name}_reduce")
    x = conv_bn_leaky(x, filters, 3, name=f"{name}_expand")
    return layers.Add(name=f"{name}_add")([shortcut, x])


def darknet_stage(x: keras.KerasTensor, filters: int, blocks: int, *, name: str) -> keras.KerasTensor:
    """A stride-2 downsampling conv followed by ``blocks`` residual blocks."""
    x = conv_bn_leaky(x, filters, 3, strides=2, name=f"{name}_down")
    for index in range(1, blocks + 1):
        x = residual_block(x, filters, name=f"{name}_block{index}")
    return x


# -- model --


def darknet53(
    input_shape: tuple[int | None, int | None, int] = (416, 416, 3),
    *,
    width: float = 1.0,
    depth: float = 1.0,
    name: str = "darknet53",
) -> keras.Model:
    """Darknet-53 from an image (batch, H, W, 3) in [0, 1] to ``{"8", "16", "32"}`` feature maps.

    ``width`` scales every channel count (rounded to multiples of 8), ``depth``
    every stage's number of residual blocks; at 1.0 both give YOLOv3's network.
    """
    image = keras.Input(shape=input_shape, name="image")
    x = conv_bn_leaky(image, scaled_channels(DARKNET53_STEM, width), 3, name="stem")
    features = {}
    # Stages are named stage1..stage5 (strides 2, 4, 8, 16, 32).
    for index, (channels, blocks) in enumerate(zip(DARKNET53_CHANNELS, DARKNET53_BLOCKS)):
        x = darknet_stage(
            x,
            scaled_channels(channels, width),
            scaled_depth(blocks, depth),
            name=f"stage{index + 1}",
        )
        if index in OUTPUT_STAGES:
            features[str(OUTPUT_STAGES[index])] = x
    return keras.Model(inputs=image, outputs=features, name=name)


# -- builder --


def darknet53_from_params(params: DarknetParams, chain: Chain) -> keras.Model:
    """The registry's backbone factory: Darknet-53 for the plan's image size."""
    image = chain.require("image", "backbone 'darknet53'")
    return darknet53(
        (image.height, image.width, image.channels),
        width=params.width,
        depth=params.depth,
    )


# -- Darknet file layout --


def darknet53_darknet_layout(model: keras.Model) -> list[tuple[str, str | None]]:
    """The convolutions (conv, batch norm) in darknet53.cfg / yolov3.cfg order: the stem,
    then per stage its downsampling conv and each residual block's 1x1 and 3x3 convs."""
    names = {layer.name for layer in model.layers}
    units = ["stem"]
    for stage in range(1, len(DARKNET53_CHANNELS) + 1):
        units.append(f"stage{stage}_down")
        block = 1
        while f"stage{stage}_block{block}_reduce_conv" in names:
            units += [f"stage{stage}_block{block}_reduce", f"stage{stage}_block{block}_expand"]
            block += 1
    return [(f"{unit}_conv", f"{unit}_bn") for unit in units]
