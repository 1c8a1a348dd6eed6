"""history.csv: one row per epoch (period, learning rate, every loss part, validation
losses, seconds), written through the training hooks as a third-party logger would."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from detplug import hookimpl
from detplug.core.disk import write_atomically

PLUGIN_API = 1


def _read_history(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists():
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _write_history(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, buffer.getvalue())


@hookimpl
def detplug_train_start(run: Any) -> None:
    """Drop rows of epochs after the restored checkpoint: they are trained again."""
    header, rows = _read_history(run.folder.history)
    kept = [row for row in rows if int(row["epoch"]) <= run.start_epoch]
    if len(kept) != len(rows):
        _write_history(run.folder.history, header, kept)


@hookimpl
def detplug_epoch_end(run: Any, epoch: int, logs: dict[str, float]) -> None:
    header, rows = _read_history(run.folder.history)
    row = {"epoch": epoch, **{name: f"{value:.6g}" for name, value in logs.items()}}
    header = header + [name for name in row if name not in header]
    _write_history(run.folder.history, header, rows + [row])
