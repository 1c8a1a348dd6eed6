"""The run folder: where one plan's checkpoints, logs and lock file live.

    runs/<plan>/
      plan.lock.toml   resolved plan + versions
      checkpoints/     see checkpoints.py
      history.csv      one row per epoch
      tb/              TensorBoard event files
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from detplug.core.train.checkpoints import write_atomically


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
