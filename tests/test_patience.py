"""Early stopping, [train] patience: the stopping rule, the plan check, and a period that
stops, survives a kill and hands its best epoch's weights to the next period."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import hook_plugin_env, kill_at, run_cli, write_tiny_plan

from detplug.core.train.patience import out_of_patience

EVALUATED = '\n[evaluation]\nevaluator = "coco_map"\neval_every = 1\nbest_metric = "AP50"\n'


def stop_epoch(values: list[float | None], *, patience: int, period_start: int = 0) -> int | None:
    """Where a period whose epochs give ``values`` (None: not evaluated) stops, as the run
    asks the rule: after each epoch, with the best evaluated epoch so far (higher is better)."""
    best_epoch, best = None, None
    for epoch, value in enumerate(values, start=period_start + 1):
        if value is not None and (best is None or value > best):
            best_epoch, best = epoch, value
        if epoch < period_start + len(values) and out_of_patience(
                epoch=epoch, period_start=period_start, best_epoch=best_epoch, patience=patience,
                evaluated=value is not None):
            return epoch
    return None


def test_the_rule_counts_epochs_since_the_best_and_stops_only_after_an_evaluation():
    assert stop_epoch([0.1, 0.3, 0.2, 0.25, 0.2, 0.4], patience=3) == 5
    assert stop_epoch([0.1, 0.3, 0.2, 0.4, 0.2, 0.3, 0.5], patience=3) is None  # better in time, twice
    assert stop_epoch([0.1, 0.1, 0.1], patience=1, period_start=10) == 12  # equal is not better
    assert stop_epoch([0.5, 0.1, 0.1, 0.1], patience=0) is None  # 0: off
    # eval_every = 2: epoch 3 is 2 epochs past the best but not evaluated; epoch 4 stops.
    assert stop_epoch([None, 0.3, None, 0.2, None, 0.1], patience=2) == 4
    # The last epoch ends the period anyway: nothing is left to skip.
    assert stop_epoch([0.3, 0.2, 0.1], patience=2) is None


@pytest.mark.parametrize(("evaluation", "missing"), [
    ("", "no [evaluation] evaluator"),
    ('\n[evaluation]\nevaluator = "coco_map"\n', "no [evaluation] best_metric"),
])
def test_patience_without_an_evaluated_metric_is_one_sentence(tmp_path, evaluation, missing):
    plan = write_tiny_plan(tmp_path)
    plan.write_text(plan.read_text() + evaluation)
    result = run_cli("--plan", str(plan), "--check", "--set", "train.patience=2")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.patience: early stopping waits" in lines[0] and missing in lines[0], lines


def model_weights(prefix: Path) -> dict[str, np.ndarray]:
    """The model's variables in a TensorFlow checkpoint, by name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/")}


def test_patience_with_evaluation_after_the_last_epoch_only_is_warned_of(tmp_path):
    plan = write_tiny_plan(tmp_path)
    plan.write_text(plan.read_text() + EVALUATED.replace("eval_every = 1", "eval_every = 0"))
    result = run_cli("check", "--static", "--plan", str(plan), "--set", "train.patience=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[train] patience = 2 waits for evaluations, but [evaluation] eval_every = 0" in result.stdout


def history(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow(seconds=45)
def test_period_stops_early_survives_a_kill_and_the_next_period_starts_from_its_best(tmp_path):
    plan = write_tiny_plan(tmp_path, epochs1=4, epochs2=1)
    plan.write_text(plan.read_text() + EVALUATED)
    workdir, cache = tmp_path / "run", tmp_path / "cache"
    # Every epoch's checkpoint kept, to compare their weights.
    args = ("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache), "--set", "train.patience=2",
            "--set", "train.keep_last=9")

    # Killed after epoch 3's checkpoint and history row, where the tiny model (AP50 0 every
    # epoch) runs out of patience: the resumed run counts the epochs since the period's best
    # from state.json and stops at once, as the uninterrupted run would have.
    env = hook_plugin_env(tmp_path / "plugin", "killer", kill_at("detplug_epoch_end", "epoch == 3"))
    assert run_cli(*args, env=env).returncode == -9
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming plan 'tiny' after epoch 3" in resumed.stdout and "epoch 4/5" not in resumed.stdout

    rows = history(workdir)
    # The skipped epoch has no row; the next period keeps its epoch number (the running sum).
    assert [(row["epoch"], row["period"]) for row in rows] == [("1", "1"), ("2", "1"), ("3", "1"), ("5", "2")]
    first = [float(row["AP50"]) for row in rows if row["period"] == "1"]
    stopped, best_epoch = stop_epoch([*first, None], patience=2), 1 + first.index(max(first))
    assert (stopped, best_epoch) == (3, 1), first  # the rule on the run's own figures
    assert "stopped early after epoch 3, skipping epoch 4; the period ends with epoch 1's" in resumed.stdout

    state = json.loads((workdir / "checkpoints" / "state.json").read_text())
    kept = state["stopped_early"]["1"]
    assert kept["epoch"] == stopped and kept["best"]["epoch"] == best_epoch
    assert state["epoch"] == 5 and state["snapshots"] == ["ep04", "ep05"]
    assert state["best"]["metric"] == "AP50"  # best is kept
    # Period 1's last checkpoint and snapshot, what period 2 started from, hold its best
    # epoch's weights, not those of the epoch it stopped after.
    folder = workdir / "checkpoints"
    last, best, trained = (model_weights(folder / name / "ckpt")
                           for name in ("epoch-0004", f"epoch-{best_epoch:04d}", f"epoch-{stopped:04d}"))
    assert last and last.keys() == best.keys() and all(np.array_equal(last[key], best[key]) for key in last)
    assert not all(np.array_equal(last[key], trained[key]) for key in last)
    snapshot = model_weights(folder / "ep04" / "ckpt")
    assert snapshot.keys() == last.keys() and all(np.array_equal(snapshot[key], last[key]) for key in last)
