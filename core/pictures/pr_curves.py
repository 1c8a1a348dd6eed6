"""The precision-recall picture of ``--evaluate``: one line per class, as the evaluator
computed its AP from it.

The curves come from :attr:`EvaluationResult.curves` (the KITTI devkit's 41 points at
moderate difficulty, COCOeval's 101 at IoU 0.50), never recomputed here, so the AP in
the legend is the evaluator's own figure and the line is what that figure averages.
A class without ground truth has no curve to show (NaN AP): it is left out and named
under the title, so a missing line is never mistaken for a class the model misses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from detplug.core.evaluate.contract import EvaluationResult, PrecisionRecall
from detplug.core.pictures import figure, save_png

#: The picture's file name, in the run folder or beside --json's file.
FILE_NAME = "pr_curve.png"
#: Inches; at the figures' 100 dpi, a 700 x 500 pixel PNG.
WIDTH, HEIGHT = 7.0, 5.0
#: Room above a precision of 1, so a perfect class's line is not hidden by the frame.
PRECISION_TOP = 1.02


def pr_curve_path(run_folder: Path, json_path: Path | None) -> Path:
    """Where ``--evaluate`` writes the picture: beside its JSON when it writes one (the
    two belong together), otherwise in the run folder."""
    return (json_path.parent if json_path is not None else run_folder) / FILE_NAME


def write_pr_curves(result: EvaluationResult, path: Path) -> str:
    """Draw ``result``'s curves into ``path`` and return the line to print: ``wrote
    <path>``, or why nothing was drawn (an evaluator is free to give no curves)."""
    if not result.curves:
        return (f"note: no PR curve was drawn because evaluator '{result.evaluator}' gives none; "
                f"fill EvaluationResult.curves in the evaluator to have {FILE_NAME}")
    draw_pr_curves(result, path)
    return f"wrote {path}"


def draw_pr_curves(result: EvaluationResult, path: Path) -> Path:
    """One axis, recall against precision, a line per class with ground truth; written
    whole or not at all (a disk fault is one sentence naming the picture)."""
    fig, _ = figure(WIDTH, HEIGHT)
    axis = fig.add_subplot()
    drawn, undefined = _split_by_ap(result.curves)
    for name, curve in drawn.items():
        axis.plot(curve.recall, curve.precision, linewidth=1.5, label=legend_label(name, curve))
    axis.set_xlim(0.0, 1.0)
    axis.set_ylim(0.0, PRECISION_TOP)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.grid(True, alpha=0.3)
    if drawn:
        axis.legend(loc="best")
    axis.set_title(title(result.evaluator, result.curves, undefined), fontsize=10)
    return save_png(fig, path, f"the PR curve picture {path.name}")


def legend_label(name: str, curve: PrecisionRecall) -> str:
    """``Car  AP 78.4``: the AP in percent with one decimal, as it reads beside the table's."""
    return f"{name}  AP {100 * curve.ap:.1f}"


def title(evaluator: str, curves: Mapping[str, PrecisionRecall], undefined: list[str]) -> str:
    """The evaluator, the IoU (one value, or each class's where they differ, as KITTI's
    do), the difficulty where the evaluator has one, and the classes left out."""
    parts = [evaluator]
    difficulties = sorted({curve.difficulty for curve in curves.values() if curve.difficulty})
    if difficulties:
        parts.append(f"{'/'.join(difficulties)} difficulty")
    ious = {curve.iou for curve in curves.values()}
    if len(ious) == 1:
        parts.append(f"IoU {_number(next(iter(ious)))}")
    else:
        parts.append("IoU " + ", ".join(f"{name} {_number(curve.iou)}" for name, curve in curves.items()))
    text = ", ".join(parts)
    if undefined:
        text += f"\nno ground truth, not drawn: {', '.join(undefined)}"
    return text


def _split_by_ap(curves: Mapping[str, PrecisionRecall]) -> tuple[dict[str, PrecisionRecall], list[str]]:
    """The curves to draw, and the names of the classes whose AP is undefined."""
    drawn = {name: curve for name, curve in curves.items() if not math.isnan(curve.ap)}
    return drawn, [name for name in curves if name not in drawn]


def _number(value: float) -> str:
    """0.7 as ``0.7``, 0.5 as ``0.5``: no trailing zeros, no float noise."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
