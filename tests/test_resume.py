"""Training you can trust: a resumed run equals an uninterrupted one, and checkpoints
survive kills, corruption and plan changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    hook_plugin_env,
    kill_at,
    kill_inside_checkpoint_write,
    read_weights,
    run_cli,
    shared_folder,
    signal_at_step,
    write_tiny_plan,
)

pytestmark = pytest.mark.slow

EXACT = ["--set", "train.deterministic=true", "--set", "train.ema=true"]


def train(plan: Path, workdir: Path, cache: Path, *extra: str, env: dict | None = None):
    return run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache), *extra, env=env)


def state(workdir: Path) -> dict:
    return json.loads((workdir / "checkpoints" / "state.json").read_text())


def _train_straight(folder: Path) -> None:
    plan = write_tiny_plan(folder, trainer="graph", images=24, epochs1=2, epochs2=1)
    result = train(plan, folder / "run", folder / "cache", *EXACT)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def straight(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The tiny plan (24 images: four steps an epoch, 2+1 epochs, graph trainer) trained without
    a stop, deterministic and with EMA: (plan, run folder, cache)."""
    folder = shared_folder(tmp_path_factory, "straight", _train_straight)
    return folder / "tiny.toml", folder / "run", folder / "cache"


def assert_same_run(expected_run: Path, found_run: Path) -> None:
    """The period snapshots equal bit for bit, and history.csv row for row but for the times."""
    for snapshot in ("ep02.weights.h5", "ep03.weights.h5"):
        expected = read_weights(expected_run / "checkpoints" / snapshot)
        found = read_weights(found_run / "checkpoints" / snapshot)
        assert expected.keys() == found.keys() and len(expected) > 10
        for key in expected:
            assert np.array_equal(expected[key], found[key]), f"{snapshot}: {key} differs"
    rows = [(run / "history.csv").read_text().splitlines() for run in (expected_run, found_run)]
    header = rows[0][0].split(",")
    seconds_columns = {i for i, name in enumerate(header) if name in ("seconds", "images_per_second")}
    strip_seconds = lambda lines: [",".join(c for i, c in enumerate(line.split(",")) if i not in seconds_columns)
                                   for line in lines]
    assert strip_seconds(rows[0]) == strip_seconds(rows[1])


@pytest.mark.slow(seconds=60)
def test_several_steps_per_call_give_the_weights_and_losses_of_one_step_per_call(straight, tmp_path):
    # The straight run took one step per call ("auto" on a CPU). Three per call (a call of 3
    # steps, then one of the epoch's last step) give the same run bit for bit; the kill test
    # below runs 8 per call (each 4-step epoch in one call shorter than 8).
    plan, straight_run, cache = straight
    result = train(plan, tmp_path / "k3", cache, *EXACT, "--set", "train.steps_per_execution=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(straight_run, tmp_path / "k3")


@pytest.mark.slow(seconds=100)
def test_resume_after_kill_equals_uninterrupted_bit_for_bit(straight, tmp_path):
    # The graph trainer; test_periods.py resumes the eager one bit for bit (across a model switch).
    plan, straight_run, cache = straight
    # Eight steps per call, as on a GPU: the run killed and resumed equals the straight one,
    # which took one step per call.
    # Killed as epoch 1 is logged, after its checkpoint: the resumed run trains epochs 2 and 3.
    killer = hook_plugin_env(tmp_path / "plugin", "killer", kill_at("detplug_epoch_end", "epoch == 1"))
    eight = ("--set", "train.steps_per_execution=8")
    assert train(plan, tmp_path / "killed", cache, *EXACT, *eight, env=killer).returncode == -9
    # With pictures on (the tiny plan has none), the resumed run redraws results.png at once.
    resumed = train(plan, tmp_path / "killed", cache, *EXACT, *eight, "--set", "train.plots=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming plan 'tiny' after epoch 1" in resumed.stdout
    assert f"drew the training curves: {tmp_path / 'killed' / 'results.png'}" in resumed.stdout
    assert "epoch 1/3:" not in resumed.stdout and "epoch 2/3:" in resumed.stdout
    assert state(tmp_path / "killed")["epoch"] == 3
    assert_same_run(straight_run, tmp_path / "killed")


@pytest.mark.slow(seconds=100)
def test_sigterm_then_sigint_mid_epoch_save_that_step_and_the_resume_equals_an_uninterrupted_run(straight, tmp_path):
    plan, straight_run, cache = straight
    workdir = tmp_path / "stopped"
    # Two steps per call: the signal comes while the host computes the rates of steps 0 and 1,
    # and the run stops after that call.
    sender = hook_plugin_env(tmp_path / "plugin", "sender", signal_at_step("SIGTERM", epoch=2, step=1))
    stopped = train(plan, workdir, cache, *EXACT, "--set", "train.steps_per_execution=2", env=sender)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "received SIGTERM: finishing the step in progress, then saving a checkpoint" in stopped.stderr
    assert (f"stopped on SIGTERM after step 2 of 4 in epoch 2: saved a checkpoint at that step in "
            f"{workdir / 'checkpoints' / 'interrupted'}; resume with: python run.py train --plan {plan} --workdir "
            f"{workdir}") in stopped.stderr
    assert state(workdir)["epoch"] == 1 and state(workdir)["interrupted"]["progress"]["steps"] == 2
    assert len((workdir / "history.csv").read_text().splitlines()) == 2  # header and epoch 1: nothing ahead

    # Resumed, it stops again on a SIGINT (Ctrl-C) in epoch 3: the same, with exit code 130.
    ctrl_c = hook_plugin_env(tmp_path / "plugin2", "ctrl_c", signal_at_step("SIGINT", epoch=3, step=0))
    stopped = train(plan, workdir, cache, *EXACT, "--set", "train.steps_per_execution=1", env=ctrl_c)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "resuming plan 'tiny' after step 2 of epoch 2" in stopped.stdout
    assert "stopped on SIGINT after step 1 of 4 in epoch 3: saved a checkpoint at that step" in stopped.stderr
    assert state(workdir)["epoch"] == 2 and state(workdir)["interrupted"]["progress"]["steps"] == 1

    resumed = train(plan, workdir, cache, *EXACT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming plan 'tiny' after step 1 of epoch 3" in resumed.stdout
    assert "interrupted" not in state(workdir) and not (workdir / "checkpoints" / "interrupted").exists()
    assert_same_run(straight_run, workdir)


@pytest.mark.slow(seconds=90)
def test_killed_inside_a_checkpoint_write_resumes_from_the_previous_checkpoint(tmp_path):
    plan, workdir, cache = write_tiny_plan(tmp_path, epochs1=2), tmp_path / "run", tmp_path / "cache"
    env = hook_plugin_env(tmp_path / "plugin", "killer", kill_inside_checkpoint_write("epoch-0002"))
    assert train(plan, workdir, cache, env=env).returncode == -9
    assert state(workdir)["latest"] == "epoch-0001"
    assert any(p.name.startswith(".tmp-epoch-0002") for p in (workdir / "checkpoints").iterdir())

    resumed = train(plan, workdir, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming plan 'tiny' after epoch 1" in resumed.stdout
    assert state(workdir)["epoch"] == 3
    # The half-written folder the kill left is removed at the next start, and said so.
    assert "removed 1 unfinished checkpoint file(s) a killed run left in" in resumed.stdout
    assert not any(p.name.startswith(".tmp-") for p in (workdir / "checkpoints").iterdir())


def corrupt(checkpoint: Path) -> Path:
    data = next(checkpoint.glob("ckpt.data-*"))
    blob = bytearray(data.read_bytes())
    data.write_bytes(bytes(blob[: len(blob) // 3]))
    return data


def _kill_after_epoch_2(folder: Path) -> None:
    plan, workdir, cache = write_tiny_plan(folder, epochs1=3), folder / "run", folder / "cache"
    env = hook_plugin_env(folder / "plugin", "killer", kill_at("detplug_epoch_end", "epoch == 2"))
    assert train(plan, workdir, cache, env=env).returncode == -9
    assert state(workdir)["kept"] == ["epoch-0001", "epoch-0002"]


@pytest.fixture(scope="session")
def killed_after_epoch_2(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A run of a 3+1 epoch plan killed as epoch 2 was logged, after its checkpoint:
    epoch-0001 and epoch-0002 kept."""
    folder = shared_folder(tmp_path_factory, "killed_after_epoch_2", _kill_after_epoch_2)
    return folder / "tiny.toml", folder / "run", folder / "cache"


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_with_a_warning(killed_after_epoch_2, tmp_path):
    plan, original, cache = killed_after_epoch_2
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir)
    corrupt(workdir / "checkpoints" / "epoch-0002")

    resumed = train(plan, workdir, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"warning: checkpoint {workdir / 'checkpoints' / 'epoch-0002' / 'ckpt'} cannot be read" in resumed.stderr
    assert "resuming plan 'tiny' after epoch 1" in resumed.stdout
    assert state(workdir)["epoch"] == 4


def test_unreadable_checkpoints_stop_with_an_error_and_are_not_replaced(killed_after_epoch_2, tmp_path):
    plan, original, cache = killed_after_epoch_2
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir)
    for name in ("epoch-0001", "epoch-0002"):
        corrupt(workdir / "checkpoints" / name)
    before = (workdir / "checkpoints" / "state.json").read_text()

    result = train(plan, workdir, cache)
    assert result.returncode == 2
    assert "no checkpoint in" in result.stderr and "nothing was started from scratch" in result.stderr
    assert (workdir / "checkpoints" / "state.json").read_text() == before


@pytest.mark.slow(seconds=50)
def test_changed_model_is_an_error_unless_restart_which_moves_the_old_run_aside(finished, tmp_path):
    plan, original, cache = finished
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir)
    changed = train(plan, workdir, cache, "--set", "model.backbone.width=0.25")
    assert changed.returncode == 2
    assert "written by a different model (backbone.width 0.125 -> 0.25)" in changed.stderr
    assert "--restart" in changed.stderr

    restarted = train(plan, workdir, cache, "--set", "model.backbone.width=0.25", "--restart")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    [aside] = workdir.glob("replaced-*")
    assert (aside / "checkpoints" / "state.json").is_file() and (aside / "history.csv").is_file()
    assert state(workdir)["epoch"] == 2 and state(workdir)["model"]["backbone"]["width"] == 0.25


def test_extending_a_finished_plan_continues_and_changing_a_trained_period_is_a_conflict(finished, tmp_path):
    _, original, cache = finished
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir)

    longer = write_tiny_plan(tmp_path, epochs2=2)
    extended = train(longer, workdir, cache)
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert "resuming plan 'tiny' after epoch 2" in extended.stdout and "epoch 3/3" in extended.stdout
    assert state(workdir)["epoch"] == 3

    longer.write_text(longer.read_text().replace("learning_rate = 1e-3", "learning_rate = 5e-4"))
    conflict = train(longer, workdir, cache)
    assert conflict.returncode == 2
    assert "period 1 has trained" in conflict.stderr and "learning_rate 0.001 -> 0.0005" in conflict.stderr
