"""Training settings a plan gives in ``[train]``, and those a period may override.

Plain attrs classes, validated like component params (core/plan/params.py), so a
wrong value is reported with the plan file and the key path. No TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from attrs import field, frozen, validators

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
FREEZABLE = ("backbone", "head")
MIXED_PRECISION = ("", "mixed_float16", "mixed_bfloat16")
#: core/train/distribute.py builds them; listed here so the plan is checked without TensorFlow.
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
SHARD_BY = ("data", "file")
#: [evaluation] on: what a tiled split is scored on.
EVALUATED_UNITS = ("images", "tiles")
#: [train] steps_per_execution = "auto" on a GPU or TPU (benchmarks/gpu_check.sh measures 1
#: against 8). On a CPU "auto" is 1: a step there takes far longer than the host's read of
#: its losses, and the loop costs its first call about 15 s more of graph optimisation
#: (Grappler on the loop's body; measured on the tiny test plan, 2-core CPU: 36 s against 19 s).
ACCELERATOR_STEPS_PER_EXECUTION = 8


def _positive_or_auto(instance: Any, attribute: attrs.Attribute, value: int | str) -> None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    raise ValueError(f"'{attribute.name}' must be a whole number >= 1 or \"auto\" (got {value!r})")


def steps_per_call(setting: int | str, *, on_accelerator: bool) -> int:
    """[train] steps_per_execution as a number: "auto" is ACCELERATOR_STEPS_PER_EXECUTION
    where the steps run on GPUs or TPUs, 1 on a CPU."""
    if setting != "auto":
        return int(setting)
    return ACCELERATOR_STEPS_PER_EXECUTION if on_accelerator else 1


def _size_range(instance: Any, attribute: attrs.Attribute, value: tuple) -> None:
    if value == ():
        return
    if (len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            or value[0] > value[1]):
        raise ValueError(f"'{attribute.name}' must be [smallest, largest] long side in pixels, two positive "
                         f"integers, smallest first (got {list(value)!r}); [] turns it off")


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
    #: Multi-scale training, as YOLOv3 trained: [smallest, largest] long side in pixels; every
    #: multi_scale_every batches an input size is drawn whose long side is a multiple of the
    #: largest stride in that range (the short side keeps the aspect, rounded up to a multiple
    #: too; core/plan/multi_scale.py). Empty: the dataset's image_size throughout.
    multi_scale: tuple[int, ...] = field(default=(), converter=tuple, validator=_size_range)
    multi_scale_every: int = field(default=10, validator=validators.gt(0))

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
    #: TensorFlow op determinism: slower, but a resumed run equals an uninterrupted one bit for bit.
    deterministic: bool = False
    #: Exponential moving average of the weights, used for validation and snapshots.
    ema: bool = False
    ema_momentum: float = field(default=0.999, converter=float, validator=[validators.gt(0), validators.lt(1)])
    mixed_precision: str = field(default="", validator=validators.in_(MIXED_PRECISION))
    #: Momentum of every batch-norm layer's moving statistics; 0 keeps each layer's own
    #: (Keras: 0.99). Short runs need a lower one (0.9), or the statistics that inference
    #: uses still describe the weights of many steps ago.
    bn_momentum: float = field(default=0.0, converter=float, validator=[validators.ge(0), validators.lt(1)])
    #: The logged number whose lowest value marks the checkpoint kept as ``best``.
    best_metric: str = "val_total"
    #: Early stopping (Ultralytics' name): a period stops after this many epochs without a better
    #: [evaluation] best_metric, and the next period starts from its best epoch's weights
    #: (core/train/patience.py); 0 turns it off.
    patience: int = field(default=0, validator=validators.ge(0))
    #: Where the steps run (core/train/distribute.py): default (one device), mirrored (local GPUs, or
    #: DETPLUG_CPU_REPLICAS CPU devices), multi_worker (TF_CONFIG) or tpu. batch_size is global.
    strategy: str = field(default="default", validator=validators.in_(STRATEGIES))
    #: With more than one replica, batch norm uses the statistics of the global batch, so N
    #: replicas train as one device does; false normalizes each replica's share on its own
    #: (no all-reduce), and each replica's moving statistics drift apart: checkpoints and
    #: evaluation use the first replica's.
    sync_batch_norm: bool = True
    #: Training steps per call of the graph trainer's step function: the losses of a call's
    #: steps are gathered on the device and read once per call, so an accelerator is not
    #: left idle while the host reads each step's losses (keras.Model.fit's
    #: steps_per_execution). The learning rate still changes every step, and the NaN guard
    #: names the step. A stop on SIGTERM waits for the call in progress. The eager trainer
    #: runs one step per call whatever this says. "auto": 8 on GPUs and TPUs, 1 on a CPU
    #: (see ACCELERATOR_STEPS_PER_EXECUTION).
    steps_per_execution: int | str = field(default="auto", validator=_positive_or_auto)
    #: How the workers of a multi_worker run share the training data: "data", every worker
    #: reads every shard and keeps its part of each batch (the batches of N workers are
    #: those of one process); "file", each worker reads only its own train shards (for data
    #: larger than a worker's memory or I/O), every epoch exactly the steps of the whole
    #: split, a worker with fewer images than its share reading some twice. Validation is
    #: sharded by data either way.
    shard_by: str = field(default="data", validator=validators.in_(SHARD_BY))
    #: Pictures while training: results.png at each period's end and the drawn predictions
    #: of each evaluation (predictions/epNN.png). false draws none (Ultralytics' plots=False):
    #: a few seconds less per period for short runs; history.csv and TensorBoard keep everything.
    plots: bool = True


PERIOD_SETTING_KEYS = tuple(f.name for f in attrs.fields(PeriodSettings))
RUN_SETTING_KEYS = tuple(f.name for f in attrs.fields(RunSettings))


def _every_or_auto(instance: Any, attribute: attrs.Attribute, value: int | str) -> None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return
    raise ValueError(f"'{attribute.name}' must be a whole number of epochs >= 0 (0: after the last epoch only) or "
                     f"\"auto\" (got {value!r})")


#: eval_every = "auto" keeps evaluation under this share of the training time.
AUTO_EVALUATION_SHARE = 0.10
#: What evaluating one image costs against training on one, the post-processing and the AP
#: included. Measured with kitti_simple on a 2-core CPU: 12 evaluations of its 64 held-out
#: images added 59 s to a run whose epochs (256 training images) take about 10 s, so one
#: image's evaluation costs about twice one image's training step (NMS down to the
#: evaluation threshold and the AP's matching, not the forward pass, dominate).
EVALUATION_COST_PER_IMAGE = 2.0


def evaluation_every(every: int | str, *, train_images: int, evaluated_images: int) -> tuple[int, str]:
    """How often to evaluate (every N epochs; 0: after the last only) and why, in words.

    "auto" evaluates every N epochs, N the smallest whole number for which evaluating costs
    at most AUTO_EVALUATION_SHARE of the training time, estimated by image counts: one
    evaluation of E images costs about 2 E training images' worth."""
    if every != "auto":
        return int(every), "set by [evaluation] eval_every"
    share = evaluated_images * EVALUATION_COST_PER_IMAGE / max(1, train_images)
    chosen = max(1, math.ceil(share / AUTO_EVALUATION_SHARE - 1e-9))
    return chosen, (f"eval_every = \"auto\": evaluating {evaluated_images} images costs about {share:.0%} of an "
                    f"epoch of {train_images} training images, so every {chosen} epoch"
                    f"{'' if chosen == 1 else 's'} keeps it under {AUTO_EVALUATION_SHARE:.0%}")


@frozen(kw_only=True)
class EvaluationSettings:
    """``[evaluation]``: post-processing (tf.image.combined_non_max_suppression) and
    when training evaluates. The evaluator itself is a component named in the same table."""

    #: Detections below this score are dropped for --predict, export and the drawn grids.
    score_threshold: float = field(default=0.3, converter=float, validator=[validators.ge(0), validators.le(1)])
    #: AP needs the whole precision-recall curve: evaluation keeps detections down to this score.
    eval_score_threshold: float = field(default=0.01, converter=float,
                                        validator=[validators.ge(0), validators.le(1)])
    iou_threshold: float = field(default=0.45, converter=float, validator=[validators.gt(0), validators.le(1)])
    max_detections: int = field(default=100, validator=validators.gt(0))
    #: The split evaluated while training and by --evaluate: "val", or "train" to measure how
    #: well a plan fits its own training images (the synthetic_overfit plan).
    split: str = field(default="val", validator=validators.in_(("val", "train")))
    #: Evaluate every this many epochs (and always after the last); 0 = only after the last;
    #: "auto" = as often as costs at most ~10% of the training time (see evaluation_every).
    eval_every: int | str = field(default="auto", validator=_every_or_auto)
    #: What a tiled split is scored on: "images", its whole source images predicted by slicing
    #: (core/model/sliced.py), the figure a deployed model gives; "tiles", each tile alone
    #: (faster). An untiled split's records are whole images either way.
    on: str = field(default="images", validator=validators.in_(EVALUATED_UNITS))
    #: The metric (a key of the evaluator's results) whose highest value marks the best checkpoint;
    #: empty keeps the best by [train] best_metric instead.
    best_metric: str = ""


EVALUATION_SETTING_KEYS = tuple(f.name for f in attrs.fields(EvaluationSettings))
