"""tinynet in Keras. Order as every detplug model file: blocks, model, builder.

Imported only when detplug builds the model (the factory string in
:mod:`detplug_tinynet.plugin` names :func:`tinynet_from_params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import layers

from detplug import Chain
from detplug_tinynet.plugin import STRIDES, TinyNetParams, output_channels, scaled

# -- blocks --


# Registered under this distribution's package so a saved model loads without
# custom_objects, and so that no other plugin's "ConvBNSiLU" can replace it.
@keras.saving.register_keras_serializable(package="detplug_tinynet")
class ConvBNSiLU(keras.layers.Layer):
    """3x3 conv without bias (the batch norm supplies it), batch norm, SiLU."""

    def __init__(self, filters: int, *, strides: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.conv = layers.Conv2D(self.filters, 3, strides=self.strides, padding="same", use_bias=False)
        self.norm = layers.BatchNormalization()

    def build(self, input_shape: tuple) -> None:
        # Built eagerly so that loading a saved model finds every weight in place.
        self.conv.build(input_shape)
        self.norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return keras.activations.silu(self.norm(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self.conv.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


# -- model --


def tinynet(
    input_shape: tuple[int | None, int | None, int] = (96, 160, 3),
    *,
    channels: Mapping[int, int],
    name: str = "tinynet",
) -> keras.Model:
    """From an image (batch, H, W, 3) in [0, 1] to ``{"8", "16", "32"}`` feature maps
    with ``channels[stride]`` channels: two stride-2 blocks to /4, then per stride a
    stride-2 block and a stride-1 block."""
    image = keras.Input(shape=input_shape, name="image")
    finest = channels[STRIDES[0]]
    x = ConvBNSiLU(scaled(finest // 4, 1.0), strides=2, name="stem")(image)
    x = ConvBNSiLU(scaled(finest // 2, 1.0), strides=2, name="down4")(x)
    features = {}
    for stride in STRIDES:
        x = ConvBNSiLU(channels[stride], strides=2, name=f"down{stride}")(x)
        x = ConvBNSiLU(channels[stride], name=f"mix{stride}")(x)
        features[str(stride)] = x
    return keras.Model(inputs=image, outputs=features, name=name)


# -- builder --


def tinynet_from_params(params: TinyNetParams, chain: Chain) -> keras.Model:
    """detplug's backbone factory: tinynet for the plan's image size."""
    image = chain.require("image", "backbone 'tinynet'")
    return tinynet((image.height, image.width, image.channels), channels=output_channels(params))
