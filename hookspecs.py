"""The hooks a detplug plugin may implement, grouped by life-cycle.

A plugin is a module named by an entry point of group ``detplug``::

    [project.entry-points.detplug]
    my_backbones = "my_pkg.detplug_plugin"

It implements any of the hooks below with ``@detplug.hookimpl`` (marker
project name ``"detplug"``). Pluggy calls every implementation and collects
the results in a list, unless a hook says otherwise. This module imports
pluggy only: discovery never imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # annotations only: discovery must not import the training side
    from detplug.core.plan.plan_file import Period
    from detplug.core.plan.specs import Component
    from detplug.core.train.context import RunContext

PROJECT_NAME = "detplug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- discovery: called by registry.py (Registry.discover) and, for plan folders, by the command
# line (core/cli/main.py) when it looks a plan up; must not import TensorFlow --


@hookspec
def detplug_components() -> list[Component]:
    """Return the :class:`detplug.core.plan.specs.Component` objects this plugin provides.

    Names are unique per kind across all plugins; a clash between two
    distributions is an error naming both. The module returning them must
    import only attrs and ``detplug.core.plan.specs``: the ``factory`` strings point
    at sibling modules holding the TensorFlow code.
    """


@hookspec
def detplug_plan_dirs() -> list[Path]:
    """Return folders of plan files (``NAME.toml``) this plugin ships; ``--plan NAME``
    looks there after detplug's own ``plans/``."""


# -- training: called by core/train/training.py (a Run's stages) around the periods and epochs of a run --


@hookspec
def detplug_train_start(run: RunContext) -> None:
    """Training starts or resumes; ``run.start_epoch`` epochs are already done and kept.

    Loggers drop what they wrote about later epochs: a run that resumes from an older
    checkpoint than the newest (the newest could not be read) trains those epochs again."""


@hookspec
def detplug_period_start(run: RunContext, period: Period, index: int) -> None:
    """A period is about to train. ``run`` is the :class:`detplug.core.train.context.RunContext`
    (run folder, plan, model); ``period`` the :class:`detplug.core.plan.plan_file.Period`;
    ``index`` its 0-based position in the plan."""


@hookspec
def detplug_period_end(run: RunContext, period: Period, index: int) -> None:
    """A period has trained its last epoch, and that epoch's checkpoint is written. The
    results plot (plugins/loggers/results_plot.py) is redrawn here: between periods,
    where nothing waits on it."""


@hookspec
def detplug_epoch_end(run: RunContext, epoch: int, logs: dict[str, float]) -> None:
    """An epoch has ended and its checkpoint is written: a save that fails (a full disk)
    calls no hook, so no logger gets ahead of the checkpoints (the best checkpoint, chosen
    from ``logs``, is written after the hook). ``epoch`` is 1-based over the whole plan;
    ``logs`` maps names (``period``, ``learning_rate``, each training loss part, ``val_`` +
    each validation loss part, ``seconds``) to numbers.
    This is how loggers plug in: the built-in CSV and TensorBoard loggers implement it."""


@hookspec
def detplug_evaluation_end(run: RunContext, epoch: int, metrics: dict[str, float], grid: Path) -> None:
    """The evaluator ran on the validation split after ``epoch``: ``metrics`` are its
    results (also in that epoch's logs); ``grid`` is a PNG of validation images with
    predicted and ground-truth boxes drawn, unless ``[train] plots = false`` left it unwritten
    (check ``grid.is_file()``). The TensorBoard logger shows the grid."""


@hookspec
def detplug_train_end(run: RunContext) -> None:
    """Every period of the plan has trained (also called when there was nothing to do)."""
