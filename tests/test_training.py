"""A plan trains end to end through the CLI, checkpoints every epoch, and resumes after a kill."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import hook_plugin_env, kill_at, run_cli, write_tiny_plan

pytestmark = pytest.mark.slow


def history(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def state(workdir: Path) -> dict:
    return json.loads((workdir / "checkpoints" / "state.json").read_text())


def train(plan: Path, workdir: Path, cache: Path, env: dict | None = None):
    return run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache), env=env)


def test_two_period_plan_trains_checkpoints_and_a_second_run_trains_nothing(finished, tmp_path):
    plan, trained, cache = finished
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)

    rows = history(workdir)
    assert [(row["epoch"], row["period"]) for row in rows] == [("1", "1"), ("2", "2")]
    assert [float(row["learning_rate"]) for row in rows] == [1e-3, 1e-4]
    for column in ("ciou", "objectness", "category", "total", "val_total", "ciou/8", "seconds"):
        assert all(float(row[column]) >= 0 for row in rows), column
    checkpoints = workdir / "checkpoints"
    assert state(workdir)["epoch"] == 2 and state(workdir)["snapshots"] == ["ep01", "ep02"]
    assert (checkpoints / "ep01.weights.h5").is_file() and (checkpoints / "ep02" / "ckpt.index").is_file()
    lock = (workdir / "plan.lock.toml").read_text()
    assert "tensorflow =" in lock and "keras =" in lock and 'detplug = "0.1.0"' in lock
    assert (workdir / "tb").is_dir() and any((workdir / "tb").iterdir())

    second = train(plan, workdir, cache)
    assert second.returncode == 0
    assert "every period of plan 'tiny' is done (2/2 epochs" in second.stdout
    assert len(history(workdir)) == 2


def test_strides_without_ground_truth_are_reported_before_training(finished):
    # The tiny plan keeps COCO's anchors (fitted to 416x416) at 64x96: every object goes to
    # stride 8, as the static check foresees and the targets of epoch 1 confirm.
    out = (finished[1].parent / "stdout.txt").read_text().splitlines()
    static = [line for line in out if line.startswith("warning: ") and "anchors 'coco_yolov3', stride" in line]
    assert [line.split("stride ")[1].split(":")[0] for line in static] == ["16", "32"]
    assert "116x90, 156x198, 373x326 px are larger than the 64x96 image" in static[1]
    report = [line for line in out if line.startswith("targets of epoch 1 (8 images, best anchor")]
    assert len(report) == 1 and report[0].endswith("16: 0; 32: 0"), report
    assert int(report[0].split("positives per stride 8: ")[1].split(";")[0]) > 0
    empty = [line for line in out if "received no positive in the targets of epoch 1" in line]
    assert [line.split("stride ")[1].split(" ")[0] for line in empty] == ["16", "32"]
    assert all("`run.py anchors --plan " in line and "--write`" in line for line in static + empty)
    # All of it before the first epoch trains.
    first_epoch = next(index for index, line in enumerate(out) if line.startswith("epoch 1/2:"))
    assert max(out.index(line) for line in static + report + empty) < first_epoch


def test_killed_between_periods_skips_the_finished_period(tmp_path):
    plan, workdir, cache = write_tiny_plan(tmp_path, trainer="eager"), tmp_path / "run", tmp_path / "cache"
    env = hook_plugin_env(tmp_path / "plugin", "killer", kill_at("detplug_period_start", "index == 1"))
    assert train(plan, workdir, cache, env=env).returncode == -9
    assert state(workdir)["epoch"] == 1 and state(workdir)["snapshots"] == ["ep01"]

    resumed = train(plan, workdir, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "period 1 (synth, epochs 1-1) is done" in resumed.stdout
    assert "period 2/2: synth, epochs 2-2 of 2" in resumed.stdout
    assert state(workdir)["epoch"] == 2


def test_missing_data_folder_is_one_clear_error(tmp_path):
    plan = write_tiny_plan(tmp_path)
    result = run_cli("--plan", str(plan), "--workdir", str(tmp_path / "run"), "--data-root", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert f"--data-root {tmp_path / 'nope'} is not a folder" in result.stderr
    assert not (tmp_path / "run").exists()


LYING_BACKBONE = '''
from detplug import Component, FeatureSpec, hookimpl
from detplug.plugins.backbones import DarknetParams

PLUGIN_API = 1


def spec(params, chain):
    """Claims 99 channels at every stride; the Darknet-53 it builds has others."""
    return {stride: FeatureSpec(stride, 99) for stride in (8, 16, 32)}


LIAR = Component(kind="backbone", name="liar", summary="a backbone whose spec lies about its channels",
                 params=DarknetParams, spec=spec, factory="detplug.plugins.backbones.darknet:darknet53_from_params")


@hookimpl
def detplug_components():
    return [LIAR]
'''


def test_training_builds_and_compares_the_model_before_it_prepares_any_data(tmp_path):
    from helpers import make_plugin_package, pythonpath_env

    env = pythonpath_env(make_plugin_package(tmp_path / "plugin", "liar-backbone", {"liar_backbone": LYING_BACKBONE}))
    plan = write_tiny_plan(tmp_path)
    plan.write_text(plan.read_text().replace('name = "darknet53"', 'name = "liar"'))
    cache = tmp_path / "cache"
    result = train(plan, tmp_path / "run", cache, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "backbone 'liar'" in result.stderr and "the spec function and the factory disagree" in result.stderr
    assert not cache.exists() or not any(cache.rglob("*")), sorted(cache.rglob("*"))
