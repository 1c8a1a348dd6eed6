"""The epoch loop every trainer shares (the original framework's TrainValBase).

A trainer differs from another only in how one batch runs: eagerly, or as a
tf.function graph. The loop, the learning rate per step, the progress line,
the NaN guard and the per-epoch means of each loss part are common.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

from detplug.core.data.pipeline import REAL_IMAGES
from detplug.core.errors import DetplugError
from detplug.core.model.losses import BOXES_KEY, LossCombination
from detplug.core.train.optimizers import ema_swapped
from detplug.core.train.preemption import EpochProgress, Interrupted

log = logging.getLogger(__name__)


class NonFiniteLossError(DetplugError):
    """The loss became NaN or Inf; nothing of the bad state has been saved."""


StepFunction = Callable[[tf.Tensor, dict], dict]
#: ``(iterator, learning_rates)`` -> (each loss part stacked over the steps run, images per
#: step): runs ``len(learning_rates)`` steps in one call (validation ignores the rates).
StepsFunction = Callable[[Any, tf.Tensor], tuple[dict, tf.Tensor]]


class Trainer:
    """Runs epochs of training and validation batches; subclasses say how a batch runs.

    A trainer is built inside the run's ``strategy.scope()`` (tf.distribute; the
    default strategy when there is none) and keeps that strategy. ``train_step``
    and ``val_step`` are what one replica does with its share of a batch;
    :meth:`compile_step` turns each into what runs per batch, normally
    :meth:`across_replicas` of it (called as it is by the eager trainer, inside a
    tf.function by the graph trainer). ``variables`` are the weights this trainer
    updates: the model's trainable ones when it was built.
    """

    def __init__(self, *, model: keras.Model, losses: LossCombination, optimizer: keras.optimizers.Optimizer,
                 variables: Sequence[tf.Variable] | None = None) -> None:
        self.model = model
        self.losses = losses
        self.optimizer = optimizer
        self.variables = list(model.trainable_variables if variables is None else variables)
        self.strategy = tf.distribute.get_strategy()
        self.run_train_batch = self.compile_step(self.train_step)
        self.run_val_batch = self.compile_step(self.val_step)
        self.run_train_steps = self.compile_steps(self.run_train_batch, sets_rate=True)
        self.run_val_steps = self.compile_steps(self.run_val_batch, sets_rate=False)
        #: Steps per call of ``run_*_steps`` (``[train] steps_per_execution``); 1 calls
        #: ``run_*_batch`` once per step and reads its losses after each.
        self.steps_per_execution = 1

    def compile_step(self, step: StepFunction) -> StepFunction:
        raise NotImplementedError

    def compile_steps(self, run_batch: StepFunction, *, sets_rate: bool) -> StepsFunction | None:
        """Several steps per call (see :data:`StepsFunction`), or None when this trainer runs
        one batch per call only (the eager trainer: it runs op by op anyway)."""
        return None

    def steps_loop(self, run_batch: StepFunction, *, sets_rate: bool) -> StepsFunction:
        """The steps of one call as a loop on the device (a ``tf.range`` loop, so ``run_batch``
        is traced once whatever the count): each step takes the next batch of ``iterator``,
        after setting the learning rate to its entry of ``learning_rates``. The loss parts of
        every step are gathered on the device and come back together, so the host waits once
        per call instead of once per step."""
        optimizer = self.optimizer

        def run_steps(iterator: Any, learning_rates: tf.Tensor) -> tuple[dict, tf.Tensor]:
            def one(index: tf.Tensor) -> tuple[dict, tf.Tensor]:
                if sets_rate:
                    optimizer.learning_rate.assign(learning_rates[index])
                images, targets = next(iterator)
                return run_batch(images, targets), self._images_tensor(images, targets)

            first, first_images = one(tf.constant(0))
            count = tf.shape(learning_rates)[0]
            parts = {name: tf.TensorArray(value.dtype, size=count).write(0, value) for name, value in first.items()}
            images = tf.TensorArray(tf.int32, size=count).write(0, first_images)
            for index in tf.range(1, count):
                step_parts, step_images = one(index)
                parts = {name: parts[name].write(index, step_parts[name]) for name in parts}
                images = images.write(index, step_images)
            return {name: array.stack() for name, array in parts.items()}, images.stack()

        return run_steps

    def across_replicas(self, step: StepFunction) -> StepFunction:
        """``step`` run by every replica on its share of the batch (``strategy.run``), its
        parts added up over the replicas; each replica's parts are already divided by the
        global batch, so the sums are the means over the whole batch."""
        strategy = self.strategy

        def run_batch(images: tf.Tensor, targets: dict) -> dict:
            parts = strategy.run(step, args=(images, targets))
            return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                    for name, value in parts.items()}

        return run_batch

    def train_step(self, images: tf.Tensor, targets: dict) -> dict:
        global_batch = _global_batch(tf.shape(images)[0])
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            total, parts = self.losses(outputs, targets, global_batch=global_batch)
            # A LossScaleOptimizer scales the loss so float16 gradients do not underflow;
            # apply_gradients unscales them. Other optimizers return the loss as it is.
            scaled = self.optimizer.scale_loss(total)
        gradients = tape.gradient(scaled, self.variables)
        # Keras sums the gradients over the replicas before it applies them.
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        return parts

    def val_step(self, images: tf.Tensor, targets: dict) -> dict:
        targets = dict(targets)
        real = targets.pop(REAL_IMAGES, None)
        outputs = self.model(images, training=False)
        if real is not None:
            # The blank images that fill up the last batch (core/data/pipeline.whole_batches) ran
            # through the model, so that no replica had an empty batch; the losses see only the
            # real ones, as one device sees them (a replica may keep none: its sums are zero).
            outputs, targets = tf.nest.map_structure(lambda tensor: tf.boolean_mask(tensor, real), (outputs, targets))
        _, parts = self.losses(outputs, targets, global_batch=_global_batch(tf.shape(targets[BOXES_KEY])[0]))
        return parts

    def train_epoch(self, dataset: Iterable, steps: int, *, epoch: int,
                    learning_rate_at: Callable[[int], float] | None = None, first_step: int = 0,
                    start: EpochProgress | None = None,
                    stop_requested: Callable[[], bool] = lambda: False) -> dict[str, float]:
        """One epoch; ``learning_rate_at(step)`` is assigned before each step, counted
        from ``first_step`` (the period's steps so far). ``start``: the progress of an epoch
        interrupted before (``dataset`` then gives its remaining batches). When
        ``stop_requested()`` turns true, the epoch stops after the step in progress with
        :class:`Interrupted` carrying its progress."""

        def rate_at(step: int) -> float | None:
            return None if learning_rate_at is None else learning_rate_at(first_step + step)

        return self._run(self.run_train_batch, self.run_train_steps, dataset, steps, epoch=epoch, label="train",
                         rate_at=rate_at, start=start, stop_requested=stop_requested)

    def validate(self, dataset: Iterable, steps: int, *, epoch: int) -> dict[str, float]:
        """One pass over ``dataset`` without updates, on the EMA weights when there are any."""
        with ema_swapped(self.optimizer, self.variables):
            return self._run(self.run_val_batch, self.run_val_steps, dataset, steps, epoch=epoch, label="val")

    def _run(self, run_batch: StepFunction, run_steps: StepsFunction | None, dataset: Iterable, steps: int, *,
             epoch: int, label: str, rate_at: Callable[[int], float | None] = lambda step: None,
             start: EpochProgress | None = None, stop_requested: Callable[[], bool] = lambda: False
             ) -> dict[str, float]:
        # A bar that redraws itself only where a terminal shows it; in a log file (CI, nohup)
        # the epoch's one summary line is the progress.
        interactive = sys.stdout.isatty()
        progress = keras.utils.Progbar(steps, unit_name="step", stateful_metrics=["loss"],
                                       verbose=1 if interactive else 0)
        if interactive:
            log.info(f"{label} epoch {epoch}")
        start = start or EpochProgress()
        sums: dict[str, float] = dict(start.sums)
        count, images_seen = start.steps, start.images
        started = time.perf_counter() - start.seconds
        per_call = self.steps_per_execution if run_steps is not None else 1
        # ``dataset`` may be an iterator that goes on into the next epoch: take this epoch's steps.
        batches = iter(dataset)
        while count < steps:
            done = (self._one_step(run_batch, batches, rate_at(count)) if per_call == 1 else
                    self._several_steps(run_steps, batches, [rate_at(step) for step in
                                                             range(count, min(steps, count + per_call))]))
            if not done:
                break
            for parts, images in done:
                count += 1
                images_seen += images
                _stop_if_not_finite(parts, epoch=epoch, step=count, label=label)
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
            progress.update(count, values=[("loss", done[-1][0]["total"])])
            if count < steps and stop_requested():
                raise Interrupted(EpochProgress(count, images_seen, time.perf_counter() - started, sums))
        if count == 0:
            raise DetplugError(f"the {label} data gave no batch in epoch {epoch}; it has fewer images than one batch")
        means = {name: total / count for name, total in sums.items()}
        means["seconds"] = time.perf_counter() - started
        means["images_per_second"] = images_seen / means["seconds"]
        return means

    def _one_step(self, run_batch: StepFunction, batches: Iterator, rate: float | None
                  ) -> list[tuple[dict[str, float], int]]:
        """One step, its losses read at once: [(parts, images)], or [] at the end of the data."""
        batch = next(batches, None)
        if batch is None:
            return []
        images, targets = batch
        if rate is not None:
            self.optimizer.learning_rate.assign(rate)
        parts = {name: float(value) for name, value in run_batch(images, targets).items()}
        return [(parts, self._images_in(images, targets))]

    def _several_steps(self, run_steps: StepsFunction | None, batches: Iterator, rates: list[float | None]
                       ) -> list[tuple[dict[str, float], int]]:
        """``len(rates)`` steps in one call, their losses read once after it: [(parts, images)]
        per step, in order; [] at the end of the data."""
        assert run_steps is not None
        values = [math.nan if rate is None else rate for rate in rates]
        try:
            stacked, images = run_steps(batches, tf.constant(values, tf.float32))
        except tf.errors.OutOfRangeError:
            return []
        columns = {name: value.numpy().tolist() for name, value in stacked.items()}
        return [({name: float(column[index]) for name, column in columns.items()}, int(seen))
                for index, seen in enumerate(images.numpy().tolist())]

    def _images_tensor(self, images: tf.Tensor, targets: dict) -> tf.Tensor:
        """Images in a global batch, the blank ones of a filled-up validation batch left out,
        from this process's share of it (exact when the workers' shares are equal, which
        they are for training batches); traceable."""
        if REAL_IMAGES in targets:
            local = self.strategy.experimental_local_results(targets[REAL_IMAGES])
            counts = [tf.reduce_sum(tf.cast(part, tf.int32)) for part in local]
        else:
            local = self.strategy.experimental_local_results(images)
            counts = [tf.shape(part)[0] for part in local]
        workers = max(1, self.strategy.num_replicas_in_sync // len(local))
        return workers * tf.add_n(counts)

    def _images_in(self, images: tf.Tensor, targets: dict) -> int:
        """:meth:`_images_tensor` as a number, for a step run one at a time."""
        return int(self._images_tensor(images, targets))


def _global_batch(count: tf.Tensor) -> tf.Tensor | None:
    """The images of this step on all replicas, the sum of each replica's ``count`` of its
    own (the global batch may split unevenly); None for a single replica, whose losses are
    plain batch means."""
    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
        return None
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(count, tf.float32))


def _stop_if_not_finite(parts: dict[str, float], *, epoch: int, step: int, label: str) -> None:
    for name, value in parts.items():
        if name != "total" and not math.isfinite(value):
            raise NonFiniteLossError(
                f"{label} loss part '{name}' is {value} at epoch {epoch}, step {step}; training stopped "
                f"and no checkpoint of this state was written (the latest one is the last good epoch); "
                f"lower the learning rate or check the data"
            )
    if not math.isfinite(parts.get("total", 0.0)):
        raise NonFiniteLossError(
            f"{label} loss 'total' is {parts['total']} at epoch {epoch}, step {step} (a loss weight too large?); "
            f"training stopped and no checkpoint of this state was written; lower the learning rate or the weights"
        )
