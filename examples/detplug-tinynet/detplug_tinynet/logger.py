"""detplug-tinynet's logger: one JSON object per epoch, one per line, in ``<run folder>/epochs.jsonl``.

A logger is a plugin module that implements detplug's training hooks; it has
its own entry point (``tinynet_jsonl``), so a user can switch it off alone with
``DETPLUG_DISABLE_PLUGINS=tinynet_jsonl``. No TensorFlow: ``logs`` holds
plain numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detplug import hookimpl

PLUGIN_API = 1

FILE_NAME = "epochs.jsonl"


def epochs_file(run: Any) -> Path:
    return Path(run.folder.path) / FILE_NAME


@hookimpl
def detplug_train_start(run: Any) -> None:
    """Drop the lines of epochs after the checkpoint the run resumes from: they train again,
    and a line must not appear twice."""
    path = epochs_file(run)
    if not path.exists():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= run.start_epoch]
    if len(kept) != len(lines):
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


@hookimpl
def detplug_epoch_end(run: Any, epoch: int, logs: dict[str, float]) -> None:
    path = epochs_file(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"epoch": epoch, **{name: float(value) for name, value in logs.items()}}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
