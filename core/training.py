"""Training a checked plan, period by period (the original framework's train_by_plan).

Periods run in order; a period's end epoch is the running sum of epochs. On
start the run reads its own checkpoint state: finished periods are skipped,
a half-done period resumes at the next epoch with model and optimizer
restored, and a finished plan trains nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from detplug.core.check import CheckedPlan
from detplug.core.checkpoints import CheckpointStore
from detplug.core.plan import Period
from detplug.core.run_folder import RunFolder


@attrs.define
class RunContext:
    """What hooks see of a run: its folder, plan, model and where it started."""

    folder: RunFolder
    checked: CheckedPlan
    start_epoch: int
    model: Any = None

    @property
    def plan(self):
        return self.checked.plan


def default_cache_dir() -> Path:
    return Path(os.environ.get("DETPLUG_CACHE") or Path.home() / ".cache" / "detplug")


def train_plan(checked: CheckedPlan, *, registry: Any, workdir: Path, data_root: Path | None = None,
               cache_dir: Path | None = None) -> RunContext:
    plan = checked.plan
    folder = RunFolder(Path(workdir))
    store = CheckpointStore(folder.checkpoints, keep_last=plan.train.keep_last)
    done = store.epoch()
    run = RunContext(folder=folder, checked=checked, start_epoch=done)
    if done >= plan.total_epochs:
        print(f"every period of plan '{plan.name}' is done ({done}/{plan.total_epochs} epochs in {folder.path}); "
              f"nothing to train")
        registry.hook.detplug_train_end(run=run)
        return run

    import keras
    import tensorflow as tf

    from detplug.core.assemble import build_model
    from detplug.core.versions import lock_document

    keras.utils.set_random_seed(plan.train.seed)
    prepared = _prepare_datasets(checked, data_root=data_root, cache_dir=cache_dir or default_cache_dir())
    model = build_model(checked)
    optimizer = keras.optimizers.Adam(learning_rate=plan.periods[0].learning_rate)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    if done:
        store.restore(checkpoint)
        print(f"resuming plan '{plan.name}' after epoch {done} from {store.folder}")
    folder.write_lock(lock_document(checked, registry))
    run.model = model
    registry.hook.detplug_train_start(run=run)

    trainers = Trainers(model=model, optimizer=optimizer)
    for index, (period, (start, end)) in enumerate(zip(plan.periods, plan.period_bounds())):
        if end <= done:
            print(f"period {index + 1} ({period.dataset}, epochs {start + 1}-{end}) is done")
            continue
        registry.hook.detplug_period_start(run=run, period=period, index=index)
        train_by_period(run, registry, period, index=index, start_epoch=max(start, done), end_epoch=end,
                        prepared=prepared[period.dataset], trainers=trainers, checkpoint=checkpoint, store=store)
    registry.hook.detplug_train_end(run=run)
    return run


class Trainers:
    """One trainer per (trainer, loss combination): periods that share both reuse its
    compiled step instead of tracing it again; the learning rate is a variable."""

    def __init__(self, *, model: Any, optimizer: Any) -> None:
        self.model = model
        self.optimizer = optimizer
        self._built: dict[tuple[str, str], Any] = {}

    def get(self, checked: CheckedPlan, period: Period) -> Any:
        from detplug.core.assemble import build_losses
        from detplug.registry import load_factory

        trainer_key = period.trainer.key if period.trainer else checked.plan.train.trainer.key
        key = (trainer_key, period.losses)
        if key not in self._built:
            item = checked.resolved[trainer_key]
            self._built[key] = load_factory(item.component)(
                item.params, model=self.model, losses=build_losses(checked, period.losses), optimizer=self.optimizer
            )
        return self._built[key]


def train_by_period(run: RunContext, registry: Any, period: Period, *, index: int, start_epoch: int,
                    end_epoch: int, prepared: Any, trainers: Trainers, checkpoint: Any,
                    store: CheckpointStore) -> None:
    from detplug.core.data.pipeline import count_steps, make_dataset

    checked, plan = run.checked, run.plan
    chain = checked.chain
    batch_size = period.batch_size or plan.train.batch_size
    trainer = trainers.get(checked, period)
    trainers.optimizer.learning_rate.assign(period.learning_rate)
    train_steps = count_steps(prepared.images("train"), batch_size, training=True)
    val_steps = count_steps(prepared.images("val"), batch_size, training=False)

    def dataset(files: list, training: bool, epoch: int):
        return make_dataset(files, image=chain.image, labels=chain.labels, anchors=chain.anchors,
                            batch_size=batch_size, training=training, seed=plan.train.seed + epoch,
                            augment=plan.train.augment and training)

    for epoch in range(start_epoch + 1, end_epoch + 1):
        print(f"== period {index + 1}/{len(plan.periods)}: {period.dataset}, epoch {epoch}/{end_epoch}, "
              f"learning rate {period.learning_rate:g}, losses '{period.losses}' ==")
        train = trainer.train_epoch(dataset(prepared.train_files, True, epoch), train_steps, epoch=epoch)
        logs = {"period": index + 1, "learning_rate": period.learning_rate, **train}
        if val_steps:
            val = trainer.validate(dataset(prepared.val_files, False, epoch), val_steps, epoch=epoch)
            logs.update({f"val_{name}": value for name, value in val.items() if name != "seconds"})
            logs["seconds"] = train["seconds"] + val["seconds"]
        print(epoch_summary(epoch, logs))
        snapshot = f"ep{epoch:02d}" if period.save and epoch == end_epoch else None
        # Logged before the checkpoint: a kill in between re-runs this epoch, and
        # detplug_train_start lets loggers drop the rows of epochs that run again.
        registry.hook.detplug_epoch_end(run=run, epoch=epoch, logs=logs)
        store.save(checkpoint, epoch, snapshot=snapshot, model=trainers.model)
        if snapshot:
            print(f"saved period snapshot {store.folder / snapshot}")


def epoch_summary(epoch: int, logs: dict[str, float]) -> str:
    """One line per epoch: the total and each loss part (summed over strides), train and val."""
    parts = [name for name in logs if name not in ("total", "period", "learning_rate", "seconds")
             and "/" not in name and not name.startswith("val_")]
    line = f"epoch {epoch}: loss {logs['total']:.4g} (" + ", ".join(f"{p} {logs[p]:.4g}" for p in parts) + ")"
    if "val_total" in logs:
        line += f", val_loss {logs['val_total']:.4g}"
    return line + f", {logs['seconds']:.1f} s"


def _prepare_datasets(checked: CheckedPlan, *, data_root: Path | None, cache_dir: Path) -> dict[str, Any]:
    from detplug.registry import load_factory

    used = dict.fromkeys(period.dataset for period in checked.plan.periods)
    prepared = {}
    for key in used:
        item = checked.resolved[f"datasets.{key}"]
        prepared[key] = load_factory(item.component)(item.params, data_root=data_root, cache_dir=cache_dir)
    return prepared
