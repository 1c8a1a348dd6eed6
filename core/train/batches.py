"""A run's input: the training batches of a period (one worker's share of them under
``[train] shard_by = "file"``), the tf.data pipeline of a model, and the first epoch's
positives report. :class:`~detplug.core.train.training.Run` reads them; ``run.py
--show-data`` draws the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detplug.core.plan.check import CheckedPlan, training_sizes
from detplug.core.plan.plan_file import Plan, plan_argument

if TYPE_CHECKING:
    from detplug.core.data.pipeline import InputPipeline
    from detplug.core.data.prepared import PreparedData
    from detplug.core.train.context import RunContext
    from detplug.core.train.session import TrainingSession

log = logging.getLogger(__name__)


#: The images of epoch 1 whose targets the positives report counts: enough to be
#: representative, few enough to take a second on a CPU.
POSITIVES_REPORT_IMAGES = 1024


def epoch_augmentation(plan: Plan, epoch: int) -> Any:
    """The augmentation of ``epoch`` (mosaic turns off for the last ones), or False."""
    augmentation = plan.train.augmentation
    return augmentation.for_epoch(epoch, plan.total_epochs) if augmentation else False


def training_batches(checked: CheckedPlan, index: int, pipeline: InputPipeline, files: Sequence[Path],
                     epochs: Iterable[int], *, batch_size: int | None = None,
                     steps_per_epoch: int | None = None) -> Any:
    """The training batches of period ``index``'s ``epochs``, one epoch after the other, as the
    trainer takes them (before a strategy distributes them): augmented, at the multi-scale
    sizes, each epoch's order a function of (seed, epoch) alone. ``run.py --show-data``
    draws these same batches. A worker that reads its own shards (``[train] shard_by =
    "file"``) asks for its replicas' ``batch_size`` and ``steps_per_epoch`` batches an epoch."""
    plan = checked.plan
    settings = plan.periods[index].settings
    return pipeline.epochs(files, list(epochs), batch_size=batch_size or settings.batch_size, training=True,
                           seed=plan.train.run.seed, augment_for=partial(epoch_augmentation, plan),
                           sizes=training_sizes(checked, index), size_every=settings.multi_scale_every,
                           steps_per_epoch=steps_per_epoch)


def check_file_sharding(plan: Plan, prepared: dict[str, PreparedData], workers: int) -> None:
    """Under ``[train] shard_by = "file"``, every dataset a period trains on must have a train
    shard for each worker; a DataError naming the dataset and what to change otherwise."""
    from detplug.core.errors import DataError

    for key in dict.fromkeys(period.dataset for period in plan.periods):
        data = prepared[key]
        shards = len(data.train_files)
        if shards < workers:
            images = data.images("train")
            raise DataError(
                f"[train] shard_by = \"file\" gives each of the {workers} workers train shards of its own, but "
                f"dataset '{key}' has {shards} ({images} images in {data.directory}); set the dataset's "
                f"records_per_shard to at most {max(1, images // workers)}, or use shard_by = \"data\""
            )


def worker_training_batches(run: RunContext, session: TrainingSession, index: int, pipeline: InputPipeline,
                            prepared: PreparedData, epochs: Sequence[int], *, steps: int, skip: int) -> Any:
    """Period ``index``'s training batches of ``epochs`` under ``[train] shard_by = "file"``:
    each worker reads only its share of the train shards (core/train/distribute.split_shards)
    at its replicas' batch size, and takes ``steps`` global steps an epoch, as every worker
    does; ``skip`` steps of the first epoch are done."""
    from detplug.core.train.distribute import split_shards

    files, records = prepared.train_files, prepared.shard_records("train")
    shares = split_shards(records, run.role.workers)
    batch_size = run.plan.periods[index].settings.batch_size

    def dataset_for(context: Any) -> Any:
        # One pipeline per worker (TensorFlow's InputContext says which); it feeds the
        # worker's local replicas one per-replica batch each per step.
        assert context.num_input_pipelines == len(shares), "one input pipeline per worker"
        mine = shares[context.input_pipeline_id]
        replicas = context.num_replicas_in_sync // context.num_input_pipelines
        per_replica = context.get_per_replica_batch_size(batch_size)
        images = sum(records[i] for i in mine)
        share = prepared.images("train") / context.num_input_pipelines
        log.info(f"shard_by 'file': this {run.role.task_type} reads {len(mine)} of the {len(files)} train shards "
                 f"({images} images, {images / share:.0%} of an even share), {steps} steps an epoch of "
                 f"{replicas} x {per_replica} images")
        return training_batches(run.checked, index, pipeline, [files[i] for i in mine], epochs,
                                batch_size=per_replica, steps_per_epoch=steps * replicas).skip(skip * replicas)

    return session.distribute_by_worker(dataset_for)


def input_pipeline(view: CheckedPlan) -> InputPipeline:
    """The tf.data pipeline that feeds the model of ``view`` (one dataset's chain)."""
    from detplug.core.data.pipeline import InputPipeline

    chain = view.chain
    # static_check fills in every link of a checked plan's chain.
    assert chain.image is not None and chain.labels is not None and chain.anchors is not None
    return InputPipeline(image=chain.image, labels=chain.labels, anchors=chain.anchors,
                         assignment=view.plan.assignment)


def report_positives(view: CheckedPlan, batches: Any, *, epoch: int = 1) -> dict[str, int]:
    """Print how many positives each stride gets in the first epoch's targets of a period's
    model (``view``); a stride with none is a warning naming the command that fits anchors."""
    from detplug.core.data.pipeline import positives_per_stride

    plan = view.plan
    counts, images = positives_per_stride(batches, max_images=POSITIVES_REPORT_IMAGES)
    shown = "; ".join(f"{stride}: {count:,}" for stride, count in sorted(counts.items(), key=lambda i: int(i[0])))
    log.info(f"targets of epoch {epoch} ({images} images, {plan.assignment.describe()}): positives per stride {shown}")
    ratios, image = view.chain.anchors, view.chain.image
    # static_check fills in every link of a checked plan's chain.
    assert ratios is not None and image is not None
    for stride, count in sorted(counts.items(), key=lambda item: int(item[0])):
        if count == 0:
            anchors = ", ".join(f"{w * image.width:.0f}x{h * image.height:.0f}" for h, w in ratios[int(stride)])
            log.warning(f"warning: stride {stride} received no positive in the targets of epoch {epoch}'s "
                        f"first {images} images: no object there is best matched by its anchors ({anchors} px, "
                        f"width x height), so "
                        f"that part of the head does not learn; fit anchors to the data with "
                        f"`run.py anchors --plan {plan_argument(plan)} --write`")
    return counts
