"""Whether a run folder's checkpoints can continue the plan as it reads now.

Checked before TensorFlow is imported, from ``state.json`` alone:

- the model must be the one the checkpoints were written for (else an error,
  unless ``--restart`` moves them aside);
- periods that have started must keep their settings; the last started
  period may gain epochs, and new periods may be appended, so a finished plan
  can be extended.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from detplug.core.errors import CheckpointError
from detplug.core.plan.check import CheckedPlan
from detplug.core.plan.settings import PeriodSettings


def model_description(checked: CheckedPlan) -> dict[str, Any]:
    """What makes two models the same: their components, params, input and outputs."""
    def component(key: str) -> dict[str, Any]:
        item = checked.resolved[key]
        return {"name": item.component.name, **json.loads(json.dumps(attrs.asdict(item.params), default=list))}

    chain = checked.first().chain
    # static_check fills in every link of a checked plan's chain.
    assert chain.image is not None and chain.labels is not None and chain.anchors is not None
    return {
        "backbone": component("model.backbone"),
        "head": component("model.head"),
        "decoder": component("model.decoder"),
        "image": [chain.image.height, chain.image.width, chain.image.channels],
        "classes": list(chain.labels.classes),
        "anchors": {str(stride): [list(pair) for pair in pairs] for stride, pairs in chain.anchors.items()},
    }


#: Each period setting's default, as a period record stores it.
_DEFAULTS = json.loads(json.dumps(attrs.asdict(PeriodSettings()), default=list))


def period_records(checked: CheckedPlan) -> list[dict[str, Any]]:
    """Each period as plain values, to tell later whether it was changed. A period whose
    dataset gives another model than the first period's also records that model's input
    and classes, so a dataset changed under a started period is caught."""
    records = []
    for index, period in enumerate(checked.plan.periods):
        record = period.record()
        view = checked.for_period(index)
        if view.chain != checked.first().chain:
            assert view.chain.image is not None and view.chain.labels is not None  # checked chains are complete
            record["image"] = [view.chain.image.height, view.chain.image.width, view.chain.image.channels]
            record["classes"] = list(view.chain.labels.classes)
        records.append(record)
    return records


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            found += _differences(before, after, f"{prefix}{key}.")
        elif before != after:
            found.append(f"{prefix}{key} {json.dumps(before)} -> {json.dumps(after)}")
    return found


def check_resumable(state: Mapping[str, Any], checked: CheckedPlan, folder: Path) -> None:
    done = int(state.get("epoch", 0))
    if state.get("interrupted"):  # a run stopped inside an epoch has started it
        done = max(done, int(state["interrupted"].get("in_epoch", 0)))
    if done == 0:
        return
    hint = "train into another --workdir, or pass --restart to move the old checkpoints aside and start over"
    old_model = state.get("model")
    if old_model is not None:
        changes = _differences(old_model, model_description(checked))
        if changes:
            raise CheckpointError(
                f"the checkpoints in {folder} were written by a different model ({'; '.join(changes)}); {hint}"
            )
    old_periods = state.get("periods") or []
    new_periods = period_records(checked)
    start = 0
    for index, old in enumerate(old_periods):
        if start >= done:
            break  # not started yet: free to change
        label = f"period {index + 1}"
        if index >= len(new_periods):
            raise CheckpointError(f"{label} has trained (epochs {start + 1}-{min(done, start + old['epochs'])} in "
                                  f"{folder}) but the plan no longer has it; restore it in the plan, or {hint}")
        # A setting added to detplug after the period started is unchanged at its default.
        new = {k: v for k, v in new_periods[index].items() if k in old or v != _DEFAULTS.get(k, v)}
        changes = _differences({k: v for k, v in old.items() if k != "epochs"},
                               {k: v for k, v in new.items() if k != "epochs"})
        if changes:
            raise CheckpointError(f"{label} has trained in {folder}, but the plan changed its settings "
                                  f"({'; '.join(changes)}); change only periods that have not started, or {hint}")
        end = start + old["epochs"]
        last_started = end >= done
        if not last_started and new["epochs"] != old["epochs"]:
            raise CheckpointError(f"{label} finished with {old['epochs']} epochs in {folder}, but the plan now gives "
                                  f"it {new['epochs']}; only the last trained period may grow, or {hint}")
        if last_started and start + new["epochs"] < done:
            raise CheckpointError(f"{label} has trained to epoch {done} in {folder}, but the plan now ends it at "
                                  f"epoch {start + new['epochs']}; {hint}")
        start = end
