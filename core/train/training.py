"""Training a checked plan, period by period (the original framework's train_by_plan).

Periods run in order; a period's end epoch is the running sum of epochs. On
start the run reads its own checkpoint state: finished periods are skipped,
a half-done period resumes at the next epoch with model, optimizer and
epoch restored, and a finished plan trains nothing. Data order and
augmentation are functions of (seed, epoch) and the learning rate of (period,
step), so a resumed run repeats exactly what an uninterrupted one does.

:class:`Run` owns a run, as detectron2's TrainerBase owns its loop: the checkpoint
store, the session, the datasets, the stop signals and the worker's role are its
state, and its stages go one way, plan (the run folder's state) -> build (strategy,
model, datasets) -> train (periods, epochs). Hooks see it through its
:class:`~detplug.core.train.context.RunContext`. Its batches come from batches.py,
the lines it prints from reports.py.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from detplug.core.console import warnings_only_unless_verbose
from detplug.core.errors import first_few
from detplug.core.plan.check import CheckedPlan, training_sizes
from detplug.core.plan.plan_file import Period, Plan
from detplug.core.train import distribute, patience
from detplug.core.train.batches import (
    check_file_sharding,
    input_pipeline,
    report_positives,
    training_batches,
    worker_training_batches,
)
from detplug.core.train.checkpoints import PREFIX, CheckpointStore
from detplug.core.train.context import Evaluation, RunContext, WorkerRole
from detplug.core.train.distribute import worker_role
from detplug.core.train.preemption import EpochProgress, Interrupted, Stopped, StopSignals
from detplug.core.train.reports import epoch_summary, print_final_report, resume_command
from detplug.core.train.resume import check_resumable, model_description, period_records
from detplug.core.train.run_folder import RunFolder

if TYPE_CHECKING:
    from detplug.core.data.pipeline import InputPipeline
    from detplug.core.data.prepared import PreparedData
    from detplug.core.evaluate.contract import Evaluator
    from detplug.core.train.session import TrainingSession
    from detplug.core.train.trainer import Trainer
    from detplug.registry import Registry

log = logging.getLogger(__name__)


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
    data = DataOptions(data_root=data_root, cache_dir=cache_dir, skip_bad=skip_bad)
    if role.is_chief:
        # Only the chief writes the (shared) run folder, so only the chief locks it.
        with folder.writer():
            return Run(checked, registry, folder=folder, resume_from=folder, shared=folder, role=role,
                       data=data).train(restart=restart)
    # The other workers repeat the chief's lines: they say only warnings unless --verbose.
    with (warnings_only_unless_verbose(),
          tempfile.TemporaryDirectory(prefix=f"detplug-{role.task_type}{role.index}-") as scratch):
        log.info(f"{role.describe()}: the chief writes {folder.path}; this worker's copies go to {scratch}")
        own = RunFolder(Path(scratch))
        # With --restart the chief moves the old run aside and every worker starts afresh.
        return Run(checked, registry, folder=own, resume_from=own if restart else folder, shared=folder,
                   role=role, data=data).train(restart=False)


@attrs.frozen
class DataOptions:
    """Where a run's datasets come from: ``--data-root``, the records cache, ``--skip-bad``."""

    data_root: Path | None = None
    cache_dir: Path | None = None
    skip_bad: bool = False


@attrs.define
class PeriodRun:
    """One period of a run as its epochs share it: set up by :meth:`Run.start_period`."""

    period: Period
    index: int
    #: Epochs before the period (its first is ``start + 1``) and the last one done before this
    #: process started it (``start``, or a later epoch when resumed inside the period).
    start: int
    resume_after: int
    #: How far epoch ``resume_after + 1`` got before a signal stopped the run, if it did.
    progress: EpochProgress | None
    trainer: Trainer
    prepared: PreparedData
    pipeline: InputPipeline
    evaluator: Evaluator | None
    evaluate_every: int
    train_steps: int
    val_steps: int
    #: The learning rate at a step of the period (0-based): core/train/optimizers.learning_rate_at.
    rate_at: Callable[[int], float]
    #: What every checkpoint of the period records besides the weights (core/train/resume.py).
    state_updates: dict[str, Any]
    train_batches: Any = None
    val_batches: Any = None

    @property
    def end(self) -> int:
        return self.start + self.period.epochs

    def first_step(self, epoch: int) -> int:
        """The period's step (0-based) that starts ``epoch``."""
        return (epoch - self.start - 1) * self.train_steps


class Run:
    """One training run of a checked plan, from its run folder's state to its last epoch.

    ``folder`` is where this process writes, ``resume_from`` whose checkpoints it resumes,
    ``shared`` the chief's run folder (the one a user resumes from); they differ under
    ``multi_worker`` only. :meth:`train` walks the stages in order, each a method:
    :meth:`open_checkpoints`, :meth:`build`, :meth:`resume`, :meth:`start`, then
    :meth:`run_period` for each period, which runs :meth:`run_epoch` for each epoch
    (:meth:`train_epoch`, :meth:`validate`, :meth:`evaluate`, :meth:`end_epoch`) until the
    period ends or, with [train] patience, :meth:`out_of_patience` ends it with :meth:`stop_early`.
    """

    # Set by the stages, in the order train() runs them.
    store: CheckpointStore
    source: CheckpointStore
    state: dict[str, Any]
    strategy: Any
    session: TrainingSession
    prepared: dict[str, PreparedData]
    pipelines: dict[str, InputPipeline]
    every: dict[str, int]
    evaluators: dict[str, Evaluator | None]

    def __init__(self, checked: CheckedPlan, registry: Registry, *, folder: RunFolder, resume_from: RunFolder,
                 shared: RunFolder, role: WorkerRole, data: DataOptions | None = None) -> None:
        self.checked, self.plan, self.registry = checked, checked.plan, registry
        self.folder, self.resume_from, self.shared = folder, resume_from, shared
        self.role, self.data = role, data or DataOptions()
        self.context = RunContext(folder=folder, checked=checked, start_epoch=0, role=role)
        #: Epochs done when this process started; the run's resume point.
        self.done = 0
        self.progress: EpochProgress | None = None
        self.signals = StopSignals()
        #: Under multi_worker, core/train/distribute.from_chief: the chief alone evaluates, and
        #: every worker takes the chief's best_metric from it.
        self.from_chief: Callable[[Sequence[float]], list[float]] | None = None

    def train(self, *, restart: bool = False) -> RunContext:
        """Train every period not yet done; ``restart`` moves the folder's old run aside first."""
        self.open_checkpoints(restart=restart)
        if self.done >= self.plan.total_epochs:
            log.info(f"every period of plan '{self.plan.name}' is done ({self.done}/{self.plan.total_epochs} epochs "
                     f"in {self.resume_from.path}); nothing to train")
            self.registry.hook.detplug_train_end(run=self.context)
            return self.context
        self.build()
        self.resume()
        self.start()
        with distribute.stop_loudly_if_a_worker_is_lost(self.role, CheckpointStore(self.shared.checkpoints)), \
                self.signals:
            if self.role.workers > 1:
                self.signals.agree_with(distribute.any_worker(self.strategy))
                self.from_chief = distribute.from_chief(self.strategy, self.role)
            for index in range(len(self.plan.periods)):
                self.run_period(index)
        self.registry.hook.detplug_train_end(run=self.context)
        if self.role.is_chief:
            print_final_report(self.context)
        return self.context

    # -- plan: what the run folder says is done --

    def open_checkpoints(self, *, restart: bool) -> None:
        """The checkpoint store, cleared of a killed save's leftovers, and the state to resume
        from, checked against the plan."""
        if restart:
            moved = self.folder.move_aside()
            if moved:
                log.info(f"--restart: moved the previous checkpoints and logs to {moved}")
        self.store = CheckpointStore(self.folder.checkpoints, keep_last=self.plan.train.run.keep_last)
        leftovers = self.store.remove_leftovers()
        if leftovers:
            log.info(f"removed {len(leftovers)} unfinished checkpoint file(s) a killed run left in "
                     f"{self.store.folder}: " + first_few([path.name for path in leftovers]))
        self.source = self.store if self.resume_from == self.folder else CheckpointStore(self.resume_from.checkpoints)
        self.state = self.source.state()
        check_resumable(self.state, self.checked, self.source.folder)
        self.done = self.context.start_epoch = int(self.state["epoch"])

    # -- build: strategy, model, datasets --

    def build(self) -> None:
        """The strategy and the model, every declared spec compared with its tensors, before
        any data is drawn or converted: a plan whose parts do not fit fails in seconds, not
        after minutes. Then the datasets of every period."""
        from detplug.core.data.datasets import prepare_datasets
        from detplug.core.train.session import TrainingSession, configure_tensorflow

        plan = self.plan
        for warning in self.checked.warnings:
            log.warning(f"warning: {warning}")
        self.strategy = configure_tensorflow(plan.train.run)
        if plan.train.run.strategy != "default":
            log.info(distribute.describe(self.strategy, plan.train.run.strategy, self.role))
        self.session = TrainingSession(self.checked, strategy=self.strategy)
        self.prepared = prepare_datasets(self.checked, data_root=self.data.data_root,
                                         cache_dir=self.data.cache_dir or default_cache_dir(),
                                         skip_bad=self.data.skip_bad,
                                         keys=dict.fromkeys(period.dataset for period in plan.periods))

    def resume(self) -> None:
        """Restore the checkpoint the run stopped at (after an epoch, or at a step inside one),
        or start a new run from ``[model] init_from``."""
        plan, session = self.plan, self.session
        if self.done or self.state.get("interrupted"):
            def read(prefix: str, meta: dict[str, Any]) -> None:
                # Into the model (and optimizer) of the period that wrote it (for a run stopped
                # inside an epoch, that epoch's); run_period switches to the next period's as
                # an uninterrupted run does.
                index = period_index_at(plan, int(meta.get("in_epoch", meta["epoch"])) - 1)
                session.use_period(plan.periods[index], index=index)
                session.restore(prefix, meta)

            self.done, meta = self.source.restore(read)
            if meta.get("progress"):
                self.progress = EpochProgress.from_json(meta["progress"])
            where = f"step {self.progress.steps} of epoch {self.done + 1}" if self.progress else f"epoch {self.done}"
            log.info(f"resuming plan '{plan.name}' after {where} from {self.source.folder}"
                     + (f" (init_from {plan.init_from} is for a new run only)" if plan.init_from is not None else ""))
        elif plan.init_from is not None:
            from detplug.core.model.init_from import initialise

            report = initialise(self.checked.first(), session.parts)
            assert report is not None
            log.info(report.describe())

    def start(self) -> None:
        """Every worker at the same epoch, the lock file written, the hooks told; then the
        input pipeline and the evaluator of each model of the run, whose traced steps serve
        every period on a dataset of the same chain."""
        from detplug.core.evaluate.collect import plan_evaluator
        from detplug.core.train.versions import lock_document

        checked, plan, role = self.checked, self.plan, self.role
        if role.workers > 1 and plan.train.run.shard_by == "file":
            check_file_sharding(plan, self.prepared, role.workers)
        if role.workers > 1:
            distribute.same_on_every_worker(
                self.strategy, self.done, "the epoch to resume after",
                "every worker must reach the chief's run folder at the same path (a shared file system); start "
                "them all with the same --workdir, or pass --restart to all of them to start over")
        self.context.start_epoch = self.done
        self.folder.write_lock(lock_document(checked, self.registry))
        self.context.model = self.session.model
        self.registry.hook.detplug_train_start(run=self.context)
        self.pipelines = {key: input_pipeline(checked.for_dataset(key)) for key in checked.chains}
        self.every = evaluation_schedule(plan, self.prepared, role)
        self.evaluators = {period.dataset: plan_evaluator(checked.for_dataset(period.dataset))
                           for period, (start, end) in zip(plan.periods, plan.period_bounds())
                           if any(_evaluates(plan, epoch, self.every[period.dataset])
                                  for epoch in range(max(start, self.done) + 1, end + 1))}

    # -- train: periods and epochs --

    def run_period(self, index: int) -> None:
        """Train the epochs of period ``index`` not yet done (was train_by_period)."""
        period, (start, end) = self.plan.periods[index], self.plan.period_bounds()[index]
        if end <= self.done:
            stopped = patience.stopped_early(self.state, index)
            log.info(f"period {index + 1} ({period.dataset}, epochs {start + 1}-{end}) is done"
                     + (f" (stopped early after epoch {stopped['epoch']})" if stopped else ""))
            return
        self.registry.hook.detplug_period_start(run=self.context, period=period, index=index)
        current = self.start_period(index)
        # Asked at the resume point too: a run killed after the epoch that ran out of patience
        # stops there on resuming, as the uninterrupted run did.
        epoch = current.resume_after
        while epoch < current.end and not self.out_of_patience(current, epoch):
            epoch += 1
            self.run_epoch(current, epoch)
        if epoch < current.end:
            self.stop_early(current, epoch)
        self.registry.hook.detplug_period_end(run=self.context, period=period, index=index)

    def start_period(self, index: int) -> PeriodRun:
        """Period ``index``'s model and trainer, its steps, learning-rate schedule and batches."""
        from detplug.core.data.pipeline import count_steps
        from detplug.core.train.optimizers import learning_rate_at

        checked, plan = self.checked, self.plan
        period, (start, end) = plan.periods[index], plan.period_bounds()[index]
        settings = period.settings
        trainer = self.session.use_period(period, index=index, announce=f"period {index + 1}")
        self.context.model = self.session.model
        prepared = self.prepared[period.dataset]
        train_steps = count_steps(prepared.images("train"), settings.batch_size, training=True)
        current = PeriodRun(
            period=period, index=index, start=start, resume_after=max(start, self.done),
            progress=self.progress if start <= self.done < end else None, trainer=trainer, prepared=prepared,
            pipeline=self.pipelines[period.dataset], evaluator=self.evaluators.get(period.dataset),
            evaluate_every=self.every[period.dataset], train_steps=train_steps,
            val_steps=count_steps(prepared.images("val"), settings.batch_size, training=False),
            rate_at=partial(learning_rate_at, base=period.learning_rate, settings=settings,
                            total_steps=train_steps * period.epochs, steps_per_epoch=train_steps),
            state_updates={"model": model_description(checked), "periods": period_records(checked),
                           "seed": plan.train.run.seed})
        self.feed(current)
        self.announce(current)
        return current

    def feed(self, current: PeriodRun) -> None:
        """The period's iterators: one for its training batches and one for validation, which
        repeats itself every epoch. Epoch e's batches depend only on (seed + e), so a resumed
        run takes exactly the batches an uninterrupted one does. The trainer may read them
        inside a tf.function ([train] steps_per_execution)."""
        checked, index, pipeline, prepared = self.checked, current.index, current.pipeline, current.prepared
        epochs = list(range(current.resume_after + 1, current.end + 1))
        done_steps = current.progress.steps if current.progress else 0
        by_file = self.plan.train.run.shard_by == "file" and self.role.workers > 1
        batches = None if by_file else training_batches(checked, index, pipeline, prepared.train_files, epochs)
        if current.resume_after == current.start and current.progress is None \
                and (index == 0 or index in checked.model_changes()):
            # The first epoch's batches as training takes them (the same dataset: not built twice).
            first = batches if batches is not None else training_batches(checked, index, pipeline,
                                                                         prepared.train_files, epochs)
            report_positives(self.session.view, first.take(current.train_steps), epoch=current.start + 1)
        if batches is None:
            current.train_batches = iter(worker_training_batches(
                self.context, self.session, index, pipeline, prepared, epochs, steps=current.train_steps,
                skip=done_steps))
        else:
            current.train_batches = iter(self.session.distribute(batches.skip(done_steps)))
        current.val_batches = iter(self.session.distribute(pipeline.dataset(
            prepared.val_files, batch_size=current.period.settings.batch_size, training=False).repeat())) \
            if current.val_steps else None

    def announce(self, current: PeriodRun) -> None:
        """The period's first line: its epochs, first learning rate, schedule and losses, and
        its multi-scale sizes."""
        from detplug.core.train.optimizers import describe_schedule

        plan, period, settings = self.plan, current.period, current.period.settings
        first_rate = current.rate_at((current.resume_after - current.start) * current.train_steps
                                     + (current.progress.steps if current.progress else 0))
        log.info(f"== period {current.index + 1}/{len(plan.periods)}: {period.dataset}, epochs "
                 f"{current.resume_after + 1}-{current.end} of {plan.total_epochs}, learning rate {first_rate:.3g} "
                 f"at its first step ({describe_schedule(period)}), losses '{period.losses}' ==")
        sizes = training_sizes(self.checked, current.index)
        if sizes:
            log.info(f"multi-scale: every {settings.multi_scale_every} batches one of {len(sizes)} input sizes, "
                     + ", ".join(f"{h}x{w}" for h, w in sizes))

    def run_epoch(self, current: PeriodRun, epoch: int) -> None:
        """Train ``epoch``, validate, evaluate when it is due, print its line and end it."""
        train = self.train_epoch(current, epoch)
        logs = {"period": current.index + 1,
                "learning_rate": current.rate_at(current.first_step(epoch) + current.train_steps - 1), **train}
        if current.val_steps:
            self.validate(current, epoch, logs)
        headline = self.evaluate(current, epoch, logs)
        log.info(epoch_summary(epoch, self.plan.total_epochs, logs, losses=list(train), metric=headline))
        self.end_epoch(current, epoch, logs)

    def train_epoch(self, current: PeriodRun, epoch: int) -> dict[str, Any]:
        """The training steps of ``epoch``; a damaged shard stops with its name, and a SIGTERM
        or SIGINT stops after the step in progress with a checkpoint there."""
        from detplug.core.data.integrity import naming_damaged_shards

        try:
            with naming_damaged_shards(current.prepared.train_files):
                return current.trainer.train_epoch(
                    current.train_batches, current.train_steps, epoch=epoch, learning_rate_at=current.rate_at,
                    first_step=current.first_step(epoch),
                    start=current.progress if epoch == current.resume_after + 1 else None,
                    stop_requested=self.signals.should_stop)
        except Interrupted as stop:
            self.session.mark(epoch=epoch - 1, period=current.index)
            saved = self.store.save_interrupted(
                self.session.checkpoint(), in_epoch=epoch, state_updates=current.state_updates,
                meta={**self.session.checkpoint_meta(), "progress": stop.progress.to_json()})
            raise Stopped(f"stopped on {self.signals.name()} after step {stop.progress.steps} of "
                          f"{current.train_steps} in epoch {epoch}: saved a checkpoint at that step in {saved}; "
                          f"resume with: {resume_command(self.context)}", self.signals.exit_code()) from None

    def validate(self, current: PeriodRun, epoch: int, logs: dict[str, Any]) -> None:
        """The validation losses of ``epoch`` into ``logs`` (``val_`` + each part), and their
        time into its seconds."""
        from detplug.core.data.integrity import naming_damaged_shards

        with naming_damaged_shards(current.prepared.val_files):
            val = current.trainer.validate(current.val_batches, current.val_steps, epoch=epoch)
        logs.update({f"val_{name}": value for name, value in val.items()
                     if name not in ("seconds", "images_per_second")})
        logs["seconds"] = logs["seconds"] + val["seconds"]

    def evaluate(self, current: PeriodRun, epoch: int, logs: dict[str, Any]) -> tuple[str, float] | None:
        """When ``epoch`` evaluates, the evaluator's metrics into ``logs`` and its headline
        (name, value) for the epoch's line. Under ``multi_worker`` the chief alone evaluates,
        and every worker takes the chief's best_metric."""
        if current.evaluator is None or not _evaluates(self.plan, epoch, current.evaluate_every):
            return None
        headline = None
        if self.role.is_chief:
            logs.update(self.evaluate_epoch(current.evaluator, current.prepared, epoch))
            assert self.context.last_evaluation is not None
            result = self.context.last_evaluation.result
            headline = (result.headline, result.headline_value)
        if self.from_chief is not None and self.plan.evaluation.best_metric:
            shared = _best_metric_from_chief(self.plan.evaluation.best_metric, logs, self.from_chief)
            headline = headline if self.role.is_chief else shared
        return headline

    def evaluate_epoch(self, evaluator: Evaluator, prepared: PreparedData, epoch: int) -> dict[str, float]:
        """The evaluator's metrics on the validation split (EMA weights when used), with a grid
        of drawn predictions written to predictions/epNN.png (unless [train] plots = false). The
        epoch's line shows the headline figure; the whole table is printed after the last epoch
        by :func:`print_final_report` (every figure is in history.csv and results.png)."""
        from detplug.core.evaluate.whole_images import evaluate_split, evaluation_subject

        run, session = self.context, self.session
        grid = run.folder.path / "predictions" / f"ep{epoch:02d}.png"
        with session.evaluation_weights():
            result = evaluate_split(session.model, session.view, evaluator, prepared,
                                    grid_path=grid if run.plan.train.run.plots else None)
        subject = evaluation_subject(prepared, run.plan.evaluation) or f"the {run.plan.evaluation.split} split"
        run.last_evaluation = Evaluation(epoch, result, grid, subject)
        self.registry.hook.detplug_evaluation_end(run=run, epoch=epoch, metrics=result.metrics, grid=grid)
        return dict(result.metrics)

    def end_epoch(self, current: PeriodRun, epoch: int, logs: dict[str, Any]) -> None:
        """Log ``epoch``, write its checkpoint (the period's snapshot after its last epoch, and
        best when its metric is), then stop here if a signal asked to."""
        plan, session, store = self.plan, self.session, self.store
        snapshot = f"ep{epoch:02d}" if current.period.save and epoch == current.end else None
        session.mark(epoch=epoch, period=current.index)
        store.save(session.checkpoint(), epoch, meta=session.checkpoint_meta(), state_updates=current.state_updates,
                   snapshot=snapshot, write_weights=session.write_weights)
        if snapshot:
            log.info(f"saved period snapshot {store.folder / snapshot}")
        # Logged only once the epoch's checkpoint is written: a save that fails (a full disk)
        # leaves history.csv without a row ahead of the checkpoints. Before the best
        # checkpoint, so that a failing best save leaves the row of the latest one.
        self.registry.hook.detplug_epoch_end(run=self.context, epoch=epoch, logs=logs)
        self.keep_best(current, epoch, logs)
        if (epoch < current.end or current.index + 1 < len(plan.periods)) and self.signals.should_stop():
            # The signal came during validation, evaluation or the save: the epoch is safe.
            raise Stopped(f"stopped on {self.signals.name()} after epoch {epoch}, whose checkpoint is saved in "
                          f"{store.folder}; resume with: {resume_command(self.context)}", self.signals.exit_code())

    def keep_best(self, current: PeriodRun, epoch: int, logs: dict[str, Any]) -> None:
        """Keep ``epoch`` as ``best`` when its [evaluation] best_metric (else its [train]
        best_metric) is the best so far, and, with [train] patience, as ``period_best`` when
        its evaluation is the period's best so far."""
        plan, session, store = self.plan, self.session, self.store
        metric, higher = plan.evaluation.best_metric, True
        if metric not in logs:
            if (store.state().get("best") or {}).get("metric") == metric:
                return  # an epoch without evaluation cannot displace an evaluated best
            metric, higher = plan.train.run.best_metric, False
        if metric not in logs:
            return
        store.save_best_if_better(session.checkpoint(), epoch, metric=metric, value=float(logs[metric]),
                                  higher_is_better=higher, write_weights=session.write_weights)
        if plan.train.run.patience and metric == plan.evaluation.best_metric:
            store.save_best_if_better(session.checkpoint(), epoch, metric=metric, value=float(logs[metric]),
                                      higher_is_better=True, name=patience.PERIOD_BEST, period=current.index,
                                      meta=session.checkpoint_meta())

    def period_best(self, index: int) -> tuple[CheckpointStore, dict[str, Any] | None]:
        """Period ``index``'s best evaluated epoch and the store that holds it: this process's,
        else (a worker resuming from the chief's folder) the one it resumed from."""
        for store in (self.store, self.source):
            record = patience.period_best(store.state(), index)
            if record is not None:
                return store, record
        return self.store, None

    def out_of_patience(self, current: PeriodRun, epoch: int) -> bool:
        """Whether the period stops early after ``epoch`` ([train] patience, core/train/patience.py),
        or stopped before the plan gave it more epochs."""
        if not self.plan.train.run.patience or epoch <= current.start:
            return False
        if any(patience.stopped_early(store.state(), current.index) for store in (self.store, self.source)):
            return True
        _, best = self.period_best(current.index)
        evaluated = current.evaluator is not None and _evaluates(self.plan, epoch, current.evaluate_every)
        return patience.out_of_patience(epoch=epoch, period_start=current.start, patience=self.plan.train.run.patience,
                                        best_epoch=None if best is None else int(best["epoch"]), evaluated=evaluated)

    def stop_early(self, current: PeriodRun, epoch: int) -> None:
        """End the period after ``epoch``: the model goes back to the period's best evaluated
        epoch (its optimizer too, as Ultralytics' best.pt), saved as the checkpoint of the
        period's last epoch (and its snapshot), so that the next period, a resumed run and
        an uninterrupted one all start from it. The skipped epochs have no history.csv row;
        state.json's stopped_early says where the period stopped and which epoch it kept."""
        plan, session, index = self.plan, self.session, current.index
        holder, best = self.period_best(index)
        if best is not None:
            session.restore(str(holder.folder / patience.PERIOD_BEST / PREFIX), best)
        skipped = f"epoch {current.end}" if epoch + 1 == current.end else f"epochs {epoch + 1}-{current.end}"
        kept = "its last epoch's" if best is None else f"epoch {best['epoch']}'s ({best['metric']} {best['value']:.4g})"
        log.info(f"period {index + 1}: no better {plan.evaluation.best_metric} for {plan.train.run.patience} epoch(s) "
                 f"([train] patience): stopped early after epoch {epoch}, skipping {skipped}; "
                 f"the period ends with {kept} weights")
        state = self.store.state()
        record = patience.stopped_early(state, index) or {"epoch": epoch, "best": best}
        snapshot = f"ep{current.end:02d}" if current.period.save else None
        session.mark(epoch=current.end, period=index)
        self.store.save(session.checkpoint(), current.end, meta=session.checkpoint_meta(), snapshot=snapshot,
                        state_updates={**current.state_updates, patience.STOPPED_EARLY: {
                            **(state.get(patience.STOPPED_EARLY) or {}), str(index + 1): record}},
                        write_weights=session.write_weights)
        if snapshot:
            log.info(f"saved period snapshot {self.store.folder / snapshot} (epoch {current.end})")


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
    from detplug.core.evaluate.whole_images import evaluation_subject
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
            subject = evaluation_subject(data, plan.evaluation) or f"{split} split"
            log.info(f"evaluation on {key}'s {subject}: {when} and after the last ({why}){where}")
    return every


def _evaluates(plan: Plan, epoch: int, every: int) -> bool:
    return epoch == plan.total_epochs or (every > 0 and epoch % every == 0)
