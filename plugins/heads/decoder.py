"""YOLOv3's decoding of raw head outputs into boxes and scores, as a Keras layer.

Everything is a ratio of the input image, so the decoder needs no image size:
the grid size of each stride is read from the tensor itself.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
from keras import ops

from detplug.core.specs import AnchorRatios, Chain, NoParams

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
        t_y, t_x, t_hw, t_obj, logits = (
            raw[..., 0:1],
            raw[..., 1:2],
            raw[..., 2:4],
            raw[..., 4:5],
            raw[..., 5:],
        )
        y = (ops.sigmoid(t_y) + rows) / ops.cast(grid_height, dtype)
        x = (ops.sigmoid(t_x) + cols) / ops.cast(grid_width, dtype)
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


def yolo_decoder_from_params(params: NoParams, chain: Chain) -> YoloDecoder:
    """The registry's decoder factory: a YoloDecoder with the plan's anchors."""
    return YoloDecoder(anchors=chain.require("anchors", "decoder 'yolo'"), name="yolo_decoder")
