"""runs/<plan>/results.png: the training curves, redrawn from history.csv at the end of
every period and when a run resumes (unless ``[train] plots = false``), written as a
third-party logger would write it.

It draws between periods, never inside the epoch loop: nothing waits on matplotlib
while TensorFlow trains.
"""

from __future__ import annotations

import logging
from typing import Any

from detplug import hookimpl

log = logging.getLogger(__name__)

PLUGIN_API = 1

RESULTS_NAME = "results.png"


def _redraw(run: Any) -> None:
    if not run.plan.train.run.plots:  # [train] plots = false
        return
    from detplug.core.pictures.training_curves import draw_results

    history = run.folder.history
    if history.is_file():
        out = draw_results(history, run.folder.path / RESULTS_NAME,
                           title=f"plan '{run.plan.name}': {history.name}")
        log.info(f"drew the training curves: {out}")


@hookimpl
def detplug_period_end(run: Any, period: Any, index: int) -> None:
    _redraw(run)


@hookimpl(trylast=True)  # after csv_history has dropped the rows of epochs trained again
def detplug_train_start(run: Any) -> None:
    if run.start_epoch > 0:
        _redraw(run)
