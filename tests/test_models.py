"""The built-in Keras models: Darknet-53, YOLOv3's head and the YOLO decoder.

Real TensorFlow, no mocks; small inputs and width 0.25 except where the real
YOLOv3 is the point (its parameter count).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.specs import Chain, ImageSpec, LabelSpec, NoParams
from detplug.plugins.backbones import DARKNET53, DARKNET53_BLOCKS, DarknetParams, scaled_depth
from detplug.plugins.backbones.darknet import darknet53
from detplug.plugins.decoders import YOLO_DECODER
from detplug.plugins.decoders.yolo import MAX_SIZE_LOGIT, YoloDecoder
from detplug.plugins.heads import YOLOV3_FPN, YoloV3HeadParams
from detplug.plugins.heads.yolov3 import yolov3_fpn
from detplug.registry import load_factory

STAGES = ("stage1", "stage2", "stage3", "stage4", "stage5")


def _layers_of(model: keras.Model, kind: type, prefix: str = "") -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, kind) and layer.name.startswith(prefix)]


def _residual_adds_per_stage(backbone: keras.Model) -> tuple[int, ...]:
    return tuple(len(_layers_of(backbone, keras.layers.Add, f"{stage}_")) for stage in STAGES)


def _chain(height: int, width: int, classes: tuple[str, ...] = ("car", "pedestrian", "cyclist")) -> Chain:
    image = ImageSpec(height, width)
    return Chain(
        image=image,
        labels=LabelSpec(classes, max_boxes=10),
        anchors=anchors_to_ratios(anchor_pixels("coco_yolov3"), image),
    )


# -- Darknet-53 and YOLOv3 at full size --


@pytest.fixture(scope="module")
def full_yolov3() -> tuple[keras.Model, keras.Model, keras.Model]:
    """YOLOv3 as published: Darknet-53 and the head at width/depth 1, 80 classes, 416x416."""
    backbone = darknet53((416, 416, 3))
    head = yolov3_fpn(
        {key: tuple(tensor.shape[1:]) for key, tensor in backbone.output.items()},
        anchors_per_stride={8: 3, 16: 3, 32: 3},
        num_classes=80,
    )
    image = keras.Input((416, 416, 3))
    return backbone, head, keras.Model(image, head(backbone(image)))


def test_yolov3_has_the_parameter_count_of_the_converted_darknet_weights(full_yolov3):
    # qqwweee/keras-yolo3's model converted from yolov3.weights: trainable + non-trainable.
    _, _, model = full_yolov3
    assert model.count_params() == 62_001_757


def test_darknet53_has_52_convolutions(full_yolov3):
    backbone, _, _ = full_yolov3
    assert len(_layers_of(backbone, keras.layers.Conv2D)) == 52


def test_darknet53_every_conv_is_biasless_with_batchnorm_and_leaky_relu_0_1(full_yolov3):
    backbone, _, _ = full_yolov3
    convs = _layers_of(backbone, keras.layers.Conv2D)
    assert not any(conv.use_bias for conv in convs)
    assert len(_layers_of(backbone, keras.layers.BatchNormalization)) == len(convs)
    leaky = _layers_of(backbone, keras.layers.LeakyReLU)
    assert len(leaky) == len(convs)
    assert all(math.isclose(layer.negative_slope, 0.1) for layer in leaky)


def test_darknet53_residual_blocks_per_stage_are_1_2_8_8_4(full_yolov3):
    backbone, _, _ = full_yolov3
    assert _residual_adds_per_stage(backbone) == (1, 2, 8, 8, 4)


def test_darknet53_downsamples_with_top_left_padding_like_darknet(full_yolov3):
    backbone, _, _ = full_yolov3
    pads = _layers_of(backbone, keras.layers.ZeroPadding2D)
    assert [pad.name for pad in pads] == [f"{stage}_down_pad" for stage in STAGES]
    assert all(tuple(map(tuple, pad.padding)) == ((1, 0), (1, 0)) for pad in pads)
    downs = [backbone.get_layer(f"{stage}_down_conv") for stage in STAGES]
    assert all(conv.strides == (2, 2) and conv.padding == "valid" for conv in downs)


def test_yolov3_head_outputs_have_linear_biased_final_convs(full_yolov3):
    _, head, _ = full_yolov3
    final = [head.get_layer(f"head{stride}_out_conv") for stride in (8, 16, 32)]
    assert all(conv.use_bias and conv.filters == 3 * 85 for conv in final)
    assert len(_layers_of(head, keras.layers.Conv2D)) == 3 * 7 + 2  # 7 per stride + 2 laterals


def test_yolov3_head_output_biases_start_at_the_objectness_and_class_priors(full_yolov3):
    _, head, _ = full_yolov3
    for stride in (8, 16, 32):
        bias = head.get_layer(f"head{stride}_out_conv").bias.numpy().reshape(3, 85)
        # YOLOv5's priors: 8 objects over the (416 / stride)^2 cells; class 0.6 / (80 - 0.99).
        cells = (416 // stride) ** 2
        prior = 8 / cells
        np.testing.assert_allclose(bias[:, 4], math.log(prior / (1 - prior)), rtol=1e-5)
        np.testing.assert_allclose(bias[:, 5:], math.log(0.6 / 79.01), rtol=1e-5)
        np.testing.assert_array_equal(bias[:, :4], 0.0)


@pytest.mark.parametrize(
    "depth, expected",
    [(0.5, (1, 1, 4, 4, 2)), (0.33, (1, 1, 3, 3, 1))],
)
def test_darknet53_depth_multiplier_scales_residual_blocks_as_scaled_depth_says(depth, expected):
    backbone = darknet53((64, 96, 3), width=0.25, depth=depth)
    assert expected == tuple(scaled_depth(blocks, depth) for blocks in DARKNET53_BLOCKS)
    assert _residual_adds_per_stage(backbone) == expected


# -- declared specs equal built shapes --


@pytest.mark.parametrize("height, width", [(64, 96), (128, 64)])
@pytest.mark.parametrize("model_width", [0.25, 0.5])
def test_declared_specs_equal_built_tensor_shapes(height, width, model_width):
    chain = _chain(height, width)
    backbone_params = DarknetParams(width=model_width)
    head_params = YoloV3HeadParams(width=model_width)

    features = DARKNET53.spec(backbone_params, chain)
    backbone = load_factory(DARKNET53)(backbone_params, chain)
    assert set(backbone.output) == {str(stride) for stride in features}
    for stride, spec in features.items():
        assert tuple(backbone.output[str(stride)].shape) == (
            None, height // stride, width // stride, spec.channels
        )

    chain = chain.evolve(features=features)
    head_specs = YOLOV3_FPN.spec(head_params, chain)
    head = load_factory(YOLOV3_FPN)(head_params, chain)
    assert set(head.output) == {str(stride) for stride in head_specs}
    for stride, spec in head_specs.items():
        assert tuple(head.output[str(stride)].shape) == (
            None, height // stride, width // stride, spec.anchors, spec.channels_per_anchor
        )

    chain = chain.evolve(head=head_specs)
    decoded_specs = YOLO_DECODER.spec(NoParams(), chain)
    decoder = load_factory(YOLO_DECODER)(NoParams(), chain)
    image = keras.Input((height, width, 3))
    decoded = decoder(head(backbone(image)))
    for stride, spec in decoded_specs.items():
        for name, channels in spec.channels().items():
            assert tuple(decoded[str(stride)][name].shape) == (
                None, height // stride, width // stride, spec.anchors, channels
            )


def test_yolov3_head_rejects_features_missing_a_stride():
    with pytest.raises(ValueError, match="strides 8, 16 and 32"):
        yolov3_fpn(
            {"16": (4, 4, 32), "32": (2, 2, 64)}, anchors_per_stride={8: 3, 16: 3, 32: 3}, num_classes=1
        )


# -- the decoder --

ANCHOR_H, ANCHOR_W = 0.25, 0.125


def _decode_2x2(raw_cell: list[float], num_classes: int = 2) -> dict[str, np.ndarray]:
    """Decodes a 2x2 grid with one anchor where every cell holds ``raw_cell``."""
    assert len(raw_cell) == 5 + num_classes
    raw = np.broadcast_to(np.asarray(raw_cell, "float32"), (1, 2, 2, 1, 5 + num_classes))
    decoder = YoloDecoder({8: ((ANCHOR_H, ANCHOR_W),)})
    return {name: keras.ops.convert_to_numpy(value) for name, value in decoder({"8": raw})["8"].items()}


def test_decoder_zero_logits_give_cell_centres_anchor_sizes_and_half_probabilities():
    decoded = _decode_2x2([0.0] * 7)
    for row in range(2):
        for col in range(2):
            y, x, h, w = decoded["yxhw"][0, row, col, 0]
            assert (y, x) == pytest.approx(((0.5 + row) / 2, (0.5 + col) / 2))
            assert (h, w) == pytest.approx((ANCHOR_H, ANCHOR_W))
    np.testing.assert_allclose(decoded["objectness"], 0.5)
    np.testing.assert_allclose(decoded["category"], 0.5)


def test_decoder_size_logit_log_k_multiplies_the_anchor_by_k():
    decoded = _decode_2x2([0.0, 0.0, math.log(2.0), math.log(3.0), 0.0, 0.0, 0.0])
    np.testing.assert_allclose(decoded["yxhw"][..., 2], 2 * ANCHOR_H, rtol=1e-6)
    np.testing.assert_allclose(decoded["yxhw"][..., 3], 3 * ANCHOR_W, rtol=1e-6)


def test_decoder_centres_and_scores_are_exact_sigmoids():
    def sigmoid(value: float) -> float:
        return 1 / (1 + math.exp(-value))

    decoded = _decode_2x2([2.0, -1.0, 0.0, 0.0, -3.0, 4.0, -0.5])
    y, x = decoded["yxhw"][0, 1, 0, 0, :2]
    assert y == pytest.approx((sigmoid(2.0) + 1) / 2, rel=1e-6)
    assert x == pytest.approx((sigmoid(-1.0) + 0) / 2, rel=1e-6)
    np.testing.assert_allclose(decoded["objectness"], sigmoid(-3.0), rtol=1e-6)
    np.testing.assert_allclose(decoded["category"][0, 0, 0, 0], [sigmoid(4.0), sigmoid(-0.5)], rtol=1e-6)


def test_decoder_passes_the_raw_head_output_through():
    raw_cell = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    decoded = _decode_2x2(raw_cell)
    np.testing.assert_array_equal(decoded["raw"][0, 1, 1, 0], np.float32(raw_cell))


def test_decoder_caps_size_logits_so_exp_cannot_overflow():
    decoded = _decode_2x2([0.0, 0.0, 1000.0, 1e30, 0.0, 0.0, 0.0])
    assert np.isfinite(decoded["yxhw"]).all()
    np.testing.assert_allclose(decoded["yxhw"][..., 2], ANCHOR_H * math.exp(MAX_SIZE_LOGIT), rtol=1e-5)


def test_decoder_reads_grid_size_from_the_tensor_with_unknown_batch_in_graph_mode():
    decoder = YoloDecoder({8: ((0.1, 0.2), (0.3, 0.4)), 16: ((0.5, 0.6),)})
    signature = {
        "8": tf.TensorSpec((None, None, None, 2, 6)),
        "16": tf.TensorSpec((None, None, None, 1, 6)),
    }
    decode = tf.function(decoder, input_signature=[signature])
    raw = {"8": np.zeros((3, 4, 6, 2, 6), "float32"), "16": np.zeros((3, 2, 3, 1, 6), "float32")}
    decoded = decode(raw)
    assert tuple(decoded["8"]["yxhw"].shape) == (3, 4, 6, 2, 4)
    np.testing.assert_allclose(decoded["8"]["yxhw"][2, 3, 5, 1], [3.5 / 4, 5.5 / 6, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(decoded["16"]["yxhw"][0, 1, 2, 0], [1.5 / 2, 2.5 / 3, 0.5, 0.6], rtol=1e-6)


def test_decoder_survives_get_config_and_from_config_through_json():
    decoder = YoloDecoder({8: ((0.1, 0.2),), 16: ((0.3, 0.4), (0.5, 0.6))}, name="yolo_decoder")
    config = json.loads(json.dumps(decoder.get_config()))  # as a saved .keras file keeps it
    restored = YoloDecoder.from_config(config)
    assert restored.anchors == decoder.anchors
    assert restored.name == "yolo_decoder"
    by_registered_name = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(decoder)))
    )
    assert isinstance(by_registered_name, YoloDecoder)
    assert by_registered_name.anchors == decoder.anchors


def test_decoder_rejects_a_head_with_another_number_of_anchors():
    decoder = YoloDecoder({8: ((0.1, 0.2),)})
    with pytest.raises(ValueError, match="1 anchors but the head gives 3"):
        decoder({"8": np.zeros((1, 2, 2, 3, 6), "float32")})
