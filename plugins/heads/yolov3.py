"""YOLOv3's three-scale head in Keras, as qqwweee/keras-yolo3's ``make_last_layers`` builds it.

Order as in timm: blocks, model, builder. Channel widths come from the
manifest (:mod:`detplug.plugins.heads`) so the declared spec and the built
model share one source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

import keras
import numpy as np
from keras import layers

from detplug.core.plan.specs import Chain
from detplug.plugins.backbones import scaled_channels
from detplug.plugins.backbones.darknet import conv_bn_leaky
from detplug.plugins.heads import YOLOV3_HEAD_CHANNELS, YoloV3HeadParams

#: Coarse to fine: each finer stride receives the upsampled coarser branch.
STRIDES_COARSE_TO_FINE = tuple(sorted(YOLOV3_HEAD_CHANNELS, reverse=True))


# -- blocks --


def conv_set(x: keras.KerasTensor, channels: int, *, name: str) -> keras.KerasTensor:
    """Five convs alternating 1x1 ``channels`` and 3x3 ``2 * channels``; the branch point."""
    for index in range(5):
        if index % 2 == 0:
            x = conv_bn_leaky(x, channels, 1, name=f"{name}_conv{index + 1}")
        else:
            x = conv_bn_leaky(x, 2 * channels, 3, name=f"{name}_conv{index + 1}")
    return x


#: The objects per image the objectness prior assumes (YOLOv5's 8 per 640x640 image).
PRIOR_OBJECTS = 8.0
#: The class probability the class prior starts every class at, shared out (YOLOv5: 0.6 / classes).
PRIOR_CLASS_SHARE = 0.6


def prior_bias(grid: tuple[int, int], anchors: int, channels_per_anchor: int) -> np.ndarray:
    """The output conv's initial bias: box offsets 0, and objectness and class logits at
    their priors (YOLOv5's "smart bias", Focal Loss §4.1), so training starts from
    "a few objects per image" instead of objectness 0.5 in every cell, whose no-object
    loss would otherwise dominate the first epochs.

    Objectness: ``PRIOR_OBJECTS`` objects over the grid's cells; class:
    ``PRIOR_CLASS_SHARE / (classes - 0.99)``.
    """
    classes = channels_per_anchor - 5
    objectness = min(0.5, PRIOR_OBJECTS / (grid[0] * grid[1]))
    per_anchor = np.zeros(channels_per_anchor, np.float32)
    per_anchor[4] = math.log(objectness / (1.0 - objectness))
    if classes > 0:
        per_anchor[5:] = math.log(PRIOR_CLASS_SHARE / max(classes - 0.99, 0.01))
    return np.tile(per_anchor, anchors)


def prediction(
    x: keras.KerasTensor,
    channels: int,
    grid: tuple[int, int],
    anchors: int,
    channels_per_anchor: int,
    *,
    name: str,
) -> keras.KerasTensor:
    """3x3 conv to ``2 * channels``, then a linear 1x1 conv with bias (no BN: these are the
    raw predictions; its bias starts at :func:`prior_bias`), split per anchor to
    (batch, H, W, anchors, channels_per_anchor)."""
    x = conv_bn_leaky(x, 2 * channels, 3, name=f"{name}_pred")
    output = layers.Conv2D(anchors * channels_per_anchor, 1, padding="same", use_bias=True, name=f"{name}_out_conv")
    x = output(x)
    output.bias.assign(prior_bias(grid, anchors, channels_per_anchor))
    return AnchorSplit(anchors, channels_per_anchor, name=f"{name}_out")(x)


@keras.saving.register_keras_serializable(package="detplug")
class AnchorSplit(layers.Layer):
    """(batch, H, W, anchors x channels) to (batch, H, W, anchors, channels), for any H and W:
    the grid is read from the tensor, so the model also runs at other input sizes
    (multi-scale training) than the one it was built for."""

    def __init__(self, anchors: int, channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.anchors, self.channels = int(anchors), int(channels)

    def call(self, x):
        shape = keras.ops.shape(x)
        return keras.ops.reshape(x, (shape[0], shape[1], shape[2], self.anchors, self.channels))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.anchors, self.channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "anchors": self.anchors, "channels": self.channels}


# -- model --


def yolov3_fpn(
    feature_shapes: Mapping[str, tuple[int, int, int]],
    *,
    anchors_per_stride: Mapping[int, int],
    num_classes: int,
    width: float = 1.0,
    name: str = "yolov3_fpn",
) -> keras.Model:
    """YOLOv3's head from ``{"8", "16", "32"}`` feature maps, each shaped (H/s, W/s, channels)
    without the batch, to ``{"8", "16", "32"}`` raw predictions (batch, H/s, W/s, anchors, 5 + classes).

    Built for the feature sizes given; it also runs at other input sizes (see AnchorSplit).
    """
    # A list shape (as a Keras config gives it) becomes the tuple the annotation names.
    feature_shapes = {str(key): cast("tuple[int, int, int]", tuple(shape)) for key, shape in feature_shapes.items()}
    anchors_per_stride = {int(key): int(value) for key, value in anchors_per_stride.items()}
    for stride in STRIDES_COARSE_TO_FINE:
        if str(stride) not in feature_shapes or stride not in anchors_per_stride:
            raise ValueError(
                f"yolov3_fpn needs features and anchors at strides 8, 16 and 32; got features at "
                f"{sorted(feature_shapes)} and anchors at {sorted(anchors_per_stride)}"
            )
        if any(size is None for size in feature_shapes[str(stride)][:2]):
            raise ValueError(
                f"yolov3_fpn needs known feature sizes to split the anchors; "
                f"stride {stride} has shape {feature_shapes[str(stride)]}"
            )

    # Keras matches a dict input by its tensor's name, so each Input is named by its key.
    inputs = {
        str(stride): keras.Input(shape=feature_shapes[str(stride)], name=str(stride))
        for stride in sorted(STRIDES_COARSE_TO_FINE)
    }
    outputs = {}
    upsampled = None
    for position, stride in enumerate(STRIDES_COARSE_TO_FINE):
        channels = scaled_channels(YOLOV3_HEAD_CHANNELS[stride], width)
        x = inputs[str(stride)]
        if upsampled is not None:
            # keras-yolo3's order: the upsampled coarse branch first, then the backbone's skip.
            x = layers.Concatenate(name=f"head{stride}_concat")([upsampled, x])
        x = conv_set(x, channels, name=f"head{stride}")
        outputs[str(stride)] = prediction(
            x,
            channels,
            feature_shapes[str(stride)][:2],
            anchors_per_stride[stride],
            5 + num_classes,
            name=f"head{stride}",
        )
        if position + 1 < len(STRIDES_COARSE_TO_FINE):
            finer = STRIDES_COARSE_TO_FINE[position + 1]
            # The lateral 1x1 conv narrows to the finer stride's width (256 from 512 at width 1).
            lateral_channels = scaled_channels(YOLOV3_HEAD_CHANNELS[finer], width)
            x = conv_bn_leaky(x, lateral_channels, 1, name=f"head{stride}_lateral")
            upsampled = layers.UpSampling2D(stride // finer, name=f"head{stride}_upsample")(x)
    outputs = {str(stride): outputs[str(stride)] for stride in sorted(STRIDES_COARSE_TO_FINE)}
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


# -- builder --


def yolov3_fpn_from_params(params: YoloV3HeadParams, chain: Chain) -> keras.Model:
    """The registry's head factory: YOLOv3's head for the plan's features, anchors and classes."""
    by = "head 'yolov3_fpn'"
    image = chain.require("image", by)
    features = chain.require("features", by)
    anchors = chain.require("anchors", by)
    labels = chain.require("labels", by)
    feature_shapes = {
        str(stride): (image.height // stride, image.width // stride, spec.channels)
        for stride, spec in features.items()
    }
    return yolov3_fpn(
        feature_shapes,
        anchors_per_stride={stride: len(pairs) for stride, pairs in anchors.items()},
        num_classes=labels.num_classes,
        width=params.width,
    )


# -- Darknet file layout --


def darknet_output_order(anchors: int, channels_per_anchor: int) -> list[int]:
    """Darknet's [yolo] output channels per anchor are x, y, w, h, objectness, classes; ours
    are y, x, h, w, objectness, classes: the Darknet channel each of ours takes."""
    order = []
    for anchor in range(anchors):
        base = anchor * channels_per_anchor
        order += [base + 1, base, base + 3, base + 2, *range(base + 4, base + channels_per_anchor)]
    return order


def yolov3_fpn_darknet_layout(model: keras.Model) -> list[tuple]:
    """The convolutions (conv, batch norm or None[, channel order]) in yolov3.cfg order: per
    stride, coarse to fine, the five-conv set, the 3x3 prediction conv, the linear output
    conv (bias, no batch norm; its channels reordered from Darknet's x, y, w, h), then the
    lateral 1x1 conv that feeds the next finer stride."""
    order: list[tuple] = []
    for position, stride in enumerate(STRIDES_COARSE_TO_FINE):
        units = [f"head{stride}_conv{index}" for index in range(1, 6)] + [f"head{stride}_pred"]
        order += [(f"{unit}_conv", f"{unit}_bn") for unit in units]
        split = model.get_layer(f"head{stride}_out")
        order.append((f"head{stride}_out_conv", None, darknet_output_order(split.anchors, split.channels)))
        if position + 1 < len(STRIDES_COARSE_TO_FINE):
            order.append((f"head{stride}_lateral_conv", f"head{stride}_lateral_bn"))
    return order
