"""YOLOv4's neck and head in Keras: SPP, a top-down FPN, then a bottom-up path (PAN).

Layer for layer as yolov4.cfg after the backbone, for any backbone channel
counts. Order as in timm: blocks, model, builder. Widths come from the
manifest (:mod:`detplug.plugins.heads`).

::

    C5 -> 1x1, 3x3, 1x1, [SPP 5/9/13], 1x1, 3x3, 1x1 ------------------- P5 ----------+
    C4 -> 1x1 lateral ++ upsample(1x1 P5) -> five convs ------------ P4 -------+       |
    C3 -> 1x1 lateral ++ upsample(1x1 P4) -> five convs -> P3 -> predict /8    |       |
                                         P3 -> 3x3 s2 ++ P4 -> five convs -> N4 -> predict /16
                                                        N4 -> 3x3 s2 ++ P5 -> five convs -> predict /32

(``++`` is concatenation, in yolov4.cfg's order: the branch just computed first.)
The neck uses LeakyReLU(0.1), as yolov4.cfg does; only the backbone uses Mish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import keras
from keras import layers

from detplug.core.plan.specs import Chain
from detplug.plugins.backbones import scaled_channels
from detplug.plugins.backbones.darknet import conv_bn_leaky
from detplug.plugins.heads import HEAD_STRIDES, PAN_HEAD_CHANNELS, PanHeadParams
from detplug.plugins.heads.yolov3 import conv_set, prediction

#: yolov4.cfg's SPP max-pool sizes, concatenated largest first, then the input.
SPP_POOL_SIZES = (13, 9, 5)


# -- blocks --


def spatial_pyramid_pooling(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """Stride-1 max-pools of 13, 9 and 5, concatenated with the input (4x the channels)."""
    pooled = [
        layers.MaxPooling2D(size, strides=1, padding="same", name=f"{name}_pool{size}")(x) for size in SPP_POOL_SIZES
    ]
    return layers.Concatenate(name=f"{name}_concat")([*pooled, x])


def coarsest_block(x: keras.KerasTensor, channels: int, *, spp: bool, name: str) -> keras.KerasTensor:
    """The /32 branch point: yolov4.cfg's three convs, SPP, three convs; without SPP
    the plain five-conv set (1x1, 3x3, 1x1, 3x3, 1x1)."""
    if not spp:
        return conv_set(x, channels, name=name)
    x = conv_bn_leaky(x, channels, 1, name=f"{name}_conv1")
    x = conv_bn_leaky(x, 2 * channels, 3, name=f"{name}_conv2")
    x = conv_bn_leaky(x, channels, 1, name=f"{name}_conv3")
    x = spatial_pyramid_pooling(x, name=f"{name}_spp")
    x = conv_bn_leaky(x, channels, 1, name=f"{name}_conv4")
    x = conv_bn_leaky(x, 2 * channels, 3, name=f"{name}_conv5")
    return conv_bn_leaky(x, channels, 1, name=f"{name}_conv6")


# -- model --


def pan(
    feature_shapes: Mapping[str, tuple[int, int, int]],
    *,
    anchors_per_stride: Mapping[int, int],
    num_classes: int,
    width: float = 1.0,
    spp: bool = True,
    name: str = "pan",
) -> keras.Model:
    """YOLOv4's neck and head from ``{"8", "16", "32"}`` feature maps, each shaped
    (H/s, W/s, channels) without the batch, to ``{"8", "16", "32"}`` raw predictions
    (batch, H/s, W/s, anchors, 5 + classes).

    ``width`` scales every neck width (128/256/512 at 1); ``spp`` adds YOLOv4's
    spatial pyramid pooling on the /32 features.
    """
    # A list shape (as a Keras config gives it) becomes the tuple the annotation names.
    feature_shapes = {str(key): cast("tuple[int, int, int]", tuple(shape)) for key, shape in feature_shapes.items()}
    anchors_per_stride = {int(key): int(value) for key, value in anchors_per_stride.items()}
    for stride in HEAD_STRIDES:
        if str(stride) not in feature_shapes or stride not in anchors_per_stride:
            raise ValueError(
                f"pan needs features and anchors at strides 8, 16 and 32; got features at "
                f"{sorted(feature_shapes)} and anchors at {sorted(anchors_per_stride)}"
            )
        if any(size is None for size in feature_shapes[str(stride)][:2]):
            raise ValueError(
                f"pan needs known feature sizes to split the anchors; "
                f"stride {stride} has shape {feature_shapes[str(stride)]}"
            )
    channels = {stride: scaled_channels(PAN_HEAD_CHANNELS[stride], width) for stride in HEAD_STRIDES}
    fine_to_coarse = tuple(sorted(HEAD_STRIDES))
    coarse_to_fine = fine_to_coarse[::-1]

    # Keras matches a dict input by its tensor's name, so each Input is named by its key.
    inputs = {str(stride): keras.Input(shape=feature_shapes[str(stride)], name=str(stride))
              for stride in fine_to_coarse}

    # Top-down: P5, then each finer level from its lateral and the upsampled coarser level.
    top_down = {}
    coarsest = coarse_to_fine[0]
    top_down[coarsest] = coarsest_block(inputs[str(coarsest)], channels[coarsest], spp=spp, name=f"pan{coarsest}")
    for coarser, stride in zip(coarse_to_fine, coarse_to_fine[1:]):
        reduced = conv_bn_leaky(top_down[coarser], channels[stride], 1, name=f"pan{coarser}_reduce")
        upsampled = layers.UpSampling2D(coarser // stride, name=f"pan{coarser}_upsample")(reduced)
        lateral = conv_bn_leaky(inputs[str(stride)], channels[stride], 1, name=f"pan{stride}_lateral")
        x = layers.Concatenate(name=f"pan{stride}_concat")([lateral, upsampled])
        top_down[stride] = conv_set(x, channels[stride], name=f"pan{stride}")

    # Bottom-up: the finest level predicts as is; each coarser one first takes in the
    # downsampled finer level (PANet's path aggregation).
    outputs = {}
    aggregated = top_down[fine_to_coarse[0]]
    for position, stride in enumerate(fine_to_coarse):
        if position > 0:
            finer = fine_to_coarse[position - 1]
            down = conv_bn_leaky(aggregated, channels[stride], 3, strides=stride // finer, name=f"head{finer}_down")
            x = layers.Concatenate(name=f"head{stride}_concat")([down, top_down[stride]])
            aggregated = conv_set(x, channels[stride], name=f"head{stride}")
        outputs[str(stride)] = prediction(
            aggregated,
            channels[stride],
            feature_shapes[str(stride)][:2],
            anchors_per_stride[stride],
            5 + num_classes,
            name=f"head{stride}",
        )
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


# -- builder --


def pan_from_params(params: PanHeadParams, chain: Chain) -> keras.Model:
    """The registry's head factory: YOLOv4's PAN for the plan's features, anchors and classes."""
    by = "head 'pan'"
    image = chain.require("image", by)
    features = chain.require("features", by)
    anchors = chain.require("anchors", by)
    labels = chain.require("labels", by)
    return pan(
        {
            str(stride): (image.height // stride, image.width // stride, spec.channels)
            for stride, spec in features.items()
        },
        anchors_per_stride={stride: len(pairs) for stride, pairs in anchors.items()},
        num_classes=labels.num_classes,
        width=params.width,
        spp=params.spp,
    )
