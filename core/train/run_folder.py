"""The run folder: where one plan's checkpoints, logs and lock file live.

    runs/<plan>/
      .writer.lock     held (flock) by the one process training into the folder; its PID and host
      plan.lock.toml   resolved plan + versions
      checkpoints/     see checkpoints.py
      history.csv      one row per epoch
      tb/              TensorBoard event files
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from detplug.core.disk import write_atomically, writing
from detplug.core.errors import RunFolderBusy

#: The file a training run holds an exclusive flock on; it names the holder.
WRITER_LOCK = ".writer.lock"


@attrs.frozen
class RunFolder:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def lock(self) -> Path:
        return self.path / "plan.lock.toml"

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the folder's writer lock while the block runs: one training run per folder.

        An OS lock (flock) on ``.writer.lock``, which the holder's PID and host are written
        into. A second process fails at once with a RunFolderBusy naming them; a process
        that dies, even by kill -9, releases the lock with its file descriptors, so what it
        left in the file is only a note. Readers (--evaluate, --predict, --export) take no
        lock: checkpoints are renamed into place and state.json replaced atomically.
        """
        path = self.path / WRITER_LOCK
        with writing(f"the writer lock {WRITER_LOCK}", self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+", encoding="utf-8")  # closed by the with below
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunFolderBusy(
                    f"run folder {self.path} is being trained by {holder} (it holds {path}); wait for that run "
                    f"to end or stop it, or train into another --workdir"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on host {socket.gethostname()} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_lock(self, document: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomically(self.lock, tomli_w.dumps(document))

    def move_aside(self) -> Path | None:
        """``--restart``: move checkpoints, history and TensorBoard logs into
        ``replaced-<time>/`` so that a new run starts clean and nothing is lost."""
        present = [p for p in (self.checkpoints, self.history, self.tensorboard) if p.exists()]
        if not present:
            return None
        target = self.path / time.strftime("replaced-%Y%m%d-%H%M%S")
        target.mkdir(parents=True)
        for path in present:
            os.replace(path, target / path.name)
        return target
