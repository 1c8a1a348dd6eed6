"""Checkpoints that a kill at any moment cannot corrupt.

Each checkpoint is written with ``tf.train.Checkpoint`` into a temporary
folder, then renamed into place; only after that does ``state.json``
(replaced atomically) name it as the latest. A run killed during a write
therefore still finds the previous checkpoint. Layout::

    checkpoints/
      state.json           latest, epoch, kept, snapshots, best, and per checkpoint its epoch and
                           optimizer; the model and periods it was written for (core/train/resume.py)
      epoch-0003/ckpt.*    every epoch; the last ``keep_last`` are kept
      ep10/ckpt.*          period snapshots (save = true), named by their end epoch
      best/ckpt.*          the epoch with the lowest best_metric so far
      period_best/ckpt.*   with [train] patience, the current period's best evaluated epoch
                           (core/train/patience.py); state.json's stopped_early names the
                           periods that stopped early
      interrupted/ckpt.*   a run stopped by a signal, at the step it stopped after (core/train/preemption.py)
      ep10.weights.h5      a snapshot's model as plain Keras weights, for use outside detplug

Reading the state needs no TensorFlow, so a finished run is recognised at once.
A newest checkpoint that cannot be read is passed over, with a warning naming
it, for the one before; when none can be read, training stops with an error
rather than silently starting from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detplug.core.console import ON_STDERR
from detplug.core.disk import write_atomically, writing
from detplug.core.errors import CheckpointError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
PREFIX = "ckpt"
#: The checkpoint a run stopped by SIGTERM or SIGINT writes at the step it stopped after.
INTERRUPTED = "interrupted"


class CheckpointStore:
    def __init__(self, folder: Path, *, keep_last: int = 2) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last

    # -- reading, without TensorFlow --

    def state(self) -> dict[str, Any]:
        path = self.folder / STATE_FILE
        empty: dict[str, Any] = {"latest": None, "epoch": 0, "kept": [], "snapshots": [], "best": None,
                                 "checkpoints": {}}
        if not path.exists():
            return empty
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            int(state["epoch"])
            return {**empty, **state}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"{path} is unreadable ({error}); the run folder's checkpoints cannot be trusted: "
                f"fix it, or pass --restart to move them aside and start over"
            ) from None

    def epoch(self) -> int:
        """How many epochs the latest checkpoint has trained (0 when there is none)."""
        return int(self.state()["epoch"])

    def epoch_of(self, name: str) -> int:
        """The epoch after which checkpoint ``name`` (``epoch-0003``, a snapshot ``ep10``, ``best``)
        was written."""
        state = self.state()
        if name == "best" and state.get("best"):
            return int(state["best"]["epoch"])
        if name in state["checkpoints"]:
            return int(state["checkpoints"][name]["epoch"])
        digits = name.rpartition("-")[2] if name.startswith("epoch-") else name.removeprefix("ep")
        return int(digits) if digits.isdigit() else int(state["epoch"])

    # -- restoring --

    def restore(self, read: Callable[[str, dict[str, Any]], None]) -> tuple[int, dict[str, Any]]:
        """Restore the newest readable checkpoint with ``read(prefix, meta)``: the one a run
        stopped by a signal wrote inside the next epoch, if any, then the kept ones, newest first.

        Returns its epoch and meta (what ``save`` was given), or (0, {}) when
        the folder has no checkpoint.
        """
        state = self.state()
        candidates = [(self.folder / name / PREFIX, state["checkpoints"].get(name, {"epoch": state["epoch"]}))
                      for name in reversed(state["kept"])] if state["latest"] else []
        interrupted = state.get("interrupted")
        if interrupted and int(interrupted["in_epoch"]) == int(state["epoch"]) + 1:
            candidates.insert(0, (self.folder / INTERRUPTED / PREFIX, interrupted))
        if not candidates and not state["latest"]:
            return 0, {}
        failures = []
        for prefix, meta in candidates:
            try:
                read(str(prefix), meta)
            except Exception as error:  # TensorFlow raises several types for a bad file
                reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                failures.append(f"{prefix} ({reason})")
                log.warning(f"warning: checkpoint {prefix} cannot be read ({reason}); trying the one before it",
                            extra=ON_STDERR)
                continue
            return int(meta["epoch"]), meta
        raise CheckpointError(
            f"no checkpoint in {self.folder} can be read: {'; '.join(failures)}; nothing was started from "
            f"scratch: restore the files, or pass --restart to move them aside and start over"
        )

    def remove_leftovers(self) -> list[Path]:
        """Delete what a killed writer left half-done: ``.tmp-*`` checkpoint folders and weights
        files, ``.old-*`` folders and ``.state.json.tmp-*``. Only the holder of the run
        folder's writer lock calls this, so no live writer owns them. Returns what went."""
        if not self.folder.is_dir():
            return []
        removed = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith((".tmp-", ".old-", f".{STATE_FILE}.tmp-")):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # -- writing --

    def save_interrupted(self, checkpoint: Any, *, in_epoch: int, meta: dict[str, Any],
                         state_updates: dict[str, Any]) -> Path:
        """The checkpoint of a run stopped inside epoch ``in_epoch``, with ``meta`` (its progress);
        the next run restores it before any other, and the epoch's own checkpoint replaces it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write(checkpoint, INTERRUPTED)
        state = self.state()
        state.update(state_updates)
        state["interrupted"] = {**meta, "epoch": in_epoch - 1, "in_epoch": in_epoch}
        write_atomically(self.folder / STATE_FILE, json.dumps(state, indent=2) + "\n")
        return self.folder / INTERRUPTED

    def save(self, checkpoint: Any, epoch: int, *, meta: dict[str, Any], state_updates: dict[str, Any],
             snapshot: str | None = None, write_weights: Callable[[Path], None] | None = None) -> None:
        """Write the epoch's checkpoint (and the period snapshot), then name it in state.json."""
        with writing("the checkpoints folder", self.folder.parent):
            self.folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        name = f"epoch-{epoch:04d}"
        self._write(checkpoint, name)
        meta = {**meta, "epoch": epoch}
        if snapshot:
            self._write(checkpoint, snapshot)
            if write_weights is not None:
                self._write_weights(write_weights, snapshot)
            state["snapshots"] = sorted(set(state["snapshots"]) | {snapshot})
        kept = [k for k in state["kept"] if k != name] + [name]
        dropped, kept = kept[:-self.keep_last], kept[-self.keep_last:]
        checkpoints = {k: v for k, v in state["checkpoints"].items() if k in kept}
        checkpoints[name] = meta
        state.update(state_updates, latest=name, epoch=epoch, kept=kept, checkpoints=checkpoints)
        state.pop("interrupted", None)  # this epoch's checkpoint supersedes one taken inside it
        write_atomically(self.folder / STATE_FILE, json.dumps(state, indent=2) + "\n")
        for old in [*dropped, INTERRUPTED]:
            shutil.rmtree(self.folder / old, ignore_errors=True)

    def save_best_if_better(self, checkpoint: Any, epoch: int, *, metric: str, value: float,
                            higher_is_better: bool = False,
                            write_weights: Callable[[Path], None] | None = None, name: str = "best",
                            period: int | None = None, meta: dict[str, Any] | None = None) -> bool:
        """Keep this epoch as ``name`` (``best``) when ``value`` of ``metric`` is the best so far
        (the lowest for a loss, the highest for an accuracy such as AP). When ``checkpoint``
        was just saved as this epoch's checkpoint, it links to its files instead of writing
        them again. With ``period`` the record is that period's alone: one of another period
        counts as none (``period_best``). ``meta`` (the optimizer key) goes into the record."""
        state = self.state()
        best = state.get(name)
        if best and best.get("metric") == metric and best.get("period") == period:
            better = value > best["value"] if higher_is_better else value < best["value"]
            if not better:
                return False
        self.folder.mkdir(parents=True, exist_ok=True)
        saved = f"epoch-{epoch:04d}"
        if state["latest"] == saved and (self.folder / saved).is_dir():
            self._link(saved, name)
        else:
            self._write(checkpoint, name)
        if write_weights is not None:
            self._write_weights(write_weights, name)
        state[name] = {**(meta or {}), "metric": metric, "value": value, "epoch": epoch,
                       **({} if period is None else {"period": period})}
        write_atomically(self.folder / STATE_FILE, json.dumps(state, indent=2) + "\n")
        return True

    def _write(self, checkpoint: Any, name: str) -> None:
        temporary = self.folder / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        with writing(f"checkpoint '{name}'", self.folder):
            try:
                checkpoint.write(str(temporary / PREFIX))
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)  # nothing half-written stays
                raise
            self._put_in_place(temporary, name)

    def _link(self, source: str, name: str) -> None:
        """Checkpoint ``name`` as a copy of checkpoint ``source``: hard links where the file
        system has them (checkpoint files are never changed in place, only replaced)."""
        temporary = self.folder / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)

        def link_or_copy(from_path: str, to_path: str) -> None:
            try:
                os.link(from_path, to_path)
            except OSError:
                shutil.copy2(from_path, to_path)

        with writing(f"checkpoint '{name}'", self.folder):
            try:
                shutil.copytree(self.folder / source, temporary, copy_function=link_or_copy)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
            self._put_in_place(temporary, name)

    def _put_in_place(self, temporary: Path, name: str) -> None:
        final = self.folder / name
        if final.exists():  # an older one of the same name, or one a killed run left unnamed
            # Moved aside, not deleted, until the new one is in place.
            previous = self.folder / f".old-{name}-{os.getpid()}"
            os.replace(final, previous)
            os.replace(temporary, final)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(temporary, final)

    def _write_weights(self, write_weights: Callable[[Path], None], name: str) -> None:
        weights = self.folder / f"{name}.weights.h5"
        temporary = weights.with_name(f".tmp-{os.getpid()}-{weights.name}")
        with writing(weights.name, self.folder):
            try:
                write_weights(temporary)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            os.replace(temporary, weights)
