"""SIGTERM and SIGINT end a run with a checkpoint at the step in progress, not a loss.

Cluster schedulers and preemptible machines send SIGTERM, then SIGKILL a little later.
While :class:`StopSignals` is active, the first SIGTERM or SIGINT only sets a flag: the
trainer finishes the step in progress, the run writes a checkpoint at that step (model,
optimizer, and where in the epoch it stopped) and exits with 128 + the signal's number
(143, 130) after printing the command that resumes. A second signal stops at once.

Under ``multi_worker`` a signal reaches one worker, but every worker must stop after the
same step, or the others would wait forever in the next step's all-reduce. There the
workers check together (:meth:`StopSignals.agree_with`, an all-reduce of their flags
between steps) and all stop, with exit code 143, when any of them was signalled.

The data's position needs no iterator state: an epoch's batches are a function of (seed,
epoch) alone (core/data/pipeline.py), so the resumed run skips the batches already
trained. A ``tf.train.Checkpoint`` of the tf.data iterator would save the same position
together with its shuffle and prefetch buffers.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import attrs

from detplug.core.console import ON_STDERR
from detplug.core.errors import DetplugError

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)


@attrs.define
class EpochProgress:
    """How far an epoch got: its steps done, images seen, seconds, and the sums of each loss part."""

    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> EpochProgress:
        return cls(int(value["steps"]), int(value["images"]), float(value["seconds"]),
                   {str(k): float(v) for k, v in value["sums"].items()})


class Interrupted(Exception):  # noqa: N818 -- control flow inside the epoch loop, not an error
    """Raised by the trainer between steps when a stop was requested."""

    def __init__(self, progress: EpochProgress) -> None:
        super().__init__(f"stopped after step {progress.steps}")
        self.progress = progress


class Stopped(DetplugError):
    """The run stopped on a signal after saving its checkpoint; run.py exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StopSignals:
    """A context in which SIGTERM and SIGINT request a stop instead of ending the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._agree: Callable[[bool], bool] | None = None
        self._agreed = False

    @property
    def requested(self) -> bool:
        """A signal reached this process."""
        return self.received is not None

    def agree_with(self, agree: Callable[[bool], bool]) -> None:
        """Decide together with the other workers: ``agree(flag)`` is called by every worker
        at the same point and is True on all when any one's flag is
        (core/train/distribute.any_worker)."""
        self._agree = agree

    def should_stop(self) -> bool:
        """Stop now? Called between steps (by every worker at the same steps)."""
        if self._agree is None:
            return self.requested
        self._agreed = self._agreed or self._agree(self.requested)
        return self._agreed

    def name(self) -> str:
        if self.received is None:
            return "another worker's stop signal" if self._agreed else ""
        return signal.Signals(self.received).name

    def exit_code(self) -> int:
        """128 + the signal's number; 143 (SIGTERM's) on a worker stopped by another's."""
        return 128 + int(self.received or signal.SIGTERM)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # the second one: stop at once, as without us
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.received = signum
        log.warning(f"\nreceived {signal.Signals(signum).name}: finishing the step in progress, then saving a "
                    f"checkpoint (send it again to stop at once)", extra=ON_STDERR)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
