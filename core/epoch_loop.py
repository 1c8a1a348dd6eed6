"""The epoch loop every trainer shares (the original framework's TrainValBase).

A trainer differs from another only in how one batch runs: eagerly, or as a
tf.function graph. The loop, the progress line and the per-epoch means of
each loss part are common.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import keras
import tensorflow as tf

from detplug.core.errors import DetplugError
from detplug.core.losses import LossCombination


class NonFiniteLossError(DetplugError):
    """The loss became NaN or Inf; nothing of the bad state has been saved."""


StepFunction = Callable[[tf.Tensor, dict], dict]


class Trainer:
    """Runs epochs of training and validation batches; subclasses say how a batch runs.

    ``train_step`` and ``val_step`` are the plain Python step functions;
    :meth:`compile_step` turns each into what runs per batch (itself for the
    eager trainer, a tf.function for the graph trainer).
    """

    def __init__(self, *, model: keras.Model, losses: LossCombination, optimizer: keras.optimizers.Optimizer) -> None:
        self.model = model
        self.losses = losses
        self.optimizer = optimizer
        self.run_train_batch = self.compile_step(self.train_step)
        self.run_val_batch = self.compile_step(self.val_step)

    def compile_step(self, step: StepFunction) -> StepFunction:
        raise NotImplementedError

    def train_step(self, images: tf.Tensor, targets: dict) -> dict:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            total, parts = self.losses(outputs, targets)
        gradients = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return parts

    def val_step(self, images: tf.Tensor, targets: dict) -> dict:
        outputs = self.model(images, training=False)
        _, parts = self.losses(outputs, targets)
        return parts

    def train_epoch(self, dataset: Iterable, steps: int, *, epoch: int) -> dict[str, float]:
        return self._run(self.run_train_batch, dataset, steps, epoch=epoch, label="train")

    def validate(self, dataset: Iterable, steps: int, *, epoch: int) -> dict[str, float]:
        return self._run(self.run_val_batch, dataset, steps, epoch=epoch, label="val")

    def _run(self, run_batch: StepFunction, dataset: Iterable, steps: int, *, epoch: int, label: str) -> dict[str, float]:
        progress = keras.utils.Progbar(steps, unit_name="step", stateful_metrics=["loss"])
        print(f"{label} epoch {epoch}")
        sums: dict[str, float] = {}
        count = 0
        started = time.perf_counter()
        for step, (images, targets) in enumerate(dataset):
            parts = {name: float(value) for name, value in run_batch(images, targets).items()}
            _stop_if_not_finite(parts, epoch=epoch, step=step + 1, label=label)
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            progress.update(step + 1, values=[("loss", parts["total"])])
        if count == 0:
            raise DetplugError(f"the {label} data gave no batch in epoch {epoch}; it has fewer images than one batch")
        means = {name: total / count for name, total in sums.items()}
        means["seconds"] = time.perf_counter() - started
        return means


def _stop_if_not_finite(parts: dict[str, float], *, epoch: int, step: int, label: str) -> None:
    for name, value in parts.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{label} loss part '{name}' is {value} at epoch {epoch}, step {step}; training stopped "
                f"and no checkpoint of this state was written (the latest one is the last good epoch); "
                f"lower the learning rate or check the data"
            )

