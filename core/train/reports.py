"""What a run prints for its user: each epoch's line, the final report, and the command
that continues (or uses) the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from detplug.core.plan.plan_file import plan_argument
from detplug.core.train.context import RunContext

log = logging.getLogger(__name__)


def print_final_report(run: RunContext) -> None:
    """The last lines of a run: the final evaluation's table, where its drawn predictions
    are, and the commands that use the result."""
    from detplug.core.evaluate.contract import format_table

    plan = run.plan
    if run.last_evaluation is not None:
        epoch, result, grid, subject = run.last_evaluation
        log.info(f"{result.evaluator} on {subject} after epoch {epoch}:")
        log.info(format_table(result))
        if grid.is_file():
            log.info(f"drawn {plan.evaluation.split} predictions: {grid}")
    log.info("use the result:")
    log.info(f"  {resume_command(run, 'evaluate')} [--checkpoint best]     # {plan.evaluation.split} split, "
             f"evaluator's table")
    log.info(f"  {resume_command(run, 'predict')} IMAGE_OR_FOLDER [--out DIR]   # drawn PNGs + KITTI result files")
    log.info(f"  {resume_command(run, 'export')} DIR                       # SavedModel taking uint8 images")


def resume_command(run: RunContext, command: str = "train") -> str:
    """``python run.py train --plan P [--workdir W]``: the command that continues this run, or
    with another ``command`` (evaluate, predict, export) uses it."""
    plan = run.plan
    workdir = "" if run.folder.path == Path("runs") / plan.name else f" --workdir {run.folder.path}"
    return f"python run.py {command} --plan {plan_argument(plan)}{workdir}"


def epoch_summary(epoch: int, total_epochs: int, logs: dict[str, float], *, losses: list[str],
                  metric: tuple[str, float] | None = None) -> str:
    """One line per epoch: the total and each loss part of ``losses`` (summed over strides),
    train and val, the evaluator's headline ``metric`` when it ran, the learning rate in
    force at the epoch's last step, time and speed."""
    skip = ("total", "seconds", "images_per_second")
    parts = [name for name in losses if name not in skip and "/" not in name]
    line = (f"epoch {epoch}/{total_epochs}: loss {logs['total']:.4g} ("
            + ", ".join(f"{p} {logs[p]:.4g}" for p in parts) + ")")
    if "val_total" in logs:
        line += f", val_loss {logs['val_total']:.4g}"
    if metric is not None:
        line += f", {metric[0]} {100 * metric[1]:.2f}%"
    return line + (f", lr {logs['learning_rate']:.3g}, {logs['seconds']:.1f} s, "
                   f"{logs['images_per_second']:.1f} images/s")
