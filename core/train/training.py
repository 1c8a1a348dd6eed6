"""Training a checked plan, period by period (the original framework's train_by_plan).

Periods run in order; a period's end epoch is the running sum of epochs. On
start the run reads its own checkpoint state: finished periods are skipped,
a half-done period resumes at the next epoch with model, optimizer and
epoch restored, and a finished plan trains nothing. Data order and
augmentation are functions of (seed, epoch) and the learning rate of (period,
step), so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from detplug.core.errors import first_few
from detplug.core.plan.check import CheckedPlan, training_sizes
from detplug.core.plan.plan_file import Period, Plan
from detplug.core.train.checkpoints import CheckpointStore
from detplug.core.train.distribute import WorkerRole, worker_role
from detplug.core.train.preemption import EpochProgress, Interrupted, Stopped, StopSignals
from detplug.core.train.resume import check_resumable, model_description, period_records
from detplug.core.train.run_folder import RunFolder

if TYPE_CHECKING:
    from detplug.core.data.pipeline import InputPipeline
    from detplug.core.data.prepared import PreparedData
    from detplug.core.evaluate.contract import Evaluator
    from detplug.core.train.session import TrainingSession
    from detplug.registry import Registry



@attrs.define
class RunContext:
    """What hooks see of a run: its folder, plan, model and where it started."""

    folder: RunFolder
    checked: CheckedPlan
    start_epoch: int
    model: Any = None
    #: (epoch, EvaluationResult, path of the drawn grid) of the latest evaluation, if any
    #: (under ``multi_worker`` the chief's only: the other workers do not evaluate).
    last_evaluation: Any = None
    #: This process's place in a multi-worker cluster; a single process is the chief.
    role: WorkerRole = attrs.field(factory=WorkerRole)

    @property
    def plan(self) -> Plan:
        return self.checked.plan


def default_cache_dir() -> Path:
    return Path(os.environ.get("DETPLUG_CACHE") or Path.home() / ".cache" / "detplug")


def period_index_at(plan: Plan, epochs_done: int) -> int:
    """The period that trains epoch ``epochs_done + 1``."""
    for index, (_, end) in enumerate(plan.period_bounds()):
        if epochs_done < end:
            return index
    return len(plan.periods) - 1


def train_plan(checked: CheckedPlan, *, registry: Registry, workdir: Path, data_root: Path | None = None,
               cache_dir: Path | None = None, restart: bool = False, skip_bad: bool = False) -> RunContext:
    """Train every period of ``checked`` not yet done in ``workdir``.

    Under ``multi_worker`` only the chief writes ``workdir``. The other workers
    resume from the chief's checkpoints (the folder must be shared) and write
    their own into a temporary folder that is deleted at the end: TensorFlow
    wants every worker to save, and only one copy kept. ``skip_bad`` leaves bad images
    out of the datasets it converts (``--skip-bad``) instead of stopping at them.
    """
    role = worker_role(checked.plan.train.run.strategy)
    folder = RunFolder(Path(workdir))
    if role.is_chief:
        # Only the chief writes the (shared) run folder, so only the chief locks it.
        with folder.writer():
            return _train(checked, registry, folder=folder, resume_from=folder, shared=folder, role=role,
                          data_root=data_root, cache_dir=cache_dir, restart=restart, skip_bad=skip_bad)
    with tempfile.TemporaryDirectory(prefix=f"detplug-{role.task_type}{role.index}-") as scratch:
        print(f"{role.describe()}: the chief writes {folder.path}; this worker's copies go to {scratch}")
        own = RunFolder(Path(scratch))
        # With --restart the chief moves the old run aside and every worker starts afresh.
        return _train(checked, registry, folder=own, resume_from=own if restart else folder, shared=folder,
                      role=role, data_root=data_root, cache_dir=cache_dir, restart=False, skip_bad=skip_bad)


def _train(checked: CheckedPlan, registry: Registry, *, folder: RunFolder, resume_from: RunFolder, shared: RunFolder,
           role: WorkerRole, data_root: Path | None, cache_dir: Path | None, restart: bool,
           skip_bad: bool) -> RunContext:
    """Train into ``folder`` after resuming from ``resume_from``; ``shared`` is the chief's
    run folder, the one a user resumes from."""
    plan = checked.plan
    if restart:
        moved = folder.move_aside()
        if moved:
            print(f"--restart: moved the previous checkpoints and logs to {moved}")
    store = CheckpointStore(folder.checkpoints, keep_last=plan.train.run.keep_last)
    leftovers = store.remove_leftovers()
    if leftovers:
        print(f"removed {len(leftovers)} unfinished checkpoint file(s) a killed run left in {store.folder}: "
              + first_few([path.name for path in leftovers]))
    source = store if resume_from == folder else CheckpointStore(resume_from.checkpoints)
    state = source.state()
    check_resumable(state, checked, source.folder)
    done = int(state["epoch"])
    run = RunContext(folder=folder, checked=checked, start_epoch=done, role=role)
    if done >= plan.total_epochs:
        print(f"every period of plan '{plan.name}' is done ({done}/{plan.total_epochs} epochs in "
              f"{resume_from.path}); nothing to train")
        registry.hook.detplug_train_end(run=run)
        return run

    from detplug.core.data.datasets import prepare_datasets
    from detplug.core.evaluate.collect import plan_evaluator
    from detplug.core.train import distribute
    from detplug.core.train.session import TrainingSession, configure_tensorflow
    from detplug.core.train.versions import lock_document

    for warning in checked.warnings:
        print(f"warning: {warning}")
    strategy = configure_tensorflow(plan.train.run)
    if plan.train.run.strategy != "default":
        print(distribute.describe(strategy, plan.train.run.strategy, role))
    # The model is built, and every declared spec compared with its tensors, before any data
    # is drawn or converted: a plan whose parts do not fit fails in seconds, not after minutes.
    session = TrainingSession(checked, strategy=strategy)
    prepared = prepare_datasets(checked, data_root=data_root, cache_dir=cache_dir or default_cache_dir(),
                                skip_bad=skip_bad,
                                keys=dict.fromkeys(period.dataset for period in plan.periods))
    progress: EpochProgress | None = None
    if done or state.get("interrupted"):
        def read(prefix: str, meta: dict[str, Any]) -> None:
            # Into the model (and optimizer) of the period that wrote it (for a run stopped
            # inside an epoch, that epoch's); the loop below switches to the next period's as
            # an uninterrupted run does.
            index = period_index_at(plan, int(meta.get("in_epoch", meta["epoch"])) - 1)
            session.use_period(plan.periods[index], index=index)
            session.restore(prefix, meta)

        done, meta = source.restore(read)
        if meta.get("progress"):
            progress = EpochProgress.from_json(meta["progress"])
        where = f"step {progress.steps} of epoch {done + 1}" if progress else f"epoch {done}"
        print(f"resuming plan '{plan.name}' after {where} from {source.folder}"
              + (f" (init_from {plan.init_from} is for a new run only)" if plan.init_from is not None else ""))
    elif plan.init_from is not None:
        from detplug.core.model.init_from import initialise

        report = initialise(checked.first(), session.parts)
        assert report is not None
        print(report.describe())
    if role.workers > 1 and plan.train.run.shard_by == "file":
        check_file_sharding(plan, prepared, role.workers)
    if role.workers > 1:
        distribute.same_on_every_worker(
            strategy, done, "the epoch to resume after",
            "every worker must reach the chief's run folder at the same path (a shared file system); start "
            "them all with the same --workdir, or pass --restart to all of them to start over")
    run.start_epoch = done
    folder.write_lock(lock_document(checked, registry))
    run.model = session.model
    registry.hook.detplug_train_start(run=run)

    # One input pipeline and evaluator per model of the run: their traced steps serve every
    # period on a dataset of the same chain.
    pipelines = {key: input_pipeline(checked.for_dataset(key)) for key in checked.chains}
    every = evaluation_schedule(plan, prepared, role)
    evaluators = {period.dataset: plan_evaluator(checked.for_dataset(period.dataset))
                  for period, (start, end) in zip(plan.periods, plan.period_bounds())
                  if any(_evaluates(plan, epoch, every[period.dataset])
                         for epoch in range(max(start, done) + 1, end + 1))}
    with distribute.stop_loudly_if_a_worker_is_lost(role, CheckpointStore(shared.checkpoints)), \
            StopSignals() as signals:
        from_chief = None
        if role.workers > 1:
            signals.agree_with(distribute.any_worker(strategy))
            from_chief = distribute.from_chief(strategy, role)
        for index, (period, (start, end)) in enumerate(zip(plan.periods, plan.period_bounds())):
            if end <= done:
                print(f"period {index + 1} ({period.dataset}, epochs {start + 1}-{end}) is done")
                continue
            registry.hook.detplug_period_start(run=run, period=period, index=index)
            train_by_period(run, registry, period, index=index, period_start=start,
                            resume_after=max(start, done), prepared=prepared[period.dataset], session=session,
                            store=store, evaluator=evaluators.get(period.dataset),
                            evaluate_every=every[period.dataset], pipeline=pipelines[period.dataset],
                            signals=signals, from_chief=from_chief,
                            progress=progress if start <= done < end else None)
            registry.hook.detplug_period_end(run=run, period=period, index=index)
    registry.hook.detplug_train_end(run=run)
    if role.is_chief:
        print_final_report(run)
    return run


def train_by_period(run: RunContext, registry: Registry, period: Period, *, index: int, period_start: int,
                    resume_after: int, prepared: PreparedData, session: TrainingSession,
                    store: CheckpointStore,
                    evaluator: Evaluator | None = None, evaluate_every: int = 0,
                    pipeline: InputPipeline | None = None,
                    signals: StopSignals | None = None, progress: EpochProgress | None = None,
                    from_chief: Callable[[Sequence[float]], list[float]] | None = None) -> None:
    """Train the epochs of ``period`` after ``resume_after``. ``pipeline``: the run's
    InputPipeline for the period's model (one is made when not given). ``progress``: how far
    epoch ``resume_after + 1`` got before a signal stopped the run. While ``signals`` are
    caught, a SIGTERM or SIGINT stops after the step in progress with a checkpoint there.
    ``from_chief`` (a multi-worker run: core/train/distribute.from_chief): the chief alone
    evaluates, and every worker takes the chief's best_metric from it."""
    from detplug.core.data.integrity import naming_damaged_shards
    from detplug.core.data.pipeline import count_steps
    from detplug.core.train.optimizers import describe_schedule, learning_rate_at

    checked, plan = run.checked, run.plan
    settings = period.settings
    trainer = session.use_period(period, index=index, announce=f"period {index + 1}")
    run.model = session.model
    train_steps = count_steps(prepared.images("train"), settings.batch_size, training=True)
    val_steps = count_steps(prepared.images("val"), settings.batch_size, training=False)
    rate_at = partial(learning_rate_at, base=period.learning_rate, settings=settings,
                      total_steps=train_steps * period.epochs, steps_per_epoch=train_steps)
    state_updates = {
        "model": model_description(checked),
        "periods": period_records(checked),
        "seed": plan.train.run.seed,
    }
    end_epoch = period_start + period.epochs

    pipeline = pipeline or input_pipeline(session.view)
    # One iterator for the period's training batches and one for validation, which repeats
    # itself every epoch: epoch e's batches depend only on (seed + e), so a resumed run
    # takes exactly the batches an uninterrupted one does. The trainer may read them inside
    # a tf.function ([train] steps_per_execution); a damaged shard stops training with its name.
    sizes = training_sizes(checked, index)
    epochs, done_steps = list(range(resume_after + 1, end_epoch + 1)), progress.steps if progress else 0
    by_file = plan.train.run.shard_by == "file" and run.role.workers > 1
    batches = None if by_file else training_batches(checked, index, pipeline, prepared.train_files, epochs)
    if resume_after == period_start and progress is None and (index == 0 or index in checked.model_changes()):
        # The first epoch's batches as training takes them (the same dataset: not built twice).
        first = batches if batches is not None else training_batches(checked, index, pipeline,
                                                                     prepared.train_files, epochs)
        report_positives(session.view, first.take(train_steps), epoch=period_start + 1)
    if batches is None:
        train_batches = iter(worker_training_batches(run, session, index, pipeline, prepared, epochs,
                                                     steps=train_steps, skip=done_steps))
    else:
        train_batches = iter(session.distribute(batches.skip(done_steps)))
    val_batches = iter(session.distribute(pipeline.dataset(
        prepared.val_files, batch_size=settings.batch_size, training=False).repeat())) if val_steps else None
    first_rate = rate_at((resume_after - period_start) * train_steps + (progress.steps if progress else 0))
    print(f"== period {index + 1}/{len(plan.periods)}: {period.dataset}, epochs {resume_after + 1}-{end_epoch} of "
          f"{plan.total_epochs}, learning rate {first_rate:.3g} at its first step ({describe_schedule(period)}), "
          f"losses '{period.losses}' ==")
    if sizes:
        print(f"multi-scale: every {settings.multi_scale_every} batches one of {len(sizes)} input sizes, "
              + ", ".join(f"{h}x{w}" for h, w in sizes))
    for epoch in range(resume_after + 1, end_epoch + 1):
        first_step = (epoch - period_start - 1) * train_steps
        try:
            with naming_damaged_shards(prepared.train_files):
                train = trainer.train_epoch(
                    train_batches, train_steps, epoch=epoch, learning_rate_at=rate_at, first_step=first_step,
                    start=progress if epoch == resume_after + 1 else None,
                    stop_requested=signals.should_stop if signals is not None else lambda: False)
        except Interrupted as stop:
            assert signals is not None
            session.mark(epoch=epoch - 1, period=index)
            saved = store.save_interrupted(session.checkpoint(), in_epoch=epoch, state_updates=state_updates,
                                           meta={**session.checkpoint_meta(), "progress": stop.progress.to_json()})
            raise Stopped(f"stopped on {signals.name()} after step {stop.progress.steps} of {train_steps} in epoch "
                          f"{epoch}: saved a checkpoint at that step in {saved}; resume with: "
                          f"{resume_command(run)}", signals.exit_code()) from None
        logs = {"period": index + 1, "learning_rate": rate_at(first_step + train_steps - 1), **train}
        if val_steps:
            with naming_damaged_shards(prepared.val_files):
                val = trainer.validate(val_batches, val_steps, epoch=epoch)
            logs.update({f"val_{name}": value for name, value in val.items()
                         if name not in ("seconds", "images_per_second")})
            logs["seconds"] = train["seconds"] + val["seconds"]
        headline = None
        if evaluator is not None and _evaluates(plan, epoch, evaluate_every):
            if run.role.is_chief:
                logs.update(evaluate_epoch(run, registry, session, evaluator, prepared, epoch))
                assert run.last_evaluation is not None
                result = run.last_evaluation[1]
                headline = (result.headline, result.headline_value)
            if from_chief is not None and plan.evaluation.best_metric:
                shared = _best_metric_from_chief(plan.evaluation.best_metric, logs, from_chief)
                headline = headline if run.role.is_chief else shared
        print(epoch_summary(epoch, plan.total_epochs, logs, losses=list(train), metric=headline))
        snapshot = f"ep{epoch:02d}" if period.save and epoch == end_epoch else None
        session.mark(epoch=epoch, period=index)
        store.save(session.checkpoint(), epoch, meta=session.checkpoint_meta(), state_updates=state_updates,
                   snapshot=snapshot, write_weights=session.write_weights)
        if snapshot:
            print(f"saved period snapshot {store.folder / snapshot}")
        # Logged only once the epoch's checkpoint is written: a save that fails (a full disk)
        # leaves history.csv without a row ahead of the checkpoints. Before the best
        # checkpoint, so that a failing best save leaves the row of the latest one.
        registry.hook.detplug_epoch_end(run=run, epoch=epoch, logs=logs)
        metric, higher = plan.evaluation.best_metric, True
        if metric not in logs:
            metric, higher = plan.train.run.best_metric, False
        if metric in logs:
            store.save_best_if_better(session.checkpoint(), epoch, metric=metric, value=float(logs[metric]),
                                      higher_is_better=higher, write_weights=session.write_weights)
        if signals is not None and (epoch < end_epoch or index + 1 < len(plan.periods)) and signals.should_stop():
            # The signal came during validation, evaluation or the save: the epoch is safe.
            raise Stopped(f"stopped on {signals.name()} after epoch {epoch}, whose checkpoint is saved in "
                          f"{store.folder}; resume with: {resume_command(run)}", signals.exit_code())


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
        print(f"shard_by 'file': this {run.role.task_type} reads {len(mine)} of the {len(files)} train shards "
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
    print(f"targets of epoch {epoch} ({images} images, {plan.assignment.describe()}): positives per stride {shown}")
    ratios, image = view.chain.anchors, view.chain.image
    # static_check fills in every link of a checked plan's chain.
    assert ratios is not None and image is not None
    for stride, count in sorted(counts.items(), key=lambda item: int(item[0])):
        if count == 0:
            anchors = ", ".join(f"{w * image.width:.0f}x{h * image.height:.0f}" for h, w in ratios[int(stride)])
            print(f"warning: stride {stride} received no positive in the targets of epoch {epoch}'s first {images} "
                  f"images: no object there is best matched by its anchors ({anchors} px, width x height), so "
                  f"that part of the head does not learn; fit anchors to the data with "
                  f"`run.py --plan {plan.name} --anchors --write`")
    return counts


def _best_metric_from_chief(metric: str, logs: dict[str, Any],
                            from_chief: Callable[[Sequence[float]], list[float]]) -> tuple[str, float] | None:
    """Put the chief's value of ``metric`` (``[evaluation] best_metric``) into ``logs`` on
    every worker, so that all of them keep the same epoch as ``best``; (metric, value), or
    None when the chief's evaluation has no such figure (best falls back to the val loss)."""
    present, value = from_chief([1.0 if metric in logs else 0.0, float(logs.get(metric, 0.0))])
    if not present:
        return None
    logs[metric] = value
    return metric, value


def evaluation_schedule(plan: Plan, prepared: dict[str, PreparedData],
                        role: WorkerRole | None = None) -> dict[str, int]:
    """Every how many epochs each dataset's periods evaluate ([evaluation] eval_every, "auto"
    by its images: core/plan/settings.evaluation_every), said once per dataset. Under
    ``multi_worker`` (``role``) the chief alone evaluates."""
    from detplug.core.plan.settings import evaluation_every

    every = {}
    for key, data in prepared.items():
        split = plan.evaluation.split
        every[key], why = evaluation_every(plan.evaluation.eval_every, train_images=data.images("train"),
                                           evaluated_images=data.images(split))
        if plan.evaluator is not None:
            when = "after the last epoch only" if every[key] == 0 else \
                "every epoch" if every[key] == 1 else f"every {every[key]} epochs"
            where = ""
            if role is not None and role.workers > 1:
                metric = plan.evaluation.best_metric
                where = " by the chief only" + (f"; this {role.task_type} takes the chief's {metric} to keep the "
                                                f"best checkpoint" if metric and not role.is_chief else "")
            print(f"evaluation on {key}'s {split} split: {when} and after the last ({why}){where}")
    return every


def _evaluates(plan: Plan, epoch: int, every: int) -> bool:
    return epoch == plan.total_epochs or (every > 0 and epoch % every == 0)


def evaluate_epoch(run: RunContext, registry: Registry, session: TrainingSession, evaluator: Evaluator,
                   prepared: PreparedData,
                   epoch: int) -> dict[str, float]:
    """The evaluator's metrics on the validation split (EMA weights when used), with a grid
    of drawn predictions written to predictions/epNN.png (unless [train] plots = false). The
    epoch's line shows the headline figure; the whole table is printed after the last epoch
    by :func:`print_final_report` (every figure is in history.csv and results.png)."""
    from detplug.core.evaluate.collect import evaluate_files

    grid = run.folder.path / "predictions" / f"ep{epoch:02d}.png"
    with session.evaluation_weights():
        result = evaluate_files(session.model, session.view, evaluator,
                                prepared.files(run.plan.evaluation.split),
                                grid_path=grid if run.plan.train.run.plots else None)
    run.last_evaluation = (epoch, result, grid)
    registry.hook.detplug_evaluation_end(run=run, epoch=epoch, metrics=result.metrics, grid=grid)
    return dict(result.metrics)


def print_final_report(run: RunContext) -> None:
    """The last lines of a run: the final evaluation's table, where its drawn predictions
    are, and the commands that use the result."""
    from detplug.core.evaluate.contract import format_table

    plan = run.plan
    if run.last_evaluation is not None:
        epoch, result, grid = run.last_evaluation
        print(f"{result.evaluator} on the {plan.evaluation.split} split after epoch {epoch}:")
        print(format_table(result))
        if grid.is_file():
            print(f"drawn {plan.evaluation.split} predictions: {grid}")
    command = resume_command(run)
    print("use the result:")
    print(f"  {command} --evaluate [--checkpoint best]     # {plan.evaluation.split} split, evaluator's table")
    print(f"  {command} --predict IMAGE_OR_FOLDER [--out DIR]   # drawn PNGs + KITTI result files")
    print(f"  {command} --export DIR                       # SavedModel taking uint8 images")


def resume_command(run: RunContext) -> str:
    """``python run.py --plan P [--workdir W]``: the command that continues (or uses) this run."""
    from detplug.core.plan.plan_file import PLANS_DIR

    plan = run.plan
    plan_argument = plan.name if plan.source.parent == PLANS_DIR else str(plan.source)
    workdir = "" if run.folder.path == Path("runs") / plan.name else f" --workdir {run.folder.path}"
    return f"python run.py --plan {plan_argument}{workdir}"


def epoch_summary(epoch: int, total_epochs: int, logs: dict[str, float], *, losses: list[str],
                  metric: tuple[str, float] | None = None) -> str:
    """One line per epoch: the total and each loss part of ``losses`` (summed over strides),
    train and val, the evaluator's headline ``metric`` when it ran, the learning rate in
    force at the epoch's last step, time and speed."""
    skip = ("total", "seconds", "images_per_second")
    parts = [name for name in losses if name not in skip and "/" not in name]
    line = (f"epoch {epoch}/{total_epochs}: loss {logs['total']:.4g} ("
            + ", ".join(f"{p} {logs[p]:.4g}" for p in parts) + ")")
    if "val_total" in logs:
        line += f", val_loss {logs['val_total']:.4g}"
    if metric is not None:
        line += f", {metric[0]} {100 * metric[1]:.2f}%"
    return line + (f", lr {logs['learning_rate']:.3g}, {logs['seconds']:.1f} s, "
                   f"{logs['images_per_second']:.1f} images/s")
