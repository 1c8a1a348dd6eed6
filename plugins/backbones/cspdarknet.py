"""YOLOv4's CSPDarknet53 in Keras, layer for layer as yolov4.cfg builds it.

Order as in timm: blocks, model, builder. Stage sizes come from the manifest
(:mod:`detplug.plugins.backbones`) so the declared spec and the built model
cannot drift apart.

A cross-stage-partial (CSP) stage, after its stride-2 downsampling conv, splits
into two 1x1 branches: a shortcut branch left alone, and a main branch through
the residual blocks and a 1x1 "transition" conv; the two are concatenated and
fused by a second 1x1 transition conv. yolov4.cfg's first stage differs from
the other four (and this is kept): its branches are as wide as the stage (64,
not half), and its residual block narrows to 32 inside, like Darknet-53's; in
stages 2-5 the branches are half the stage width and the residual blocks keep
that width throughout.
"""

from __future__ import annotations

import keras
from keras import layers

from detplug.core.plan.specs import Chain
from detplug.plugins.backbones import (
    CSPDARKNET53_BLOCKS,
    CSPDARKNET53_CHANNELS,
    CSPDARKNET53_STEM,
    DarknetParams,
    scaled_channels,
    scaled_depth,
)
from detplug.plugins.backbones.darknet import OUTPUT_STAGES, darknet_conv

ACTIVATION = "mish"


# -- blocks --


def conv_bn_mish(
    x: keras.KerasTensor, filters: int, kernel_size: int, *, strides: int = 1, name: str
) -> keras.KerasTensor:
    """Darknet's conv-BN unit with YOLOv4's Mish activation."""
    return darknet_conv(x, filters, kernel_size, strides=strides, activation=ACTIVATION, name=name)


def csp_residual_block(
    x: keras.KerasTensor, hidden: int, filters: int, *, name: str
) -> keras.KerasTensor:
    """1x1 conv to ``hidden``, 3x3 conv to ``filters``, added to the input (Darknet's
    ``[shortcut] activation=linear``)."""
    shortcut = x
    x = conv_bn_mish(x, hidden, 1, name=f"{name}_reduce")
    x = conv_bn_mish(x, filters, 3, name=f"{name}_expand")
    return layers.Add(name=f"{name}_add")([shortcut, x])


def csp_stage(
    x: keras.KerasTensor,
    filters: int,
    blocks: int,
    *,
    branch: int,
    block_hidden: int,
    name: str,
) -> keras.KerasTensor:
    """Downsample to ``filters``, split into two ``branch``-wide 1x1 branches, run
    ``blocks`` residual blocks on one, concatenate and fuse back to ``filters``."""
    x = conv_bn_mish(x, filters, 3, strides=2, name=f"{name}_down")
    # yolov4.cfg computes the shortcut branch first and concatenates it second
    # ("[route] layers = -1, -N"): the order matters for converted weights.
    shortcut = conv_bn_mish(x, branch, 1, name=f"{name}_split_shortcut")
    x = conv_bn_mish(x, branch, 1, name=f"{name}_split_main")
    for index in range(1, blocks + 1):
        x = csp_residual_block(x, block_hidden, branch, name=f"{name}_block{index}")
    x = conv_bn_mish(x, branch, 1, name=f"{name}_transition")
    x = layers.Concatenate(name=f"{name}_concat")([x, shortcut])
    return conv_bn_mish(x, filters, 1, name=f"{name}_fuse")


# -- model --


def cspdarknet53(
    input_shape: tuple[int | None, int | None, int] = (416, 416, 3),
    *,
    width: float = 1.0,
    depth: float = 1.0,
    name: str = "cspdarknet53",
) -> keras.Model:
    """CSPDarknet53 from an image (batch, H, W, 3) in [0, 1] to ``{"8", "16", "32"}`` feature maps.

    ``width`` scales every channel count (rounded to multiples of 8), ``depth``
    every stage's number of residual blocks; at 1.0 both give YOLOv4's backbone
    (the image is fed unscaled, as Darknet feeds [0, 1] pixels).
    """
    image = keras.Input(shape=input_shape, name="image")
    x = conv_bn_mish(image, scaled_channels(CSPDARKNET53_STEM, width), 3, name="stem")
    features = {}
    # Stages are named stage1..stage5 (strides 2, 4, 8, 16, 32), as in darknet.py.
    for index, (channels, blocks) in enumerate(zip(CSPDARKNET53_CHANNELS, CSPDARKNET53_BLOCKS)):
        if index == 0:
            branch = scaled_channels(channels, width)
            block_hidden = scaled_channels(channels // 2, width)
        else:
            branch = block_hidden = scaled_channels(channels // 2, width)
        x = csp_stage(
            x,
            scaled_channels(channels, width),
            scaled_depth(blocks, depth),
            branch=branch,
            block_hidden=block_hidden,
            name=f"stage{index + 1}",
        )
        if index in OUTPUT_STAGES:
            features[str(OUTPUT_STAGES[index])] = x
    return keras.Model(inputs=image, outputs=features, name=name)


# -- builder --


def cspdarknet53_from_params(params: DarknetParams, chain: Chain) -> keras.Model:
    """The registry's backbone factory: CSPDarknet53 for the plan's image size."""
    image = chain.require("image", "backbone 'cspdarknet53'")
    return cspdarknet53(
        (image.height, image.width, image.channels),
        width=params.width,
        depth=params.depth,
    )
