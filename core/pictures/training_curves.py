"""results.png: every column of history.csv against epochs, the period boundaries marked.

history.csv (plugins/loggers/csv_history.py) holds, per epoch: ``period``,
``learning_rate``, the training loss parts (the columns between ``learning_rate`` and
``seconds``, in the order the loss combination gives them: ``ciou/8``, ..., ``ciou``,
..., ``total``), ``seconds``, ``images_per_second``, the validation loss parts
(``val_`` + a part) and, on the epochs that were evaluated, the evaluator's metrics.

The picture has one panel per loss part (training solid, validation dashed; a part's
per-stride terms such as ``ciou/8`` thin beside it), one for the learning rate, and one
per group of metrics: the metrics named ``GROUP/...`` (a class: ``Car/moderate/AP40``)
share a panel, and those without a ``/`` (``mAP_moderate_AP40``, ``mAP``) share one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from detplug.core.pictures import DPI, figure, save_png

#: Columns that are bookkeeping, not curves.
_NOT_PLOTTED = ("epoch", "period", "seconds", "images_per_second")
PANEL_INCHES = (4.0, 2.8)
TITLE_INCHES = 0.4
COLUMNS = 4


@attrs.frozen
class Panel:
    """One plot: its title and its lines, each (label, column, style)."""

    title: str
    lines: tuple[tuple[str, str, str], ...]
    log_scale: bool = False


def read_history(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """history.csv's header and rows, every cell a float (NaN where empty)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = [{name: _number(row.get(name)) for name in header} for row in reader]
    return header, rows


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def panels(header: Sequence[str]) -> list[Panel]:
    """The panels for a history with this header (see the module's docstring)."""
    loss_parts = _loss_parts(header)
    found: list[Panel] = []
    for part in [name for name in loss_parts if "/" not in name]:
        lines = [(part, part, "train")]
        if f"val_{part}" in header:
            lines.append((f"val {part}", f"val_{part}", "val"))
        lines += [(name[len(part):], name, "term") for name in loss_parts if name.startswith(f"{part}/")]
        found.append(Panel(f"loss: {part}", tuple(lines)))
    if "learning_rate" in header:
        found.append(Panel("learning rate", (("learning rate", "learning_rate", "train"),), log_scale=True))
    groups: dict[str, list[str]] = {}
    for name in _metrics(header, loss_parts):
        group = name.split("/", 1)[0] if "/" in name else "summary"
        groups.setdefault(group, []).append(name)
    for group, names in groups.items():
        prefix = f"{group}/" if group != "summary" else ""
        found.append(Panel(f"metric: {group}", tuple((name[len(prefix):], name, "metric") for name in names)))
    return found


def _loss_parts(header: Sequence[str]) -> list[str]:
    if "seconds" not in header:
        return []
    start = header.index("learning_rate") + 1 if "learning_rate" in header else 0
    return [name for name in header[start:header.index("seconds")] if name not in _NOT_PLOTTED]


def _metrics(header: Sequence[str], loss_parts: Sequence[str]) -> list[str]:
    taken = set(_NOT_PLOTTED) | {"learning_rate"} | set(loss_parts)
    return [name for name in header if name not in taken and not name.startswith("val_")]


_STYLES: dict[str, dict[str, Any]] = {"train": {"linewidth": 1.8}, "val": {"linewidth": 1.8, "linestyle": "--"},
           "term": {"linewidth": 0.8, "alpha": 0.6}, "metric": {"linewidth": 1.5, "marker": "o", "markersize": 3}}


def draw_results(history: Path, out: Path, *, title: str = "") -> Path:
    """Draw ``history`` (a history.csv) into the PNG ``out``; see the module's docstring."""
    from matplotlib.ticker import MaxNLocator

    header, rows = read_history(history)
    chosen = panels(header)
    columns, lines_of_panels, width, height = _layout(len(chosen))
    fig, _ = figure(width, height)
    if title:
        fig.suptitle(title)
    epochs = [row["epoch"] for row in rows]
    boundaries = _period_boundaries(rows)
    for index, panel in enumerate(chosen):
        axis = fig.add_subplot(lines_of_panels, columns, index + 1)
        for label, column, style in panel.lines:
            points = [(epoch, row[column]) for epoch, row in zip(epochs, rows) if math.isfinite(row[column])]
            if points:
                axis.plot(*zip(*points), label=label, **_STYLES[style])
        for boundary in boundaries:
            axis.axvline(boundary, color="grey", linewidth=0.8, linestyle=":")
        if panel.log_scale and all(row[column] > 0 for row in rows for _, column, _ in panel.lines
                                   if math.isfinite(row[column])):
            axis.set_yscale("log")
        axis.set_title(panel.title, fontsize=10)
        axis.set_xlabel("epoch", fontsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=6, loc="best")
    return save_png(fig, out, f"the training curves {Path(out).name}")


def _period_boundaries(rows: Sequence[dict[str, float]]) -> list[float]:
    """Where one period ends and the next begins, between their epochs."""
    return [(before["epoch"] + after["epoch"]) / 2 for before, after in zip(rows, rows[1:])
            if math.isfinite(before.get("period", math.nan)) and before.get("period") != after.get("period")]


def _layout(count: int) -> tuple[int, int, float, float]:
    """Panels per line, lines, and the figure's width and height in inches, for ``count`` panels."""
    columns = min(COLUMNS, max(1, count))
    lines = math.ceil(max(1, count) / columns)
    return columns, lines, PANEL_INCHES[0] * columns, PANEL_INCHES[1] * lines + TITLE_INCHES


def image_size(history: Path) -> tuple[int, int]:
    """The (width, height) in pixels that :func:`draw_results` gives ``history``'s picture."""
    _, _, width, height = _layout(len(panels(read_history(history)[0])))
    return round(width * DPI), round(height * DPI)
