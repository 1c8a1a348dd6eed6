"""The live state of a training run: the model, the current period's optimizer and
trainer, and what a checkpoint holds."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from detplug.core.build import build_trainer
from detplug.core.model.assemble import DetectorParts, build_parts
from detplug.core.model.transfer import Transfer, transfer_weights
from detplug.core.plan.check import CheckedPlan
from detplug.core.plan.plan_file import Period
from detplug.core.plan.settings import RunSettings, steps_per_call
from detplug.core.train import distribute
from detplug.core.train.optimizers import build_optimizer, ema_swapped

log = logging.getLogger(__name__)


def configure_tensorflow(run: RunSettings) -> Any:
    """Process-wide settings, before the model is built; returns the run's tf.distribute
    strategy, created first as MultiWorkerMirroredStrategy must be."""
    replicas = distribute.cpu_replicas()
    distribute.split_cpu(replicas)
    strategy = distribute.make_strategy(run.strategy)
    if replicas > 1 and run.strategy == "default":
        log.info(f"note: {distribute.CPU_REPLICAS_VARIABLE}={replicas} split the CPU, but strategy 'default' uses "
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


def describe_inputs(view: CheckedPlan) -> str:
    """A model's input and classes in words: ``96x320 images, 3 classes``."""
    image, labels = view.chain.image, view.chain.labels
    assert image is not None and labels is not None  # static_check fills in every link of a chain
    return f"{image.height}x{image.width} images, {labels.num_classes} classes"


def _as_stored(value: Any) -> Any:
    """A value as it reads back from state.json (tuples become lists)."""
    return json.loads(json.dumps(value))


class TrainingSession:
    """Model, optimizer and trainers across the periods of one run.

    Periods whose optimizer settings are equal (PeriodSettings.optimizer_state_key)
    share one optimizer, so its moments and step carry over; a different key
    starts a fresh one. Trainers are kept per (trainer, loss combination) so a
    period that repeats them reuses the traced step.

    A period whose dataset gives another chain (image size, classes, anchors) gets a
    model built for it: the previous model's weights are carried over by place and
    shape (core/model/transfer.py), as its snapshot holds them (EMA weights when used);
    the class-dependent layers start fresh when the classes change, and a fresh
    optimizer starts with it. Its fresh layers are
    initialised from (seed, period), so a resumed run builds them as an uninterrupted one.

    Everything with variables (model, optimizers, trainers) is created inside the
    strategy's scope, so each replica holds a mirror of it.
    """

    def __init__(self, checked: CheckedPlan, *, strategy: Any = None) -> None:
        self.checked = checked
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self._period = tf.Variable(0, dtype=tf.int64, trainable=False, name="period")
        #: The plan as the current model sees it (checked.for_dataset of the current period).
        self.view: CheckedPlan = checked.first()
        self.parts: DetectorParts = self._build(self.view)
        self.model = self.parts.model
        self.optimizer: keras.optimizers.Optimizer | None = None
        self.optimizer_key: Any = None
        self._trainers: dict[tuple[str, str], Any] = {}

    def _build(self, view: CheckedPlan) -> DetectorParts:
        run = view.plan.train.run
        with self.strategy.scope():
            parts = build_parts(view)
        if run.bn_momentum:
            set_batch_norm(parts.model, momentum=run.bn_momentum)
        if run.sync_batch_norm and self.strategy.num_replicas_in_sync > 1:
            set_batch_norm(parts.model, synchronized=True)
        return parts

    def _switch_model(self, index: int) -> Transfer | None:
        """Build period ``index``'s model when its chain differs from the current one, carrying
        the weights over; returns what carried over (None when the model stays)."""
        view = self.checked.for_period(index)
        if view.chain == self.view.chain:
            return None
        keras.utils.set_random_seed(self.checked.plan.train.run.seed + index)
        parts = self._build(view)
        old, new = self.view.chain.labels, view.chain.labels
        assert old is not None and new is not None  # static_check fills in every link of a chain
        # The weights the previous period ends with, as evaluated and saved (EMA when used).
        with self.strategy.scope(), self.evaluation_weights():
            transfer = transfer_weights(
                self.model, parts.model, classes=(old.num_classes, new.num_classes),
                where=f"{self.checked.plan.source}: period {index + 1} ({view.model_dataset})")
        self.view, self.parts, self.model = view, parts, parts.model
        self.optimizer_key = None  # the new model's variables need an optimizer of their own
        self._trainers.clear()
        return transfer

    def use_period(self, period: Period, *, index: int, announce: str | None = None) -> Any:
        """Switch to the period's model if it has another, freeze what the period freezes, and
        return its trainer (with the right optimizer)."""
        transfer = self._switch_model(index)
        settings = period.settings
        replicas = self.strategy.num_replicas_in_sync
        if settings.batch_size < replicas:
            # Each replica takes its share of every global batch; with fewer images than
            # replicas some would get none, and the model's layers fail on an empty batch.
            raise distribute.DistributeError(
                f"{self.checked.plan.source}: period {index + 1} has batch_size {settings.batch_size}, fewer "
                f"images than the {replicas} replicas it is split over, so some replicas would get none; "
                f"set [train] batch_size (or the period's) to at least {replicas}, or use fewer replicas"
            )
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
                trainer = build_trainer(
                    item.component, item.params, model=self.model, losses=build_losses(self.view, period.losses),
                    optimizer=self.optimizer, variables=self.model.trainable_variables,
                )
            trainer.steps_per_execution = steps_per_call(self.checked.plan.train.run.steps_per_execution,
                                                         on_accelerator=distribute.on_accelerator(self.strategy))
            self._trainers[trainer_key] = trainer
        if announce:
            if transfer is not None:
                log.info(f"{announce}: the model is rebuilt for dataset '{period.dataset}' "
                         f"({describe_inputs(self.view)}): {transfer.describe()}; a fresh optimizer starts")
            trained = sum(int(tf.size(v)) for v in self.model.trainable_variables)
            frozen = f" (frozen: {', '.join(settings.freeze)})" if settings.freeze else ""
            log.info(f"{announce}: training {trained:,} of {self.model.count_params():,} parameters{frozen}, "
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

    def distribute_by_worker(self, dataset_for: Callable[[Any], tf.data.Dataset]) -> Any:
        """Per-replica batches from ``dataset_for(context)``, called once by each worker with
        its ``tf.distribute.InputContext`` (which worker, how many, the per-replica batch):
        each worker reads only what that dataset reads ([train] shard_by = "file")."""
        return self.strategy.distribute_datasets_from_function(dataset_for)

    def evaluation_weights(self) -> Any:
        """A context in which the model holds the weights to evaluate (EMA when used)."""
        if self.optimizer is None:  # no period has started: the weights as built or restored
            return contextlib.nullcontext()
        return ema_swapped(self.optimizer, self.model.trainable_variables)

    def write_weights(self, path: Path) -> None:
        """The model as a plain Keras ``.weights.h5`` file, with EMA weights when used."""
        with ema_swapped(self.optimizer, self.model.trainable_variables):
            self.model.save_weights(str(path))
