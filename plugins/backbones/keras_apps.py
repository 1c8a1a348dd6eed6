"""keras.applications backbones (ResNet50, MobileNetV2, EfficientNetB0) with detplug's contract.

Order as in timm: blocks (the input preprocessing), model, builders.

detplug feeds every backbone float32 images in [0, 1]. Each keras application
was trained on its own input convention, so the wrapper converts [0, 1] into it
before the first conv; weights loaded from a file of the ImageNet weights then
see what they were trained on:

=============== ============================================= ==============================
application     ImageNet input                                 from x in [0, 1]
=============== ============================================= ==============================
resnet50        "caffe": BGR, 0..255 minus the BGR mean          255 x[..., ::-1] - mean_bgr
mobilenetv2     "tf": [-1, 1]                                    2 x - 1
efficientnetb0  "torch": (x - mean_rgb) / std_rgb, RGB in [0, 1] (x - mean) / std
=============== ============================================= ==============================

EfficientNet's keras model carries its own Rescaling + Normalization stem, and
adds the std-dev correction keras documents (tensorflow#49930) only when it
downloads weights itself (``weights="imagenet"``), never for a weights file.
So the wrapper starts EfficientNet's graph after that stem (at
``stem_conv_pad``) and does the normalisation itself; the same code path is
used for every application. Which layer gives each stride is the table
``KERAS_APP_LAYERS`` in the manifest, next to the channels the spec declares.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
from keras import ops

from detplug.core.plan.specs import Chain
from detplug.plugins.backbones import KERAS_APP_LAYERS, KerasAppParams, MobileNetV2Params

#: ImageNet statistics as the keras.applications preprocess functions use them.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

PREPROCESSING_STYLES = ("caffe", "tf", "torch")


# -- blocks --


@keras.saving.register_keras_serializable(package="detplug")
class ImageNetPreprocessing(keras.layers.Layer):
    """Images in [0, 1] (RGB) to a keras application's ImageNet input convention.

    ``style``: ``"caffe"`` (BGR, 0..255, minus the BGR mean: ResNet50),
    ``"tf"`` ([-1, 1]: MobileNetV2), ``"torch"`` (minus the RGB mean, over the
    RGB std, from [0, 1]: EfficientNet).
    """

    def __init__(self, style: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if style not in PREPROCESSING_STYLES:
            raise ValueError(f"ImageNetPreprocessing: style must be one of {PREPROCESSING_STYLES} (got {style!r})")
        self.style = style

    def call(self, images: Any) -> Any:
        if self.style == "tf":
            return images * 2.0 - 1.0
        if self.style == "caffe":
            bgr = ops.flip(images, axis=-1)
            return bgr * 255.0 - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=images.dtype)
        mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=images.dtype)
        std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=images.dtype)
        return (images - mean) / std

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "style": self.style}


# -- model --


#: Per application: its constructor, the first layer the wrapper keeps (skipping a
#: built-in preprocessing stem), and the input style it was trained with.
APPLICATIONS: dict[str, tuple[Callable[..., keras.Model], str, str]] = {
    "resnet50": (keras.applications.ResNet50, "conv1_pad", "caffe"),
    "mobilenetv2": (keras.applications.MobileNetV2, "Conv1", "tf"),
    "efficientnetb0": (keras.applications.EfficientNetB0, "stem_conv_pad", "torch"),
}


def keras_app_backbone(
    app: str,
    input_shape: tuple[int, int, int],
    *,
    weights: str | Path | None = None,
    name: str | None = None,
    **app_kwargs: Any,
) -> keras.Model:
    """Keras application ``app`` from an image (batch, H, W, 3) in [0, 1] to
    ``{"8", "16", "32"}`` feature maps (the layers of ``KERAS_APP_LAYERS[app]``).

    ``weights`` is None (random initialisation) or the path of a local weights
    file of the application without its top; nothing is ever downloaded.
    ``app_kwargs`` go to the keras constructor (``alpha`` for MobileNetV2).
    """
    if app not in APPLICATIONS:
        raise ValueError(f"unknown keras application {app!r}; known: {', '.join(APPLICATIONS)}")
    constructor, first_layer, style = APPLICATIONS[app]
    if weights in ("", None):
        weights = None
    else:
        weights = Path(weights).expanduser()
        if not weights.is_file():
            raise FileNotFoundError(f"{app}: no weights file at {weights} (weights are never downloaded)")
        weights = str(weights)
    application = constructor(include_top=False, weights=weights, input_shape=tuple(input_shape), **app_kwargs)
    # A functional model may start at an inner tensor: everything before it
    # (EfficientNet's Rescaling/Normalization stem) is left out.
    trunk = keras.Model(
        application.get_layer(first_layer).input,
        {str(stride): application.get_layer(layer).output for stride, (layer, _) in KERAS_APP_LAYERS[app].items()},
        name=f"{app}_trunk",
    )
    image = keras.Input(shape=tuple(input_shape), name="image")
    features = trunk(ImageNetPreprocessing(style, name=f"{app}_preprocessing")(image))
    return keras.Model(inputs=image, outputs=features, name=name or app)


def resnet50(input_shape: tuple[int, int, int] = (416, 416, 3), *, weights: str | Path | None = None) -> keras.Model:
    """ResNet50: /8x512 (conv3_block4_out), /16x1024 (conv4_block6_out), /32x2048 (conv5_block3_out)."""
    return keras_app_backbone("resnet50", input_shape, weights=weights)


def mobilenetv2(
    input_shape: tuple[int, int, int] = (416, 416, 3), *, width: float = 1.0, weights: str | Path | None = None
) -> keras.Model:
    """MobileNetV2 at ``alpha = width``: /8 block_6_expand_relu, /16 block_13_expand_relu, /32 out_relu."""
    return keras_app_backbone("mobilenetv2", input_shape, weights=weights, alpha=width)


def efficientnetb0(
    input_shape: tuple[int, int, int] = (416, 416, 3), *, weights: str | Path | None = None
) -> keras.Model:
    """EfficientNetB0: /8x40 (block3b_add), /16x112 (block5c_add), /32x1280 (top_activation)."""
    return keras_app_backbone("efficientnetb0", input_shape, weights=weights)


# -- builders --


def _input_shape(chain: Chain, app: str) -> tuple[int, int, int]:
    image = chain.require("image", f"backbone '{app}'")
    return image.height, image.width, image.channels


def resnet50_from_params(params: KerasAppParams, chain: Chain) -> keras.Model:
    """The registry's backbone factory for ``resnet50``."""
    return resnet50(_input_shape(chain, "resnet50"), weights=params.weights)


def mobilenetv2_from_params(params: MobileNetV2Params, chain: Chain) -> keras.Model:
    """The registry's backbone factory for ``mobilenetv2``."""
    return mobilenetv2(_input_shape(chain, "mobilenetv2"), width=params.width, weights=params.weights)


def efficientnetb0_from_params(params: KerasAppParams, chain: Chain) -> keras.Model:
    """The registry's backbone factory for ``efficientnetb0``."""
    return efficientnetb0(_input_shape(chain, "efficientnetb0"), weights=params.weights)
