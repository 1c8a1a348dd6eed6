"""Per-period settings (optimizer, schedule, freezing), the NaN guard, mixed precision, XLA,
and the two trainers agreeing."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import read_weights, run_cli, write_tiny_plan

from detplug.core.plan.settings import PeriodSettings
from detplug.core.train.optimizers import learning_rate_at


def test_constant_schedule_with_linear_warmup_by_hand():
    settings = PeriodSettings(warmup_epochs=1.0)
    rates = [learning_rate_at(step, base=0.1, settings=settings, total_steps=8, steps_per_epoch=4)
             for step in range(8)]
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_cosine_schedule_ends_at_the_final_ratio_by_hand():
    settings = PeriodSettings(schedule="cosine", final_learning_rate_ratio=0.1)
    rates = [learning_rate_at(step, base=1.0, settings=settings, total_steps=5, steps_per_epoch=5)
             for step in range(5)]
    # progress 0, 1/4, 1/2, 3/4, 1 -> 0.1 + 0.9 * (1 + cos(pi * p)) / 2
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)) for p in (0, 0.25, 0.5, 0.75, 1)]
    assert rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1)


def history(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


PER_PERIOD = """
[[periods]]
dataset = "synth"
epochs = 1
learning_rate = 1e-3
losses = "standard"
save = true

[[periods]]
dataset = "synth"
epochs = 1
learning_rate = 1e-2
losses = "standard"
save = true
optimizer = "sgd"
momentum = 0.8
schedule = "cosine"
clip_norm = 10.0
weight_decay = 1e-4
freeze = ["backbone"]
trainer = "eager"
"""


@pytest.mark.slow
def test_a_period_can_change_optimizer_schedule_trainer_and_freeze_the_backbone(tmp_path):
    plan = write_tiny_plan(tmp_path)
    text = plan.read_text()
    plan.write_text(text[: text.index("[[periods]]")] + PER_PERIOD)
    workdir = tmp_path / "run"
    result = run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "period 2: training" in result.stdout and "(frozen: backbone), sgd" in result.stdout
    rows = history(workdir)
    assert float(rows[1]["learning_rate"]) == pytest.approx(1e-2 * 0.01)  # cosine's last step
    before = read_weights(workdir / "checkpoints" / "ep01.weights.h5")
    after = read_weights(workdir / "checkpoints" / "ep02.weights.h5")
    backbone = [k for k in before if k.startswith("layers/functional/") and "moving" not in k]
    head = [k for k in before if k.startswith("layers/functional_1/")]
    assert backbone and head
    assert all(np.array_equal(before[k], after[k]) for k in backbone), "a frozen backbone weight changed"
    assert any(not np.array_equal(before[k], after[k]) for k in head), "the head did not train"
    meta = json.loads((workdir / "checkpoints" / "state.json").read_text())["checkpoints"]
    assert meta["epoch-0001"]["optimizer"][0] == "adam" and meta["epoch-0002"]["optimizer"][0] == "sgd"


@pytest.mark.slow
def test_a_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    plan, workdir = write_tiny_plan(tmp_path), tmp_path / "run"
    plan.write_text(plan.read_text().replace("learning_rate = 1e-4", "learning_rate = 1e30"))
    result = run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "at epoch 2, step" in message and "no checkpoint of this state was written" in message
    assert "loss part '" in message or "loss 'total'" in message
    state = json.loads((workdir / "checkpoints" / "state.json").read_text())
    assert state["latest"] == "epoch-0001" and state["epoch"] == 1
    assert [row["epoch"] for row in history(workdir)] == ["1"]


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains(policy, tmp_path):
    plan = write_tiny_plan(tmp_path)
    result = run_cli("--plan", str(plan), "--workdir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
                     "--set", f'train.mixed_precision="{policy}"')
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(math.isfinite(float(row["total"])) for row in history(tmp_path / "run"))


def build_tiny(tmp_path: Path):
    import keras

    from detplug.core.model.assemble import build_losses, build_model
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.registry import Registry, load_factory

    plan = load_plan(write_tiny_plan(tmp_path, images=8))
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    item = checked.resolved["datasets.synth"]
    prepared = load_factory(item.component)(item.params, data_root=None, cache_dir=tmp_path)

    def fresh():
        keras.utils.set_random_seed(3)
        return build_model(checked), build_losses(checked, "standard"), keras.optimizers.Adam(1e-3)

    return checked, prepared, fresh


def batches(checked, prepared, seed: int = 0):
    from detplug.core.data.pipeline import make_dataset

    chain = checked.chain
    return make_dataset(prepared.train_files, image=chain.image, labels=chain.labels, anchors=chain.anchors,
                        batch_size=2, training=True, seed=seed)


@pytest.mark.slow
def test_eager_and_graph_trainers_give_the_same_losses(tmp_path):
    from detplug.plugins.trainers.eager import EagerTrainer
    from detplug.plugins.trainers.graph import GraphTrainer

    checked, prepared, fresh = build_tiny(tmp_path)
    losses = {}
    for trainer_class in (EagerTrainer, GraphTrainer):
        model, loss, optimizer = fresh()
        trainer = trainer_class(model=model, losses=loss, optimizer=optimizer)
        losses[trainer_class.__name__] = [
            [float(v) for _, v in sorted(trainer.run_train_batch(images, targets).items())]
            for images, targets in batches(checked, prepared).take(3)
        ]
    assert np.allclose(losses["EagerTrainer"], losses["GraphTrainer"], rtol=1e-4, atol=1e-4)


@pytest.mark.slow(seconds=125)
def test_xla_compiled_graph_trainer_matches_the_plain_graph(tmp_path):
    from detplug.plugins.trainers.graph import GraphTrainer

    checked, prepared, fresh = build_tiny(tmp_path)
    results = []
    for jit in (False, True):
        model, loss, optimizer = fresh()
        trainer = GraphTrainer(model=model, losses=loss, optimizer=optimizer, jit_compile=jit)
        images, targets = next(iter(batches(checked, prepared)))
        results.append(float(trainer.run_train_batch(images, targets)["total"]))
    assert results[0] == pytest.approx(results[1], rel=1e-3)
