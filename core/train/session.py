"""The live state of a training run: the model, the current period's optimizer and
trainer, and what a checkpoint holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from detplug.core.build import build_trainer
from detplug.core.model.assemble import DetectorParts, build_parts
from detplug.core.plan.check import CheckedPlan
from detplug.core.plan.plan_file import Period
from detplug.core.plan.settings import RunSettings
from detplug.core.train import distribute
from detplug.core.train.optimizers import build_optimizer, ema_swapped


def configure_tensorflow(run: RunSettings) -> Any:
    """Process-wide settings, before the model is built; returns the run's tf.distribute
    strategy, created first as MultiWorkerMirroredStrategy must be."""
    replicas = distribute.cpu_replicas()
    distribute.split_cpu(replicas)
    strategy = distribute.make_strategy(run.strategy)
    if replicas > 1 and run.strategy == "default":
        print(f"note: {distribute.CPU_REPLICAS_VARIABLE}={replicas} split the CPU, but strategy 'default' uses "
              f"one device; add --strategy mirrored to train on all of them")
    keras.utils.set_random_seed(run.seed)
    if run.deterministic:
        tf.config.experimental.enable_op_determinism()
    if run.mixed_precision:
        keras.config.set_dtype_policy(run.mixed_precision)
    return strategy


def set_batch_norm(layer: Any, **attributes: Any) -> int:
    """Set ``attributes`` (momentum, synchronized) on every BatchNormalization inside
    ``layer`` (nested models too), before any step is traced; returns how many were set."""
    if isinstance(layer, keras.layers.BatchNormalization):
        for name, value in attributes.items():
            setattr(layer, name, value)
        return 1
    return sum(set_batch_norm(inner, **attributes) for inner in getattr(layer, "layers", ()))


def _as_stored(value: Any) -> Any:
    """A value as it reads back from state.json (tuples become lists)."""
    return json.loads(json.dumps(value))


class TrainingSession:
    """Model, optimizer and trainers across the periods of one run.

    Periods whose optimizer settings are equal (PeriodSettings.optimizer_state_key)
    share one optimizer, so its moments and step carry over; a different key
    starts a fresh one. Trainers are kept per (trainer, loss combination) so a
    period that repeats them reuses the traced step.

    Everything with variables (model, optimizers, trainers) is created inside the
    strategy's scope, so each replica holds a mirror of it.
    """

    def __init__(self, checked: CheckedPlan, *, strategy: Any = None) -> None:
        self.checked = checked
        self.strategy = strategy or tf.distribute.get_strategy()
        run = checked.plan.train.run
        with self.strategy.scope():
            self.parts: DetectorParts = build_parts(checked)
            self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self._period = tf.Variable(0, dtype=tf.int64, trainable=False, name="period")
        self.model = self.parts.model
        if run.bn_momentum:
            set_batch_norm(self.model, momentum=run.bn_momentum)
        if run.sync_batch_norm and self.strategy.num_replicas_in_sync > 1:
            set_batch_norm(self.model, synchronized=True)
        self.optimizer: keras.optimizers.Optimizer | None = None
        self.optimizer_key: Any = None
        self._trainers: dict[tuple[str, str], Any] = {}

    def use_period(self, period: Period, *, announce: str | None = None) -> Any:
        """Freeze what the period freezes, and return its trainer (with the right optimizer)."""
        settings = period.settings
        for name in ("backbone", "head"):
            getattr(self.parts, name).trainable = name not in settings.freeze
        key = _as_stored(settings.optimizer_state_key())
        if key != self.optimizer_key:
            with self.strategy.scope():
                self.optimizer = build_optimizer(settings, self.checked.plan.train.run, period.learning_rate)
                self.optimizer.build(self.model.trainable_variables)
            self.optimizer_key = key
            self._trainers.clear()
        trainer_key = (period.trainer.key, period.losses)
        if trainer_key not in self._trainers:
            from detplug.core.model.assemble import build_losses

            item = self.checked.resolved[period.trainer.key]
            with self.strategy.scope():
                self._trainers[trainer_key] = build_trainer(
                    item.component, item.params, model=self.model, losses=build_losses(self.checked, period.losses),
                    optimizer=self.optimizer, variables=self.model.trainable_variables,
                )
        if announce:
            trained = sum(int(tf.size(v)) for v in self.model.trainable_variables)
            frozen = f" (frozen: {', '.join(settings.freeze)})" if settings.freeze else ""
            print(f"{announce}: training {trained:,} of {self.model.count_params():,} parameters{frozen}, "
                  f"{settings.optimizer}, batch {settings.batch_size}, trainer '{period.trainer.name}'")
        return self._trainers[trainer_key]

    def mark(self, *, epoch: int, period: int) -> None:
        self._epoch.assign(epoch)
        self._period.assign(period)

    def checkpoint(self) -> tf.train.Checkpoint:
        """Model, optimizer (slots, step, EMA weights, loss scale), epoch and period."""
        return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self._epoch, period=self._period)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer_key}

    def restore(self, prefix: str, meta: dict[str, Any]) -> None:
        """Restore a checkpoint. Its optimizer state is taken only when it was written with
        the optimizer settings of the period that resumes; otherwise that period starts a
        fresh optimizer, as the uninterrupted run did at the period's start."""
        with self.strategy.scope():
            if meta.get("optimizer") == self.optimizer_key:
                self.checkpoint().read(prefix).assert_existing_objects_matched()
            else:
                tf.train.Checkpoint(model=self.model, epoch=self._epoch, period=self._period).read(
                    prefix).expect_partial().assert_existing_objects_matched()

    def distribute(self, dataset: tf.data.Dataset) -> Any:
        """``dataset``'s global batches split over the replicas. Every worker reads all of it
        and keeps its share of each batch (sharding by data, not by file), so the batches
        of N workers are exactly those of one process."""
        if self.strategy is tf.distribute.get_strategy():  # the default strategy: one device
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def evaluation_weights(self) -> Any:
        """A context in which the model holds the weights to evaluate (EMA when used)."""
        return ema_swapped(self.optimizer, self.model.trainable_variables)

    def write_weights(self, path: Path) -> None:
        """The model as a plain Keras ``.weights.h5`` file, with EMA weights when used."""
        with ema_swapped(self.optimizer, self.model.trainable_variables):
            self.model.save_weights(str(path))
