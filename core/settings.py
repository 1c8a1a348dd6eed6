"""Training settings a plan gives in ``[train]``, and those a period may override.

Plain attrs classes, validated like component params (core/params.py), so a
wrong value is reported with the plan file and the key path. No TensorFlow.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, frozen, validators

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
FREEZABLE = ("backbone", "head")
MIXED_PRECISION = ("", "mixed_float16", "mixed_bfloat16")


@frozen(kw_only=True)
class PeriodSettings:
    """What ``[train]`` sets for every period and a ``[[periods]]`` entry may override."""

    batch_size: int = field(default=8, validator=validators.gt(0))
    optimizer: str = field(default="adam", validator=validators.in_(OPTIMIZERS))
    #: SGD's momentum.
    momentum: float = field(default=0.9, converter=float, validator=[validators.ge(0), validators.lt(1)])
    #: Decoupled weight decay (Keras applies it for every optimizer; adamw's own default is 0.004).
    weight_decay: float = field(default=0.0, converter=float, validator=validators.ge(0))
    #: Clip the global gradient norm to this; 0 turns clipping off.
    clip_norm: float = field(default=0.0, converter=float, validator=validators.ge(0))
    #: The learning rate over the period: constant (the original framework's) or cosine to
    #: final_learning_rate_ratio x the period's rate; either after a linear warmup.
    schedule: str = field(default="constant", validator=validators.in_(SCHEDULES))
    warmup_epochs: float = field(default=0.0, converter=float, validator=validators.ge(0))
    final_learning_rate_ratio: float = field(default=0.01, converter=float,
                                             validator=[validators.ge(0), validators.le(1)])
    #: Parts of the model whose weights this period does not train.
    freeze: tuple[str, ...] = field(default=(), converter=tuple,
                                    validator=validators.deep_iterable(validators.in_(FREEZABLE)))

    def optimizer_state_key(self) -> tuple[Any, ...]:
        """Periods with equal keys carry the optimizer's state (moments, step) over;
        a different key starts a fresh optimizer, as a new period did in the original framework."""
        return (self.optimizer, self.momentum, self.weight_decay, self.clip_norm, tuple(sorted(self.freeze)))


@frozen(kw_only=True)
class RunSettings:
    """Settings of the whole run."""

    seed: int = 0
    #: How many of the every-epoch checkpoints to keep (period snapshots and the best are kept too).
    keep_last: int = field(default=2, validator=validators.gt(0))
    augment: bool = False
    #: TensorFlow op determinism: slower, but a resumed run equals an uninterrupted one bit for bit.
    deterministic: bool = False
    #: Exponential moving average of the weights, used for validation and snapshots.
    ema: bool = False
    ema_momentum: float = field(default=0.999, converter=float, validator=[validators.gt(0), validators.lt(1)])
    mixed_precision: str = field(default="", validator=validators.in_(MIXED_PRECISION))
    #: The logged number whose lowest value marks the checkpoint kept as ``best``.
    best_metric: str = "val_total"


PERIOD_SETTING_KEYS = tuple(f.name for f in attrs.fields(PeriodSettings))
RUN_SETTING_KEYS = tuple(f.name for f in attrs.fields(RunSettings))
