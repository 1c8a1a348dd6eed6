"""``[model] init_from``: a new run starts from weights trained elsewhere.

The source is a Darknet ``.weights`` file, a Keras ``.weights.h5`` file or another
run's checkpoint folder (``runs/coco/checkpoints/ep100``, ``.../best``). A Darknet
file is matched convolution by convolution in the order the components' Darknet
layouts give; one trained for another class count carries everything but the
class-dependent output convolutions, which start fresh. A ``.weights.h5`` or a
checkpoint is matched by Keras itself, layer by layer in the model's order, and
must come from the same network (class count included).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from detplug.core.errors import CheckError
from detplug.core.model.darknet_weights import DarknetPart, DarknetWeightsError, layout, load_darknet
from detplug.registry import load_reference

if TYPE_CHECKING:
    from detplug.core.model.assemble import DetectorParts
    from detplug.core.plan.check import CheckedPlan

#: The prefix tf.train.Checkpoint writes inside a run's checkpoint folder.
CHECKPOINT_PREFIX = "ckpt"


@attrs.frozen
class InitReport:
    """What carried over from ``source`` and what starts fresh, in parameters."""

    source: Path
    carried: int
    total: int
    parts: tuple[tuple[str, int, int], ...]  # (part, carried, of its parameters)
    new: tuple[str, ...] = ()

    def describe(self) -> str:
        by_part = "; ".join(f"{label} {carried:,} of {total:,}" for label, carried, total in self.parts)
        fresh = f"new: {', '.join(self.new)}" if self.new else "nothing starts fresh"
        return (f"init_from {self.source}: {self.carried:,} of {self.total:,} parameters carried over "
                f"({by_part}); {fresh}")


def darknet_parts(checked: CheckedPlan, parts: DetectorParts) -> tuple[list[DarknetPart], list[str]]:
    """The backbone and head in Darknet order, as far as their components declare a Darknet
    layout; and the parts with weights that do not (only a file of the parts before
    them fits)."""
    mapped: list[DarknetPart] = []
    unmapped: list[str] = []
    for key, model in (("model.backbone", parts.backbone), ("model.head", parts.head)):
        component = checked.resolved[key].component
        label = f"{component.kind} '{component.name}'"
        if component.darknet is None or unmapped:
            unmapped.append(label)
            continue
        names = load_reference(component, component.darknet, "darknet layout")(model)
        mapped.append(layout(model, names, label))
    return mapped, unmapped


def _part_counts(checked: CheckedPlan, parts: DetectorParts) -> list[tuple[str, int]]:
    counts = []
    for key, model in (("model.backbone", parts.backbone), ("model.head", parts.head)):
        component = checked.resolved[key].component
        counts.append((f"{component.kind} '{component.name}'", int(model.count_params())))
    return counts


def _from_darknet(checked: CheckedPlan, parts: DetectorParts, source: Path) -> InitReport:
    mapped, unmapped = darknet_parts(checked, parts)
    assert checked.chain.labels is not None  # static_check fills every link
    try:
        loaded = load_darknet(source, mapped, unmapped=unmapped, num_classes=checked.chain.labels.num_classes)
    except DarknetWeightsError as error:
        raise CheckError(f"model.init_from: {error}") from None
    carried_by_part = {part.label: part.parameters for part in loaded.parts}
    for conv in loaded.new:
        for part in loaded.parts:
            if conv in part.convs:
                carried_by_part[part.label] -= conv.parameters
    rows = tuple((label, carried_by_part.get(label, 0), total) for label, total in _part_counts(checked, parts))
    new = []
    if loaded.new and loaded.classes is not None:
        names = ", ".join(conv.conv.name for conv in loaded.new)
        new.append(f"the {len(loaded.new)} output convolutions {names} "
                   f"({loaded.classes[0]} -> {loaded.classes[1]} classes)")
    new += [f"{label} (not in the file)" for label in loaded.skipped]
    return InitReport(source, sum(row[1] for row in rows), int(parts.model.count_params()), rows, tuple(new))


def _same_network(checked: CheckedPlan, parts: DetectorParts, source: Path) -> InitReport:
    import tensorflow as tf

    try:
        if source.is_dir():
            prefix = source / CHECKPOINT_PREFIX
            if not Path(f"{prefix}.index").is_file():
                raise CheckError(f"model.init_from: {source} holds no checkpoint ({prefix}.index); give a run's "
                                 f"checkpoint folder such as runs/NAME/checkpoints/ep10 or .../best")
            tf.train.Checkpoint(model=parts.model).read(str(prefix)).expect_partial()
        else:
            parts.model.load_weights(str(source))
    except (ValueError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckError(f"model.init_from: {source} does not fit the plan's model ({message}); a .weights.h5 "
                         f"or checkpoint must come from the same network and class count") from None
    rows = tuple((label, total, total) for label, total in _part_counts(checked, parts))
    return InitReport(source, int(parts.model.count_params()), int(parts.model.count_params()), rows)


def initialise(checked: CheckedPlan, parts: DetectorParts) -> InitReport | None:
    """Load the plan's ``init_from`` into ``parts`` (a freshly built model); None without one."""
    source = checked.plan.init_from
    if source is None:
        return None
    if source.name.endswith(".weights") and not source.is_dir():
        return _from_darknet(checked, parts, source)
    return _same_network(checked, parts, source)
