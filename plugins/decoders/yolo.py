"""YOLO decoding of raw head outputs into boxes and scores, as Keras layers.

Everything is a ratio of the input image, so the decoder needs no image size:
the grid size of each stride is read from the tensor itself.

:class:`YoloDecoder` is YOLOv3's decoding and the base of the others: a
subclass changes only where in its cell a box centre can go
(:meth:`YoloDecoder.cell_offset`) and adds its own config.
:class:`YoloV4Decoder` is YOLOv4's "grid sensitivity" variant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from detplug.core.plan.specs import AnchorRatios, Chain, NoParams
from detplug.plugins.decoders import YoloV4DecoderParams, scales_per_stride

#: exp() of a box-size logit is capped at exp(8) ~ 2981 anchors: an untrained or
#: diverging head must not turn a box size into inf (and the losses into NaN).
MAX_SIZE_LOGIT = 8.0


def _normalise_anchors(anchors: Mapping[int | str, Sequence[Sequence[float]]]) -> dict[int, AnchorRatios]:
    # get_config's JSON round trip turns int keys into strings and tuples into lists.
    table = {}
    for stride, pairs in anchors.items():
        table[int(stride)] = tuple((float(height), float(width)) for height, width in pairs)
        if not table[int(stride)]:
            raise ValueError(f"YoloDecoder: no anchors for stride {stride}")
    return table


@keras.saving.register_keras_serializable(package="detplug")
class YoloDecoder(keras.layers.Layer):
    """Raw head outputs ``{"8": (B, H, W, A, 5 + C), ...}`` to, per stride, a dict of

    - ``yxhw`` (B, H, W, A, 4): box centre and size as ratios of the image,
    - ``objectness`` (B, H, W, A, 1): probability,
    - ``category`` (B, H, W, A, C): independent per-class probabilities,
    - ``raw``: the input, for losses computed on logits.

    The raw channels are ``[t_y, t_x, t_h, t_w, t_obj, class logits...]``;
    ``y = (sigmoid(t_y) + row) / H``, ``x = (sigmoid(t_x) + col) / W``,
    ``h = anchor_h * exp(t_h)``, ``w = anchor_w * exp(t_w)``.

    ``anchors`` maps each stride to its (height, width) anchor ratios, in the
    order the head emits them.
    """

    def __init__(self, anchors: Mapping[int | str, Sequence[Sequence[float]]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.anchors = _normalise_anchors(anchors)

    def cell_offset(self, stride: int, t_yx: Any) -> Any:
        """Where in its cell the box centre lies, in cells: sigmoid, so within (0, 1)."""
        return ops.sigmoid(t_yx)

    def _decode(self, stride: int, raw: Any) -> dict[str, Any]:
        anchors = self.anchors[stride]
        if raw.shape[-2] is not None and raw.shape[-2] != len(anchors):
            raise ValueError(
                f"YoloDecoder: stride {stride} has {len(anchors)} anchors but the head "
                f"gives {raw.shape[-2]} outputs per cell"
            )
        dtype = raw.dtype
        shape = ops.shape(raw)
        grid_height, grid_width = shape[1], shape[2]
        # Cell indices broadcast against (B, H, W, A, 1).
        rows = ops.reshape(ops.cast(ops.arange(grid_height), dtype), (-1, 1, 1, 1))
        cols = ops.reshape(ops.cast(ops.arange(grid_width), dtype), (1, -1, 1, 1))
        t_yx, t_hw, t_obj, logits = raw[..., 0:2], raw[..., 2:4], raw[..., 4:5], raw[..., 5:]
        offset = self.cell_offset(stride, t_yx)
        y = (offset[..., 0:1] + rows) / ops.cast(grid_height, dtype)
        x = (offset[..., 1:2] + cols) / ops.cast(grid_width, dtype)
        anchor_hw = ops.convert_to_tensor(anchors, dtype=dtype)  # (A, 2) broadcasts over B, H, W
        hw = anchor_hw * ops.exp(ops.minimum(t_hw, MAX_SIZE_LOGIT))
        return {
            "yxhw": ops.concatenate([y, x, hw], axis=-1),
            "objectness": ops.sigmoid(t_obj),
            "category": ops.sigmoid(logits),
            "raw": raw,
        }

    def call(self, inputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        missing = sorted(set(int(key) for key in inputs) - set(self.anchors))
        if missing:
            raise ValueError(
                f"YoloDecoder: the head gives strides {sorted(int(k) for k in inputs)} "
                f"but anchors are known only for {sorted(self.anchors)}"
            )
        return {key: self._decode(int(key), raw) for key, raw in inputs.items()}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        # String keys and lists: what JSON keeps, so a saved model compares equal when loaded.
        config["anchors"] = {
            str(stride): [list(pair) for pair in pairs] for stride, pairs in self.anchors.items()
        }
        return config


@keras.saving.register_keras_serializable(package="detplug")
class YoloV4Decoder(YoloDecoder):
    """YOLOv4's decoding: as :class:`YoloDecoder` but with grid sensitivity, so that a
    centre on a cell border is reachable with finite logits:

    ``y = (scale * sigmoid(t_y) - (scale - 1) / 2 + row) / H`` (and x alike),

    i.e. the offset spans (-(s-1)/2, (s+1)/2) cells instead of (0, 1).
    ``scale_xy`` maps each stride to its scale (yolov4.cfg: 1.2, 1.1, 1.05 at
    strides 8, 16, 32); at 1 this is YOLOv3's decoding.
    """

    def __init__(
        self,
        anchors: Mapping[int | str, Sequence[Sequence[float]]],
        scale_xy: Mapping[int, float] | Mapping[str, float],
        **kwargs: Any,
    ) -> None:
        super().__init__(anchors, **kwargs)
        self.scale_xy = {int(stride): float(scale) for stride, scale in scale_xy.items()}
        missing = sorted(set(self.anchors) - set(self.scale_xy))
        if missing:
            raise ValueError(f"YoloV4Decoder: no scale_xy for strides {missing}")

    def cell_offset(self, stride: int, t_yx: Any) -> Any:
        scale = self.scale_xy[stride]
        return ops.sigmoid(t_yx) * scale - (scale - 1.0) / 2.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale_xy": {str(s): v for s, v in self.scale_xy.items()}}


# -- builders --


def yolo_decoder_from_params(params: NoParams, chain: Chain) -> YoloDecoder:
    """The registry's decoder factory: a YoloDecoder with the plan's anchors."""
    return YoloDecoder(anchors=chain.require("anchors", "decoder 'yolo'"), name="yolo_decoder")


def yolov4_decoder_from_params(params: YoloV4DecoderParams, chain: Chain) -> YoloV4Decoder:
    """The registry's decoder factory: a YoloV4Decoder with the plan's anchors and scale_xy."""
    anchors = chain.require("anchors", "decoder 'yolov4'")
    head = chain.require("head", "decoder 'yolov4'")
    scale_xy = params.scale_xy
    assert isinstance(scale_xy, tuple)  # YoloV4DecoderParams' converter and validator made it one
    return YoloV4Decoder(
        anchors=anchors,
        scale_xy=scales_per_stride(scale_xy, tuple(head)),
        name="yolov4_decoder",
    )
