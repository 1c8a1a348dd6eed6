"""Early stopping ([train] patience): when a period has waited long enough for a better metric.

Pure Python, so the rule is tested on a hand-made sequence of metrics. The run
(core/train/training.py) keeps each period's best evaluated epoch in state.json
(``period_best``, a checkpoint of its own) and asks :func:`out_of_patience` after
every epoch, and once more on resuming inside a period, so a resumed run stops
where an uninterrupted one does.

Patience counts *epochs*, not evaluations, since the period's best evaluated
epoch (since the period's start before its first evaluation). Only an evaluated
epoch can be "not better", so only an evaluated epoch stops a period: with
``eval_every = 3`` and ``patience = 2`` a period stops at the first evaluation 2
or more epochs after its best, i.e. 3 epochs after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: state.json's record of the current period's best evaluated epoch, and the checkpoint
#: folder holding its weights (the next period starts from them if this one stops early).
PERIOD_BEST = "period_best"
#: state.json's record of the periods that stopped early, by period number (1-based).
STOPPED_EARLY = "stopped_early"


def out_of_patience(*, epoch: int, period_start: int, best_epoch: int | None, patience: int,
                    evaluated: bool) -> bool:
    """Whether the period that began after epoch ``period_start`` stops after ``epoch``: it was
    evaluated, and ``patience`` or more epochs have passed since the period's best evaluated
    epoch ``best_epoch`` (None: none yet, counted from the period's start). 0 turns it off."""
    if patience <= 0 or not evaluated or epoch <= period_start:
        return False
    since = period_start if best_epoch is None else max(best_epoch, period_start)
    return epoch - since >= patience


def period_best(state: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    """The best evaluated epoch of period ``index`` (0-based) that ``state`` (state.json)
    records, or None: a record of an earlier period is that period's, not this one's."""
    record = state.get(PERIOD_BEST)
    if not record or int(record.get("period", -1)) != index:
        return None
    return dict(record)


def stopped_early(state: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    """How period ``index`` (0-based) stopped early, if ``state`` says it did."""
    record = (state.get(STOPPED_EARLY) or {}).get(str(index + 1))
    return dict(record) if record else None
