"""Checkpoints that a kill at any moment cannot corrupt.

Each checkpoint is written with ``tf.train.Checkpoint`` into a temporary
folder, then renamed into place; only after that does ``state.json``
(replaced atomically) name it as the latest. A run killed during a write
therefore still finds the previous checkpoint. Layout::

    checkpoints/
      state.json           {"latest": "epoch-0003", "epoch": 3, "kept": [...], "snapshots": [...]}
      epoch-0003/ckpt.*    every epoch; the last ``keep_last`` are kept
      ep10/ckpt.*          period snapshots (save = true), named by their end epoch
      ep10.weights.h5      the same model as plain Keras weights, for use outside detplug

Reading the state needs no TensorFlow, so a finished run is recognised at once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from detplug.core.errors import CheckpointError

STATE_FILE = "state.json"
PREFIX = "ckpt"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never a mix."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class CheckpointStore:
    def __init__(self, folder: Path, *, keep_last: int = 2) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last

    # -- reading, without TensorFlow --

    def state(self) -> dict[str, Any]:
        path = self.folder / STATE_FILE
        if not path.exists():
            return {"latest": None, "epoch": 0, "kept": [], "snapshots": []}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            int(state["epoch"])
            return state
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"{path} is unreadable ({error}); the run folder's checkpoints cannot be trusted: "
                f"fix or remove {self.folder} to start over"
            ) from None

    def epoch(self) -> int:
        """How many epochs the latest checkpoint has trained (0 when there is none)."""
        return int(self.state()["epoch"])

    # -- writing and restoring, with a tf.train.Checkpoint --

    def restore(self, checkpoint: Any) -> int:
        state = self.state()
        if not state["latest"]:
            return 0
        prefix = self.folder / state["latest"] / PREFIX
        try:
            checkpoint.read(str(prefix)).assert_existing_objects_matched()
        except Exception as error:  # TensorFlow raises several types for a bad file
            raise CheckpointError(
                f"cannot restore checkpoint {prefix} ({type(error).__name__}: {str(error).splitlines()[0]}); "
                f"if the plan's model changed, train into another --workdir"
            ) from None
        return int(state["epoch"])

    def save(self, checkpoint: Any, epoch: int, *, snapshot: str | None = None, model: Any = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        name = f"epoch-{epoch:04d}"
        self._write(checkpoint, name)
        if snapshot:
            self._write(checkpoint, snapshot)
            if model is not None:
                weights = self.folder / f"{snapshot}.weights.h5"
                temporary = weights.with_name(f".tmp-{os.getpid()}-{weights.name}")
                model.save_weights(str(temporary))
                os.replace(temporary, weights)
            state["snapshots"] = sorted(set(state["snapshots"]) | {snapshot})
        kept = [k for k in state["kept"] if k != name] + [name]
        dropped, kept = kept[:-self.keep_last], kept[-self.keep_last:]
        state.update(latest=name, epoch=epoch, kept=kept)
        write_atomically(self.folder / STATE_FILE, json.dumps(state, indent=2) + "\n")
        for old in dropped:
            shutil.rmtree(self.folder / old, ignore_errors=True)

    def _write(self, checkpoint: Any, name: str) -> None:
        temporary = self.folder / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        checkpoint.write(str(temporary / PREFIX))
        final = self.folder / name
        if final.exists():  # left by a run killed after the rename but before state.json named it
            shutil.rmtree(final)
        os.replace(temporary, final)
