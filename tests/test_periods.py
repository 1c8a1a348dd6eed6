"""Periods that switch datasets: another class count and image size in the second period.

The shared run (conftest's ``switched``) trains helpers.SWITCH_PLAN: one epoch on five
classes of shapes at 64x96, then two on the synthetic sample's three classes at 96x128.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import SHAPE_NAMES, hook_plugin_env, kill_at, read_weights, run_cli, write_switch_plan
from PIL import Image

EXACT = ["--set", "train.deterministic=true", "--set", "train.ema=true"]


def _output_convolutions(weights: dict, channels: int) -> int:
    """Parameters of the head's output convolutions (kernel and bias), found as the arrays
    whose last axis has ``channels`` = anchors x (5 + classes)."""
    return sum(int(array.size) for array in weights.values() if array.shape[-1:] == (channels,))


def test_check_walks_one_chain_per_dataset_and_prints_each_periods(tmp_path):
    plan = write_switch_plan(tmp_path)
    static = run_cli("check", "--plan", str(plan), "--static")
    assert static.returncode == 0, static.stderr[-3000:]
    assert "period 1: shapes: image 64x96x3, 5 classes (red, green, blue, yellow, cyan); outputs 8x12x3 at " \
           "stride 8, 4x6x3 at stride 16, 2x3x3 at stride 32" in static.stdout
    assert "period 2: synth: image 96x128x3, 3 classes (Car, Pedestrian, Cyclist); outputs 12x16x3 at stride 8" \
           in static.stdout and "the model is rebuilt for it" in static.stdout
    assert "spec chain of dataset 'synth'" in static.stdout and "/8x3x(yxhw 4, obj 1, cat 3)" in static.stdout

    symbolic = run_cli("--plan", str(plan), "--check")
    assert symbolic.returncode == 0, symbolic.stderr[-3000:]
    line = next(line for line in symbolic.stdout.splitlines() if line.startswith("period 2 (synth): symbolic"))
    assert "from period 1's model:" in line and "new: the 3 class-dependent layers" in line
    assert "5 -> 3 classes" in line


def test_a_period_on_other_classes_rebuilds_the_class_dependent_layers_and_carries_the_rest(switched):
    checkpoints = switched["workdir"] / "checkpoints"
    first, second = read_weights(checkpoints / "ep01.weights.h5"), read_weights(checkpoints / "ep03.weights.h5")
    # Three anchors per stride: 3 x (5 + 5) output channels, then 3 x (5 + 3).
    assert _output_convolutions(first, 30) > 0 and _output_convolutions(first, 24) == 0
    new = _output_convolutions(second, 24)
    total = sum(int(array.size) for array in second.values())
    assert new > 0 and len(first) == len(second)
    line = next(line for line in switched["stdout"].splitlines() if "the model is rebuilt" in line)
    assert line.startswith("period 2: the model is rebuilt for dataset 'synth' (96x128 images, 3 classes): ")
    assert f"{total - new:,} of {total:,} parameters carried over" in line
    assert f"({new:,} parameters, 5 -> 3 classes); a fresh optimizer starts" in line
    # Every weight that does not count classes has the same shape in both periods' models.
    for (key, before), after in zip(first.items(), second.values()):
        assert before.shape == after.shape or before.shape[-1] == 30, key
    state = json.loads((checkpoints / "state.json").read_text())
    assert state["periods"][1]["image"] == [96, 128, 3] and state["periods"][1]["classes"] == [
        "Car", "Pedestrian", "Cyclist"]
    assert "image" not in state["periods"][0]


@pytest.mark.slow(seconds=110)
def test_kill_at_the_switch_and_inside_the_second_period_resumes_bit_for_bit(switched, tmp_path):
    plan, cache = switched["plan"], switched["cache"]
    workdir = tmp_path / "killed"

    def train(*, kill_at_epoch: int | None = None):
        env = None
        if kill_at_epoch is not None:
            env = hook_plugin_env(tmp_path / f"plugin{kill_at_epoch}", "killer",
                                  kill_at("detplug_epoch_end", f"epoch == {kill_at_epoch}"))
        return run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache), *EXACT, env=env)

    # Killed as epoch 1, period 1's last, is logged (after its checkpoint): resumes from it,
    # into period 1's model.
    assert train(kill_at_epoch=1).returncode == -9
    # Then killed as epoch 2 is logged: resumes from epoch 2's checkpoint, written by period 2's model.
    at_switch = train(kill_at_epoch=2)
    assert at_switch.returncode == -9
    assert "resuming plan 'switch' after epoch 1" in at_switch.stdout
    assert "period 2: the model is rebuilt for dataset 'synth'" in at_switch.stdout
    resumed = train()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming plan 'switch' after epoch 2" in resumed.stdout
    assert "the model is rebuilt" not in resumed.stdout and "epoch 3/3:" in resumed.stdout

    for snapshot in ("ep01.weights.h5", "ep03.weights.h5"):
        expected = read_weights(switched["workdir"] / "checkpoints" / snapshot)
        found = read_weights(workdir / "checkpoints" / snapshot)
        assert expected.keys() == found.keys() and len(expected) > 10
        for key in expected:
            assert np.array_equal(expected[key], found[key]), f"{snapshot}: {key} differs"


def test_changing_the_dataset_of_a_started_period_is_a_conflict(switched, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(switched["workdir"], workdir)
    result = run_cli("--plan", str(switched["plan"]), "--workdir", str(workdir), "--cache-dir",
                     str(switched["cache"]), "--set", "datasets.synth.image_size=[64, 128]")
    assert result.returncode != 0
    assert "period 2 has trained" in result.stderr and "image [96, 128, 3] -> [64, 128, 3]" in result.stderr


@pytest.mark.slow(seconds=40)
def test_evaluate_and_export_use_the_model_of_the_checkpoints_period(switched, tmp_path):
    common = ("--plan", str(switched["plan"]), "--workdir", str(switched["workdir"]),
              "--cache-dir", str(switched["cache"]))
    early = run_cli(*common, "--evaluate", "--checkpoint", "ep01")
    assert early.returncode == 0, early.stderr[-3000:]
    assert "checkpoint 'ep01', shapes val split (2 images)" in early.stdout
    # --predict loads the model as --export does (use.py's _model), so the export stands for both.
    image = switched["folder"] / "shapes" / "images" / "val" / "0000.png"
    # Every box kept (score threshold ~0), so the detections name the checkpoint's classes.
    exported = run_cli(*common, "--export", str(tmp_path / "saved"), "--checkpoint", "ep01",
                       "--set", "evaluation.score_threshold=1e-6")
    assert exported.returncode == 0, exported.stderr[-3000:]
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    outputs = served(images=tf.constant(np.asarray(Image.open(image).convert("RGB"))[None]))
    names = {name.decode() for name in outputs["class_names"].numpy()[0][:int(outputs["num_detections"][0])]}
    assert names and names <= set(SHAPE_NAMES)
