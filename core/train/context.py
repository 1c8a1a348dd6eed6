"""What a plugin's hooks see of a training run: :class:`RunContext` and :class:`WorkerRole`.

``hookspecs.py`` names these types, so this module stays a leaf: it imports attrs, and
the plan and the run folder for annotations only, never the training side (training.py,
the session, the trainers, TensorFlow). A plugin reads these fields; their names are the
hooks' contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

if TYPE_CHECKING:
    from detplug.core.plan.check import CheckedPlan
    from detplug.core.plan.plan_file import Plan
    from detplug.core.train.run_folder import RunFolder


class Evaluation(NamedTuple):
    """An evaluation during training: after ``epoch``, its ``result`` (an EvaluationResult),
    the drawn grid's ``grid`` path (unwritten under [train] plots = false) and ``subject``,
    what was scored: ``the val split``, or ``3 whole val images (sliced: 320 px tiles, ...)``."""

    epoch: int
    result: Any
    grid: Path
    subject: str


@attrs.frozen
class WorkerRole:
    """This process's place in a multi-worker cluster (a single process is the chief)."""

    task_type: str = "chief"
    index: int = 0
    workers: int = 1
    has_chief: bool = False  # the cluster names a separate chief task

    @property
    def is_chief(self) -> bool:
        """The one process that writes the run folder: the ``chief`` task, or worker 0 when
        the cluster has no chief (TensorFlow's rule)."""
        return self.task_type == "chief" or (self.index == 0 and not self.has_chief)

    def describe(self) -> str:
        return f"{self.task_type} {self.index} of {self.workers} processes"


@attrs.define
class RunContext:
    """What hooks see of a run: its folder, plan, model and where it started."""

    folder: RunFolder
    checked: CheckedPlan
    start_epoch: int
    model: Any = None
    #: The latest :class:`Evaluation`, if any (under ``multi_worker`` the chief's only: the
    #: other workers do not evaluate).
    last_evaluation: Evaluation | None = None
    #: This process's place in a multi-worker cluster; a single process is the chief.
    role: WorkerRole = attrs.field(factory=WorkerRole)

    @property
    def plan(self) -> Plan:
        return self.checked.plan
