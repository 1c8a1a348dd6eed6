"""The run folder: where one plan's checkpoints, logs and lock file live.

    runs/<plan>/
      plan.lock.toml   resolved plan + versions
      checkpoints/     see checkpoints.py
      history.csv      one row per epoch
      tb/              TensorBoard event files
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import tomli_w

from detplug.core.checkpoints import write_atomically


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
