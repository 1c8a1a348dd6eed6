"""The optimizer and learning rate of a period, and the EMA weights swap.

The learning rate is a plain function of the step within the period
(:func:`learning_rate_at`), assigned to the optimizer's learning-rate
variable before each step: the history logs the exact rate, and a resumed
run computes the same rate as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import keras

from detplug.core.plan.settings import PeriodSettings, RunSettings

if TYPE_CHECKING:
    from detplug.core.plan.plan_file import Period


def learning_rate_at(step: int, *, base: float, settings: PeriodSettings, total_steps: int,
                     steps_per_epoch: int) -> float:
    """The learning rate for ``step`` (0-based) of a period of ``total_steps`` steps.

    Linear warmup from base / warmup_steps to base over ``warmup_epochs``, then
    constant, or cosine from base down to ``final_learning_rate_ratio * base``
    at the last step.
    """
    warmup_steps = int(round(settings.warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if settings.schedule == "constant":
        return base
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    final = base * settings.final_learning_rate_ratio
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def describe_schedule(period: Period) -> str:
    """The period's schedule in words: ``cosine from 0.003 to 3e-05 after 3 warmup epochs``."""
    settings, base = period.settings, period.learning_rate
    warmup = (f" after {settings.warmup_epochs:g} warmup epoch{'' if settings.warmup_epochs == 1 else 's'}"
              if settings.warmup_epochs else "")
    if settings.schedule == "constant":
        return f"constant {base:g}{warmup}"
    return f"{settings.schedule} from {base:g} to {base * settings.final_learning_rate_ratio:.3g}{warmup}"


def build_optimizer(settings: PeriodSettings, run: RunSettings, learning_rate: float) -> keras.optimizers.Optimizer:
    common: dict[str, Any] = {
        "learning_rate": learning_rate,
        "global_clipnorm": settings.clip_norm or None,
        "use_ema": run.ema,
        "ema_momentum": run.ema_momentum,
    }
    if settings.weight_decay:
        common["weight_decay"] = settings.weight_decay
    if settings.optimizer == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif settings.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(**common)
    elif settings.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=settings.momentum, **common)
    else:  # the settings validator admits only the names above
        raise ValueError(f"unknown optimizer {settings.optimizer!r}")
    if run.mixed_precision == "mixed_float16":
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _inner(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    return getattr(optimizer, "inner_optimizer", optimizer)


def ema_weights(optimizer: keras.optimizers.Optimizer) -> Sequence[Any] | None:
    """The moving averages of the trainable variables, in their order, or None without EMA.

    Keras keeps them in the optimizer (so tf.train.Checkpoint saves them with
    its slots) but exposes them only through this private list.
    """
    inner = _inner(optimizer)
    if not inner.use_ema:
        return None
    return getattr(inner, "_model_variables_moving_average", None)


@contextlib.contextmanager
def ema_swapped(optimizer: keras.optimizers.Optimizer, variables: Sequence[Any]) -> Iterator[None]:
    """Within the block the model's trainable variables hold their EMA values."""
    averages = ema_weights(optimizer)
    if not averages:
        yield
        return
    saved = [variable.numpy() for variable in variables]
    for variable, average in zip(variables, averages):
        variable.assign(average)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
