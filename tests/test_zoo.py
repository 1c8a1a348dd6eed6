"""The model zoo: every backbone fits every head, and each model is the published one.

Real TensorFlow, no mocks. The contract checks build small variants (narrow
widths, small images); the published parameter counts are checked at full
width on small images (a parameter count does not depend on the image size).
The slow tests run ``run.py --check`` in a fresh process, at full size.
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from helpers import run_cli, write_mobilenet_weights, write_tiny_plan

from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.params import ParamsError, build_params
from detplug.core.plan.specs import Chain, ImageSpec, LabelSpec, NoParams, SpecError
from detplug.plugins.backbones import (
    CSPDARKNET53,
    DARKNET53,
    EFFICIENTNETB0,
    KERAS_APP_LAYERS,
    MOBILENETV2,
    RESNET50,
    DarknetParams,
    KerasAppParams,
    MobileNetV2Params,
    mobilenetv2_channels,
)
from detplug.plugins.backbones.cspdarknet import cspdarknet53
from detplug.plugins.backbones.keras_apps import ImageNetPreprocessing, keras_app_backbone, mobilenetv2
from detplug.plugins.decoders import YOLO_DECODER, YOLOV4_DECODER, YoloV4DecoderParams
from detplug.plugins.decoders.yolo import YoloDecoder, YoloV4Decoder
from detplug.plugins.heads import PAN, YOLOV3_FPN, PanHeadParams, YoloV3HeadParams
from detplug.plugins.heads.pan import pan
from detplug.registry import load_factory

SIZES = ((64, 96), (128, 64))

#: Each backbone at a size that builds in about a second; the keras applications
#: have no width parameter except MobileNetV2's alpha.
BACKBONES = {
    "darknet53": (DARKNET53, DarknetParams(width=0.125, depth=0.34)),
    "cspdarknet53": (CSPDARKNET53, DarknetParams(width=0.125, depth=0.34)),
    "resnet50": (RESNET50, KerasAppParams()),
    "mobilenetv2": (MOBILENETV2, MobileNetV2Params(width=0.35)),
    "efficientnetb0": (EFFICIENTNETB0, KerasAppParams()),
}

#: Each head with the decoder it is published with.
HEADS = {
    "yolov3_fpn": (YOLOV3_FPN, YoloV3HeadParams(width=0.125), YOLO_DECODER, NoParams()),
    "pan": (PAN, PanHeadParams(width=0.125), YOLOV4_DECODER, YoloV4DecoderParams()),
}

def _chain(height: int, width: int, classes: tuple[str, ...] = ("car", "pedestrian", "cyclist")) -> Chain:
    image = ImageSpec(height, width)
    return Chain(
        image=image,
        labels=LabelSpec(classes, max_boxes=10),
        anchors=anchors_to_ratios(anchor_pixels("coco_yolov3"), image),
    )


def _trainable(model: keras.Model) -> int:
    """What PyTorch's summaries and Darknet count: kernels, biases, BN scale and offset
    (Keras' count_params adds the BN moving statistics)."""
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def _layers_of(model: keras.Model, kind: type) -> list[keras.layers.Layer]:
    """Every layer of ``kind`` in ``model``, looking inside nested models."""
    found = []
    for layer in model.layers:
        if isinstance(layer, kind):
            found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_layers_of(layer, kind))
    return found


_built_backbones: dict[tuple[str, int, int], tuple[dict, keras.Model]] = {}


def _backbone(name: str, height: int, width: int) -> tuple[dict, keras.Model]:
    """The backbone's declared features and its built model, built once per size."""
    key = (name, height, width)
    if key not in _built_backbones:
        component, params = BACKBONES[name]
        chain = _chain(height, width)
        _built_backbones[key] = (component.spec(params, chain), load_factory(component)(params, chain))
    return _built_backbones[key]


# -- every backbone x every head: declared specs equal built shapes --


def _pairs():
    for backbone in BACKBONES:
        for head in HEADS:
            for height, width in SIZES:
                yield pytest.param(backbone, head, height, width, id=f"{backbone}-{head}-{height}x{width}")


@pytest.mark.parametrize("backbone_name, head_name, height, width", list(_pairs()))
def test_declared_specs_equal_built_shapes_for_every_backbone_and_head(backbone_name, head_name, height, width):
    chain = _chain(height, width)
    features, backbone = _backbone(backbone_name, height, width)
    assert sorted(backbone.output) == sorted(str(stride) for stride in features) == ["16", "32", "8"]
    for stride, spec in features.items():
        assert tuple(backbone.output[str(stride)].shape) == (None, height // stride, width // stride, spec.channels)

    head_component, head_params, decoder_component, decoder_params = HEADS[head_name]
    chain = chain.evolve(features=features)
    head_specs = head_component.spec(head_params, chain)
    head = load_factory(head_component)(head_params, chain)
    for stride, spec in head_specs.items():
        assert tuple(head.output[str(stride)].shape) == (
            None, height // stride, width // stride, spec.anchors, spec.channels_per_anchor
        )

    chain = chain.evolve(head=head_specs)
    decoded_specs = decoder_component.spec(decoder_params, chain)
    decoder = load_factory(decoder_component)(decoder_params, chain)
    image = keras.Input((height, width, 3))
    decoded = decoder(head(backbone(image)))
    for stride, spec in decoded_specs.items():
        for name, channels in spec.channels().items():
            assert tuple(decoded[str(stride)][name].shape) == (
                None, height // stride, width // stride, spec.anchors, channels
            )


@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_heads_name_the_strides_they_consume_when_a_backbone_lacks_one(head_name):
    head_component, head_params, _, _ = HEADS[head_name]
    chain = _chain(64, 96).evolve(features={16: DARKNET53.spec(DarknetParams(), _chain(64, 96))[16]})
    with pytest.raises(SpecError, match="consumes backbone features at strides 8, 16 and 32") as error:
        head_component.spec(head_params, chain)
    assert (error.value.expected, error.value.found, error.value.upstream) == ((8, 16, 32), (16,), "backbone")


def test_backbones_reject_images_not_divisible_by_32():
    for component, params in BACKBONES.values():
        with pytest.raises(SpecError, match="multiples of 32"):
            component.spec(params, _chain(64, 80))


# -- CSPDarknet53 and YOLOv4 as published --


@pytest.fixture(scope="module")
def full_yolov4() -> tuple[keras.Model, keras.Model]:
    """CSPDarknet53 + SPP + PAN at width and depth 1 with COCO's 80 classes (yolov4.cfg)."""
    backbone = cspdarknet53((64, 64, 3))
    head = pan({key: tuple(t.shape[1:]) for key, t in backbone.output.items()},
               anchors_per_stride={8: 3, 16: 3, 32: 3}, num_classes=80)
    return backbone, head


#: yolov4.cfg's backbone as (kernel, in, out) per conv: every conv has BN (2 trainable
#: per output channel) and no bias. Stage 1 keeps full-width (64) branches and a
#: 32-wide residual bottleneck; stages 2-5 use half-width branches throughout.
def _cfg_csp_stage(channels_in: int, channels: int, blocks: int, first: bool) -> list[tuple[int, int, int]]:
    branch = channels if first else channels // 2
    hidden = channels // 2 if first else branch
    convs = [(3, channels_in, channels), (1, channels, branch), (1, channels, branch)]
    convs += [(1, branch, hidden), (3, hidden, branch)] * blocks
    return convs + [(1, branch, branch), (1, 2 * branch, channels)]


YOLOV4_CFG_BACKBONE = [(3, 3, 32)] + [
    conv
    for channels_in, channels, blocks, first in (
        (32, 64, 1, True), (64, 128, 2, False), (128, 256, 8, False), (256, 512, 8, False), (512, 1024, 4, False)
    )
    for conv in _cfg_csp_stage(channels_in, channels, blocks, first)
]


def test_cspdarknet53_matches_yolov4_cfg_conv_for_conv(full_yolov4):
    backbone, _ = full_yolov4
    convs = _layers_of(backbone, keras.layers.Conv2D)
    assert len(convs) == len(YOLOV4_CFG_BACKBONE) == 72
    built = [(conv.kernel_size[0], conv.kernel.shape[2], conv.filters) for conv in convs]
    assert sorted(built) == sorted(YOLOV4_CFG_BACKBONE)
    assert not any(conv.use_bias for conv in convs)
    activations = _layers_of(backbone, keras.layers.Activation)
    assert len(activations) == 72 and {layer.name.rsplit("_", 1)[1] for layer in activations} == {"mish"}


def test_cspdarknet53_has_26_6m_trainable_parameters_like_timm(full_yolov4):
    # The cfg table above sums to 26,617,184 (kernels + BN scale/offset). Compared against:
    # timm lists cspdarknet53, built from the same cfg, at 27.64M parameters including its
    # 1024 x 1000 + 1000 classifier; less that, 26.6M, the figure YOLOv4 Keras ports give
    # for the backbone's conv + BN. The exact figure is pinned by the full-model count below.
    expected = sum(k * k * cin * cout + 2 * cout for k, cin, cout in YOLOV4_CFG_BACKBONE)
    backbone, _ = full_yolov4
    assert expected == 26_617_184
    assert _trainable(backbone) == expected


def test_yolov4_has_the_published_parameter_count(full_yolov4):
    # YOLOv4 (CSPDarknet53 + SPP + PAN + head, 80 classes): 64,363,101 trainable parameters
    # as bubbliiiing/yolov4-pytorch's torchsummary reports it; 64,429,405 with the BN
    # moving statistics, as Keras ports of yolov4.cfg report "Total params".
    backbone, head = full_yolov4
    assert _trainable(backbone) + _trainable(head) == 64_363_101
    assert backbone.count_params() + head.count_params() == 64_429_405
    # yolov4.cfg has 110 convolutional layers: 72 in the backbone, 38 after it.
    assert len(_layers_of(head, keras.layers.Conv2D)) == 38
    assert [conv.use_bias for conv in _layers_of(head, keras.layers.Conv2D)].count(True) == 3


def test_pan_spp_pools_13_9_5_and_can_be_left_out():
    shapes = {"8": (8, 8, 16), "16": (4, 4, 32), "32": (2, 2, 64)}
    with_spp = pan(shapes, anchors_per_stride={8: 3, 16: 3, 32: 3}, num_classes=2, width=0.125)
    pools = _layers_of(with_spp, keras.layers.MaxPooling2D)
    assert [pool.pool_size for pool in pools] == [(13, 13), (9, 9), (5, 5)]
    assert all(pool.strides == (1, 1) for pool in pools)
    without = pan(shapes, anchors_per_stride={8: 3, 16: 3, 32: 3}, num_classes=2, width=0.125, spp=False)
    assert not _layers_of(without, keras.layers.MaxPooling2D)


# -- keras.applications backbones --


@pytest.mark.parametrize("width", [0.35, 0.75, 1.4])
def test_mobilenetv2_declared_channels_follow_keras_alpha(width):
    backbone = mobilenetv2((64, 64, 3), width=width)
    built = {int(key): tensor.shape[-1] for key, tensor in backbone.output.items()}
    assert built == mobilenetv2_channels(width)


@pytest.mark.parametrize("app", sorted(KERAS_APP_LAYERS))
def test_keras_app_feature_layers_sit_at_strides_8_16_32(app):
    backbone = keras_app_backbone(app, (64, 64, 3), **({"alpha": 0.35} if app == "mobilenetv2" else {}))
    trunk = backbone.get_layer(f"{app}_trunk")
    for stride, (layer_name, _) in KERAS_APP_LAYERS[app].items():
        assert trunk.get_layer(layer_name).output.shape[1] == 64 // stride


def test_preprocessing_gives_each_application_its_imagenet_input():
    images = np.random.default_rng(0).random((2, 4, 5, 3)).astype("float32")
    pixels = images * 255.0

    def run(style):
        return keras.ops.convert_to_numpy(ImageNetPreprocessing(style)(images))

    np.testing.assert_allclose(
        run("caffe"), keras.applications.resnet50.preprocess_input(pixels.copy()), rtol=1e-5, atol=1e-3
    )
    np.testing.assert_allclose(
        run("tf"), keras.applications.mobilenet_v2.preprocess_input(pixels.copy()), rtol=1e-5, atol=1e-5
    )
    # EfficientNet's original (TPU) preprocessing: (pixels - 255 mean) / (255 std), RGB.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(run("torch"), (pixels - 255 * mean) / (255 * std), rtol=1e-5, atol=1e-5)


def test_efficientnet_wrapper_drops_keras_own_normalisation_stem():
    backbone = keras_app_backbone("efficientnetb0", (64, 64, 3))
    assert not _layers_of(backbone, keras.layers.Normalization)
    assert not _layers_of(backbone, keras.layers.Rescaling)
    assert backbone.get_layer("efficientnetb0_preprocessing").style == "torch"


def test_keras_app_loads_weights_from_a_local_file(tmp_path):
    path = write_mobilenet_weights(tmp_path, (64, 64, 3))
    params = build_params(MobileNetV2Params, {"weights": str(path), "width": 0.35})
    backbone = load_factory(MOBILENETV2)(params, _chain(64, 64))
    loaded = backbone.get_layer("mobilenetv2_trunk").get_layer("Conv1").kernel
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded), 0.125)


@pytest.mark.parametrize(
    "weights, message", [("imagenet", "would download"), ("/no/such/file.h5", "no such file")]
)
def test_keras_app_weights_must_be_a_local_file(weights, message):
    with pytest.raises(ParamsError, match=message):
        build_params(KerasAppParams, {"weights": weights})


# -- the YOLOv4 decoder --


def _decode(decoder: YoloDecoder, raw_cell: list[float]) -> np.ndarray:
    raw = np.broadcast_to(np.asarray(raw_cell, "float32"), (1, 2, 2, 1, len(raw_cell)))
    return keras.ops.convert_to_numpy(decoder({"8": raw})["8"]["yxhw"])


def test_yolov4_decoder_stretches_the_centre_offset_by_scale_xy():
    decoder = YoloV4Decoder({8: ((0.25, 0.125),)}, scale_xy={8: 1.2})
    sigmoid = 1 / (1 + math.exp(-3.0))
    yxhw = _decode(decoder, [3.0, -1e4, 0.0, 0.0, 0.0, 0.0])
    # y = (1.2 * sigmoid(3) - 0.1 + row) / 2; x at sigmoid = 0 reaches -0.1 cells: past the border.
    assert yxhw[0, 1, 0, 0, 0] == pytest.approx((1.2 * sigmoid - 0.1 + 1) / 2, rel=1e-6)
    assert yxhw[0, 0, 1, 0, 1] == pytest.approx((-0.1 + 1) / 2, rel=1e-6)
    # Zero logits still give the cell centre.
    np.testing.assert_allclose(_decode(decoder, [0.0] * 6)[0, 1, 1, 0, :2], [0.75, 0.75], rtol=1e-6)


def test_yolov4_decoder_at_scale_1_is_the_yolo_decoder():
    raw_cell = [0.7, -2.0, 0.3, -0.4, 0.0, 1.0]
    yolo = _decode(YoloDecoder({8: ((0.25, 0.125),)}), raw_cell)
    yolov4 = _decode(YoloV4Decoder({8: ((0.25, 0.125),)}, scale_xy={8: 1.0}), raw_cell)
    np.testing.assert_allclose(yolov4, yolo, rtol=1e-6)


def test_yolov4_decoder_defaults_are_yolov4_cfg_per_stride_and_survive_json():
    chain = _chain(64, 96)
    chain = chain.evolve(head=YOLOV3_FPN.spec(YoloV3HeadParams(), chain.evolve(
        features=DARKNET53.spec(DarknetParams(), chain))))
    decoder = load_factory(YOLOV4_DECODER)(YoloV4DecoderParams(), chain)
    assert decoder.scale_xy == {8: 1.2, 16: 1.1, 32: 1.05}
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(decoder)))
    )
    assert isinstance(restored, YoloV4Decoder)
    assert (restored.scale_xy, restored.anchors) == (decoder.scale_xy, decoder.anchors)


def test_yolov4_decoder_spec_says_how_far_past_its_cell_a_centre_reaches():
    chain = _chain(64, 96)
    chain = chain.evolve(head=YOLOV3_FPN.spec(YoloV3HeadParams(), chain.evolve(
        features=DARKNET53.spec(DarknetParams(), chain))))
    # (scale - 1) / 2 cells: YOLOv5's 2 sigmoid - 0.5 reaches half a cell, YOLOv3's none.
    reach = {stride: spec.centre_reach for stride, spec in YOLOV4_DECODER.spec(
        YoloV4DecoderParams(scale_xy=2.0), chain).items()}
    assert reach == {8: 0.5, 16: 0.5, 32: 0.5}
    defaults = YOLOV4_DECODER.spec(YoloV4DecoderParams(), chain)
    assert [round(spec.centre_reach, 6) for _, spec in sorted(defaults.items())] == [0.1, 0.05, 0.025]
    assert all(spec.centre_reach == 0 for spec in YOLO_DECODER.spec(NoParams(), chain).values())


def test_yolov4_decoder_scale_xy_is_one_number_or_one_per_stride():
    assert build_params(YoloV4DecoderParams, {"scale_xy": 1.1}).scale_xy == (1.1,)
    assert build_params(YoloV4DecoderParams, {"scale_xy": [1, 1.5, 2]}).scale_xy == (1.0, 1.5, 2.0)
    with pytest.raises(ParamsError, match=">= 1"):
        build_params(YoloV4DecoderParams, {"scale_xy": 0.9})
    chain = _chain(64, 96)
    chain = chain.evolve(head=YOLOV3_FPN.spec(YoloV3HeadParams(), chain.evolve(
        features=DARKNET53.spec(DarknetParams(), chain))))
    with pytest.raises(SpecError, match="one per head stride") as error:
        YOLOV4_DECODER.spec(YoloV4DecoderParams(scale_xy=(1.1, 1.2)), chain)
    assert error.value.field == "scale_xy"


# -- plans --


@pytest.mark.slow
def test_yolov3_coco_plan_checks_with_yolov3s_parameter_count(tmp_path):
    result = run_cli("--plan", "yolov3_coco", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image 416x416x3, 80 classes" in result.stdout
    assert "/8x3x85  /16x3x85  /32x3x85" in result.stdout
    assert "parameters: 62001757" in result.stdout.splitlines()


@pytest.mark.slow
def test_kitti_yolov3_plan_checks_at_384x1248(tmp_path):
    result = run_cli("--plan", "kitti_yolov3", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image 384x1248x3, 3 classes" in result.stdout
    assert "/8x256  /16x512  /32x1024" in result.stdout


@pytest.mark.slow
def test_a_yolov4_plan_from_the_zoo_passes_check(tmp_path):
    plan = write_tiny_plan(tmp_path)
    text = plan.read_text()
    text = text.replace('name = "darknet53"', 'name = "cspdarknet53"')
    text = text.replace('{ name = "yolov3_fpn", width = 0.125 }', '{ name = "pan", width = 0.125 }')
    text = text.replace('{ name = "yolo" }', '{ name = "yolov4", scale_xy = 1.1 }')
    plan.write_text(text)
    result = run_cli("--plan", str(plan), "--check")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cspdarknet53" in result.stdout and "pan" in result.stdout and "yolov4" in result.stdout
    assert "every declared spec matches the built tensor shapes" in result.stdout
