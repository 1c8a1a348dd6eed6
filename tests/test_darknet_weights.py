"""Darknet .weights files: read into the plan's model exactly as Darknet computes, every byte
accounted for. The files are written here with numpy, for a tiny yolov3.cfg-shaped network
whose forward pass is also computed here with numpy, independently of Keras."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import run_cli, write_mobilenet_weights, write_tiny_plan

from detplug.core.model.darknet_weights import (
    DARKNET_BN_EPSILON,
    DarknetWeightsError,
    layout,
    load_darknet,
    read_header,
)
from detplug.core.plan.plan_file import find_plan
from detplug.plugins.backbones import (
    DARKNET53_BLOCKS,
    DARKNET53_CHANNELS,
    DARKNET53_STEM,
    scaled_channels,
    scaled_depth,
)
from detplug.plugins.backbones.darknet import darknet53, darknet53_darknet_layout
from detplug.plugins.heads import YOLOV3_HEAD_CHANNELS
from detplug.plugins.heads.yolov3 import yolov3_fpn, yolov3_fpn_darknet_layout

WIDTH, DEPTH, CLASSES, ANCHORS, SIZE = 0.125, 0.34, 2, 3, 32


# -- the network as a Darknet cfg, and its forward pass in numpy ------------------------


def cfg() -> list[dict]:
    """yolov3.cfg's sections for the tiny network, in file order."""
    sections: list[dict] = [{"type": "conv", "filters": scaled_channels(DARKNET53_STEM, WIDTH), "size": 3,
                             "stride": 1}]
    for channels, blocks in zip(DARKNET53_CHANNELS, DARKNET53_BLOCKS):
        filters = scaled_channels(channels, WIDTH)
        sections.append({"type": "conv", "filters": filters, "size": 3, "stride": 2})
        for _ in range(scaled_depth(blocks, DEPTH)):
            sections += [{"type": "conv", "filters": filters // 2, "size": 1, "stride": 1},
                         {"type": "conv", "filters": filters, "size": 3, "stride": 1},
                         {"type": "shortcut", "from": -3}]
        downsamplings = sum(1 for s in sections if s["type"] == "conv" and s["stride"] == 2)
        sections.append({"type": "mark", "stride": 2**downsamplings})
    for stride in (32, 16, 8):
        channels = scaled_channels(YOLOV3_HEAD_CHANNELS[stride], WIDTH)
        if stride != 32:
            sections += [{"type": "upsample"}, {"type": "route_skip", "stride": stride}]
        for index in range(5):
            sections.append({"type": "conv", "filters": channels if index % 2 == 0 else 2 * channels,
                             "size": 1 if index % 2 == 0 else 3, "stride": 1})
        sections += [{"type": "branch"},
                     {"type": "conv", "filters": 2 * channels, "size": 3, "stride": 1},
                     {"type": "conv", "filters": ANCHORS * (5 + CLASSES), "size": 1, "stride": 1, "linear": True},
                     {"type": "yolo", "stride": stride}]
        if stride != 8:
            sections += [{"type": "route_branch"},
                         {"type": "conv", "filters": scaled_channels(YOLOV3_HEAD_CHANNELS[stride // 2], WIDTH),
                          "size": 1, "stride": 1}]
    return sections


def random_weights(sections: list[dict], rng: np.random.Generator) -> list[dict]:
    """Darknet's per-conv arrays, for each conv section in order."""
    weights, channels = [], 3
    skips, branch = {}, None
    for section in sections:
        kind = section["type"]
        if kind == "mark":
            skips[section["stride"]] = channels
        elif kind == "branch":
            branch = channels
        elif kind == "route_branch":
            channels = branch
        elif kind == "route_skip":
            channels += skips[section["stride"]]
        elif kind == "conv":
            n, size = section["filters"], section["size"]
            entry = {"kernel": rng.normal(0, 0.5 / np.sqrt(channels * size * size), (n, channels, size, size))}
            if section.get("linear"):
                entry["bias"] = rng.normal(0, 0.1, n)
            else:
                entry.update(beta=rng.normal(0, 0.1, n), gamma=rng.uniform(0.5, 1.5, n),
                             mean=rng.normal(0, 0.1, n), variance=rng.uniform(0.2, 1.5, n))
            weights.append({name: value.astype(np.float32) for name, value in entry.items()})
            channels = n
    return weights


def write_weights(path: Path, weights: list[dict], *, major: int = 0, minor: int = 2, seen: int = 32013312,
                  extra: bytes = b"") -> Path:
    header = struct.pack("<3i", major, minor, 0) + struct.pack("<q" if major * 10 + minor >= 2 else "<i", seen)
    body = b"".join(
        np.concatenate([*(entry[name] for name in ("beta", "gamma", "mean", "variance") if name in entry),
                        *([entry["bias"]] if "bias" in entry else []), entry["kernel"].ravel()]).tobytes()
        for entry in weights
    )
    path.write_bytes(header + body + extra)
    return path


def conv2d(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Darknet's convolution: x (H, W, C), kernel (N, C, k, k), padding k // 2 all round."""
    n, c, k, _ = kernel.shape
    pad = k // 2
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    height = (x.shape[0] + 2 * pad - k) // stride + 1
    width = (x.shape[1] + 2 * pad - k) // stride + 1
    out = np.zeros((height, width, n))
    for i in range(k):
        for j in range(k):
            window = padded[i: i + stride * height: stride, j: j + stride * width: stride, :]
            out += window @ kernel[:, :, i, j].T
    return out


def darknet_forward(image: np.ndarray, sections: list[dict], weights: list[dict]) -> dict[int, np.ndarray]:
    """The network's [yolo] inputs, by stride, as Darknet computes them (float64)."""
    x, outputs, history = image.astype(np.float64), {}, []
    skips, branch, convs = {}, None, iter(weights)
    for section in sections:
        kind = section["type"]
        if kind == "conv":
            entry = next(convs)
            x = conv2d(x, entry["kernel"].astype(np.float64), section["stride"])
            if "bias" in entry:
                x = x + entry["bias"]
            else:
                x = (x - entry["mean"]) / (np.sqrt(entry["variance"].astype(np.float64)) + DARKNET_BN_EPSILON)
                x = x * entry["gamma"] + entry["beta"]
                x = np.where(x > 0, x, 0.1 * x)  # leaky ReLU
        elif kind == "shortcut":
            x = x + history[section["from"]]
        elif kind == "mark":
            skips[section["stride"]] = x
        elif kind == "branch":
            branch = x
        elif kind == "route_branch":
            x = branch
        elif kind == "upsample":
            x = x.repeat(2, axis=0).repeat(2, axis=1)
        elif kind == "route_skip":
            x = np.concatenate([x, skips[section["stride"]]], axis=-1)
        elif kind == "yolo":
            outputs[section["stride"]] = x
        history.append(x)
    return outputs


# -- the Keras side ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def network():
    backbone = darknet53((SIZE, SIZE, 3), width=WIDTH, depth=DEPTH)
    shapes = {key: tuple(tensor.shape[1:]) for key, tensor in backbone.output.items()}
    head = yolov3_fpn(shapes, anchors_per_stride={8: ANCHORS, 16: ANCHORS, 32: ANCHORS}, num_classes=CLASSES,
                      width=WIDTH)
    image = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(image, head(backbone(image)))
    parts = [layout(backbone, darknet53_darknet_layout(backbone), "backbone 'darknet53'"),
             layout(head, yolov3_fpn_darknet_layout(head), "head 'yolov3_fpn'")]
    return model, backbone, head, parts


def test_a_darknet_file_gives_the_keras_model_darknets_own_outputs(network, tmp_path):
    model, _, _, parts = network
    sections = cfg()
    weights = random_weights(sections, np.random.default_rng(0))
    assert len(weights) == sum(len(part.convs) for part in parts)  # 52 + 23 convolutions in yolov3.cfg
    path = write_weights(tmp_path / "tiny.weights", weights)
    loaded = load_darknet(path, parts)
    assert loaded.parameters == model.count_params() and loaded.skipped == ()
    image = np.random.default_rng(1).uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32)
    found = model(image[None], training=False)
    expected = darknet_forward(image, sections, weights)
    for stride, darknet in expected.items():
        grid = darknet.reshape(*darknet.shape[:2], ANCHORS, 5 + CLASSES)
        ours = grid[..., [1, 0, 3, 2, *range(4, 5 + CLASSES)]]  # Darknet's x, y, w, h -> our y, x, h, w
        keras_out = np.asarray(found[str(stride)][0])
        assert np.max(np.abs(keras_out - ours)) <= 1e-4 * max(1.0, float(np.max(np.abs(ours)))), stride


def test_a_backbone_only_file_loads_the_backbone_and_says_so(network, tmp_path):
    model, backbone, head, parts = network
    weights = random_weights(cfg(), np.random.default_rng(2))[: len(parts[0].convs)]
    before = [w.copy() for w in head.get_weights()]
    loaded = load_darknet(write_weights(tmp_path / "backbone.conv.74", weights), parts)
    assert loaded.parts == (parts[0],) and loaded.skipped == ("head 'yolov3_fpn'",)
    assert "not in the file, left as they were: head 'yolov3_fpn'" in loaded.describe(Path("f"))
    assert all(np.array_equal(a, b) for a, b in zip(before, head.get_weights()))
    stem = backbone.get_layer("stem_conv").kernel.numpy()
    assert np.array_equal(stem, weights[0]["kernel"].transpose(2, 3, 1, 0))


@pytest.mark.parametrize(("extra", "cut", "message"), [
    (b"\0\0\0\0", 0, "(more bytes than the model holds)"),
    (b"", 4, "bytes for the whole model, or"),
])
def test_a_file_with_bytes_left_over_or_short_is_an_error_naming_both_sizes(network, tmp_path, extra, cut, message):
    model, _, _, parts = network
    weights = random_weights(cfg(), np.random.default_rng(3))
    path = write_weights(tmp_path / "odd.weights", weights, extra=extra)
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])
    before = [w.copy() for w in model.get_weights()]
    whole = 20 + 4 * model.count_params()
    with pytest.raises(DarknetWeightsError, match=rf"is {whole + len(extra) - cut:,} bytes.*{whole:,} bytes for the "
                                                  rf"whole model"):
        load_darknet(path, parts)
    with pytest.raises(DarknetWeightsError, match=re.escape(message)):
        load_darknet(path, parts)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing assigned


def test_header_variants_old_files_count_seen_in_four_bytes(network, tmp_path):
    path = tmp_path / "h.weights"
    path.write_bytes(struct.pack("<3iq", 0, 2, 5, 2**40))
    assert (read_header(path.read_bytes(), path).seen, read_header(path.read_bytes(), path).size) == (2**40, 20)
    path.write_bytes(struct.pack("<3ii", 0, 1, 0, 7))
    assert (read_header(path.read_bytes(), path).seen, read_header(path.read_bytes(), path).size) == (7, 16)
    path.write_bytes(struct.pack("<2i", 0, 2))
    with pytest.raises(DarknetWeightsError, match="8 bytes is too short for a Darknet header"):
        read_header(path.read_bytes(), path)
    model, _, _, parts = network
    weights = random_weights(cfg(), np.random.default_rng(4))
    old = write_weights(tmp_path / "old.weights", weights, major=0, minor=1, seen=1000)
    loaded = load_darknet(old, parts)
    assert loaded.header.describe() == "darknet 0.1.0, seen 1,000 images"
    assert loaded.parameters == model.count_params()


@pytest.mark.slow
def test_import_weights_writes_the_plans_keras_weights_and_nothing_when_the_file_does_not_fit(tmp_path):
    from detplug.core.model.assemble import build_model
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.registry import Registry

    plan_path = write_tiny_plan(tmp_path)
    plan = load_plan(plan_path)
    parameters = build_model(static_check(plan, resolve_components(plan, Registry.discover()))).count_params()
    values = np.random.default_rng(5).normal(0, 0.05, parameters).astype(np.float32)
    values[:] = np.abs(values)  # batch-norm variances must not be negative
    weights = tmp_path / "tiny.weights"
    weights.write_bytes(struct.pack("<3iq", 0, 2, 0, 0) + values.tobytes())
    out = tmp_path / "out" / "tiny.weights.h5"
    result = run_cli("--plan", str(plan_path), "--import-weights", str(weights), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"loaded {parameters:,} parameters from {weights}" in result.stdout
    assert "backbone 'darknet53'" in result.stdout and "head 'yolov3_fpn'" in result.stdout
    assert out.is_file()
    out.unlink()
    weights.write_bytes(weights.read_bytes() + b"\0\0\0\0")
    result = run_cli("import-weights", "--plan", str(plan_path), str(weights), "--out", str(out))
    assert result.returncode == 2 and f"is {20 + 4 * parameters + 4:,} bytes" in result.stderr
    assert not out.exists() and not any(out.parent.iterdir())


def test_yolov3_coco_takes_yolov3_weights_and_darknet53_conv_74_by_their_sizes():
    """The published files' sizes: yolov3.weights 248,007,048 bytes, darknet53.conv.74
    162,482,580 (both with the 20-byte header of darknet 0.2)."""
    from detplug.core.model.assemble import build_parts
    from detplug.core.model.darknet_weights import expected_sizes
    from detplug.core.model.init_from import darknet_parts

    checked = checked_plan(find_plan("yolov3_coco"))
    built = build_parts(checked)
    parts, unmapped = darknet_parts(checked, built)
    assert built.model.count_params() == 62_001_757 and unmapped == []
    assert [len(part.convs) for part in parts] == [52, 23]
    assert expected_sizes(parts, 20) == {"the whole model": 248_007_048, "backbone 'darknet53' alone": 162_482_580}


def checked_plan(path: Path, overrides: tuple[str, ...] = ()):
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.registry import Registry

    plan = load_plan(path, overrides=list(overrides))
    return static_check(plan, resolve_components(plan, Registry.discover()))


def test_init_from_a_darknet_file_of_another_class_count_carries_all_but_the_output_convolutions(tmp_path):
    from detplug.core.model.assemble import build_parts
    from detplug.core.model.init_from import darknet_parts, initialise

    plan_path = write_tiny_plan(tmp_path)  # 3 classes
    checked = checked_plan(plan_path)
    built = build_parts(checked)
    parts, _ = darknet_parts(checked, built)
    # A 5-class file for the same network: each output conv has 3 anchors x (5 + 5) filters.
    outputs = [conv for part in parts for conv in part.convs if conv.channel_order is not None]
    fresh = sum(conv.parameters for conv in outputs)
    floats = built.model.count_params() - fresh + sum(conv.parameters // 8 * 10 for conv in outputs)
    values = np.abs(np.random.default_rng(6).normal(0, 0.05, floats)).astype(np.float32)
    source = tmp_path / "five_classes.weights"
    source.write_bytes(struct.pack("<3iq", 0, 2, 0, 0) + values.tobytes())

    checked = checked_plan(plan_path, (f"model.init_from={str(source)!r}",))
    built = build_parts(checked)
    report = initialise(checked, built)
    total = built.model.count_params()
    assert (report.carried, report.total) == (total - fresh, total)
    assert report.new == ("the 3 output convolutions head32_out_conv, head16_out_conv, head8_out_conv "
                          "(5 -> 3 classes)",)
    assert dict((label, carried) for label, carried, _ in report.parts)["backbone 'darknet53'"] == \
        built.backbone.count_params()
    stem = built.backbone.get_layer("stem_conv").kernel.numpy()  # after the stem's 4 x 8 batch-norm values
    assert np.array_equal(stem, values[32: 32 + stem.size].reshape(8, 3, 3, 3).transpose(2, 3, 1, 0))
    untouched = build_parts(checked_plan(plan_path)).head.get_layer("head8_out_conv").get_weights()[1]
    assert np.array_equal(built.head.get_layer("head8_out_conv").get_weights()[1], untouched)  # the prior bias

    result = run_cli("--plan", str(plan_path), "--check", "--set", f"model.init_from={str(source)!r}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"init_from {source}: {total - fresh:,} of {total:,} parameters carried over" in result.stdout
    assert "new: the 3 output convolutions" in result.stdout


def test_a_missing_init_from_is_one_clear_error_naming_the_path(tmp_path):
    plan_path = write_tiny_plan(tmp_path)
    result = run_cli("check", "--plan", str(plan_path), "--static", "--set", "model.init_from='gone/yolov3.weights'")
    assert result.returncode == 2
    assert "model.init_from: gone/yolov3.weights does not exist" in result.stderr


@pytest.mark.slow(seconds=60)
def test_init_from_a_runs_checkpoint_or_weights_h5_starts_a_new_run_from_it(finished, tmp_path):
    plan, run, cache = finished
    snapshot = run / "checkpoints" / "ep02"
    for source in (snapshot, run / "checkpoints" / "ep02.weights.h5"):
        result = run_cli("--plan", str(plan), "--check", "--set", f"model.init_from={str(source)!r}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"init_from {source}: " in result.stdout and "nothing starts fresh" in result.stdout
    wider = run_cli("--plan", str(plan), "--check", "--set", f"model.init_from={str(snapshot)!r}",
                    "--set", "model.backbone.width=0.25")
    assert wider.returncode == 2 and f"model.init_from: {snapshot}: weight layers/" in wider.stderr
    assert "does not depend on the class count" in wider.stderr
    fewer = run_cli("--plan", str(plan), "--check", "--set", f"model.init_from={str(snapshot)!r}",
                    "--set", 'datasets.synth.classes=["Car", "Pedestrian"]')
    assert fewer.returncode == 0, fewer.stderr[-3000:]
    new = fewer.stdout.split("new: ", 1)[1].splitlines()[0]
    assert new.startswith("the 3 class-dependent layers ") and new.endswith(" (3 -> 2 classes)")
    assert all(f"head{stride}_out_conv" in new for stride in (8, 16, 32))
    result = run_cli("--plan", str(plan), "--workdir", str(tmp_path / "new"), "--cache-dir", str(cache),
                     "--set", f"model.init_from={str(snapshot)!r}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"init_from {snapshot}: " in result.stdout
    assert "val_loss" in result.stdout


@pytest.mark.slow(seconds=40)
def test_kitti_from_coco_checks_with_a_yolov3_weights_sized_file_and_carries_all_but_the_outputs(tmp_path):
    """A file the size of Darknet's yolov3.weights (zeros: only its layout matters here)."""
    weights = tmp_path / "weights" / "yolov3.weights"
    weights.parent.mkdir()
    with weights.open("wb") as handle:
        handle.write(struct.pack("<3iq", 0, 2, 0, 32013312))
        handle.truncate(248_007_048)
    result = run_cli("--plan", "kitti_from_coco", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("init_from weights/yolov3.weights: 61,544,032 of 61,587,112 parameters carried over (backbone "
            "'darknet53' 40,620,640 of 40,620,640; head 'yolov3_fpn' 20,923,392 of 20,966,472); new: the 3 output "
            "convolutions head32_out_conv, head16_out_conv, head8_out_conv (80 -> 3 classes)") in result.stdout


def test_init_from_composes_with_a_keras_app_backbones_own_weights_and_the_report_names_both(tmp_path):
    from detplug.core.model.assemble import build_parts
    from detplug.core.model.init_from import initialise

    own = write_mobilenet_weights(tmp_path, (64, 96, 3))
    backbone = f"model.backbone={{ name = \"mobilenetv2\", width = 0.35, weights = \"{own}\" }}"
    plan_path = write_tiny_plan(tmp_path)

    def conv1(parts) -> np.ndarray:
        trunk = parts.backbone.get_layer("mobilenetv2_trunk")
        return keras.ops.convert_to_numpy(trunk.get_layer("Conv1").kernel)

    # The backbone's own weights alone, then a run's weights over them: init_from replaces them.
    alone = build_parts(checked_plan(plan_path, (backbone,)))
    np.testing.assert_array_equal(conv1(alone), 0.125)
    other = tmp_path / "other.weights.h5"
    for weight in alone.backbone.weights:
        weight.assign(np.full(weight.shape, 0.5, "float32"))
    alone.model.save_weights(other)

    checked = checked_plan(plan_path, (backbone, f"model.init_from=\"{other}\""))
    parts = build_parts(checked)
    report = initialise(checked, parts)
    line = report.describe()
    assert f"backbone 'mobilenetv2' loaded its own weights {own} (model.backbone.weights): init_from replaces " \
           f"them all" in line and line.startswith(f"init_from {other}: ")
    np.testing.assert_array_equal(conv1(parts), 0.5)
