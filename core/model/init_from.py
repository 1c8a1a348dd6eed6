"""``[model] init_from``: a new run starts from weights trained elsewhere.

The source is a Darknet ``.weights`` file, a Keras ``.weights.h5`` file or another
run's checkpoint folder (``runs/coco/checkpoints/ep100``, ``.../best``). A Darknet
file is matched convolution by convolution in the order the components' Darknet
layouts give; one trained for another class count carries everything but the
class-dependent output convolutions, which start fresh. A ``.weights.h5`` (or a
checkpoint's snapshot ``.weights.h5``) is matched weight by weight in the model's
layer order: one of another class count carries all but the layers whose shape
depends on the class count; any other difference is an error naming the weight
and both shapes. An every-epoch checkpoint must come from the same network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

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
    #: (part, sentence) of the parts that loaded weights of their own first (own_weights).
    own: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        by_part = "; ".join(f"{label} {carried:,} of {total:,}" for label, carried, total in self.parts)
        fresh = f"new: {', '.join(self.new)}" if self.new else "nothing starts fresh"
        line = (f"init_from {self.source}: {self.carried:,} of {self.total:,} parameters carried over "
                f"({by_part}); {fresh}")
        carried = {label: (count, total) for label, count, total in self.parts}
        for label, sentence in self.own:
            count, total = carried.get(label, (0, 0))
            after = ("init_from replaces them all" if count == total else "init_from keeps them" if count == 0
                     else f"init_from replaces {count:,} of its {total:,} parameters")
            line += f"; before it, {sentence}: {after}"
        return line


def own_weights(checked: CheckedPlan) -> tuple[tuple[str, str], ...]:
    """The model parts whose params name a weights file of their own (the keras.applications
    backbones' ``weights``), as (part, "backbone 'resnet50' loaded its own weights FILE
    (model.backbone.weights)"); they load while the model is built, before init_from."""
    found = []
    for key in ("model.backbone", "model.head"):
        item = checked.resolved[key]
        weights = getattr(item.params, "weights", None)
        if weights:
            label = f"{item.component.kind} '{item.component.name}'"
            found.append((label, f"{label} loaded its own weights {weights} ({key}.weights)"))
    return tuple(found)


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


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every weight of a Keras ``.weights.h5``, by its path in the file (Keras names each
    layer by its class and place in its model, so the same network gives the same paths)."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda key, item: arrays.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset)
                          else None)
    return arrays


def _class_dependent(checked: CheckedPlan, parts: DetectorParts) -> tuple[Any, dict[str, int]]:
    """The model built again with one class more, sharing the backbone; and the names of the
    head layers whose weights change shape with the class count, with their parameters."""
    import keras

    from detplug.core.build import build_model_part

    chain = checked.chain
    assert chain.labels is not None and chain.image is not None  # static_check fills every link
    probe_chain = chain.evolve(labels=attrs.evolve(chain.labels, classes=(*chain.labels.classes, "_probe")))
    head_item, decoder_item = checked.resolved["model.head"], checked.resolved["model.decoder"]
    head = build_model_part(head_item.component, head_item.params, probe_chain)
    decoder = build_model_part(decoder_item.component, decoder_item.params, probe_chain)
    image = keras.Input((chain.image.height, chain.image.width, chain.image.channels), name="image")
    probe = keras.Model(image, decoder(head(parts.backbone(image))), name=checked.plan.name)
    changed = {}
    for ours, theirs in zip(parts.head.layers, head.layers):
        if [w.shape for w in ours.weights] != [w.shape for w in theirs.weights]:
            changed[ours.name] = int(sum(np.prod(w.shape) for w in ours.weights))
    return probe, changed


def _from_keras_weights(checked: CheckedPlan, parts: DetectorParts, source: Path, weights: Path) -> InitReport:
    """A ``.weights.h5`` matched to the model path by path, that is layer by layer in the model's
    order; class-dependent layers of another shape start fresh, any other difference is an error."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory(prefix="detplug-init-") as scratch:
        ours_path, probe_path = Path(scratch) / "ours.weights.h5", Path(scratch) / "probe.weights.h5"
        parts.model.save_weights(str(ours_path))
        probe, changed = _class_dependent(checked, parts)
        probe.save_weights(str(probe_path))
        ours, probe_arrays, theirs = _h5_arrays(ours_path), _h5_arrays(probe_path), _h5_arrays(weights)
        dependent = {key for key, value in ours.items() if probe_arrays.get(key, value).shape != value.shape}
        missing = sorted(set(ours) - set(theirs))
        extra = sorted(set(theirs) - set(ours))
        if missing or extra:
            shown = ", ".join((missing or extra)[:3])
            raise CheckError(f"model.init_from: {source} holds another network: {len(missing)} of the model's weights "
                             f"are not in it and it has {len(extra)} the model lacks (e.g. {shown}); give weights "
                             f"of the same backbone and head")
        carried, fresh_shapes = 0, []
        with h5py.File(ours_path, "r+") as handle:
            for key, value in ours.items():
                if theirs[key].shape == value.shape:
                    handle[key][...] = theirs[key]
                    carried += int(value.size)
                elif key in dependent:
                    fresh_shapes.append(theirs[key].shape)
                else:
                    raise CheckError(f"model.init_from: {source}: weight {key} is {tuple(theirs[key].shape)} there "
                                     f"but {tuple(value.shape)} in the plan's model, and it does not depend on the "
                                     f"class count; give weights of the same backbone and head at the same width")
        parts.model.load_weights(str(ours_path))
    new: tuple[str, ...] = ()
    if fresh_shapes:
        assert checked.chain.labels is not None
        classes = checked.chain.labels.num_classes
        # An output with A anchors x (5 + classes) channels has A x (5 + source classes) there.
        ours_filters = next(value.shape[-1] for key, value in ours.items() if key in dependent)
        anchors = ours_filters // (5 + classes) if ours_filters % (5 + classes) == 0 else 0
        source_filters = int(fresh_shapes[0][-1])
        from_classes = (f"{source_filters // anchors - 5} -> {classes} classes" if anchors
                        and source_filters % anchors == 0 else f"another class count than {classes}")
        new = (f"the {len(changed)} class-dependent layers {', '.join(changed)} ({from_classes})",)
    fresh = sum(changed.values()) if fresh_shapes else 0
    rows = []
    for label, total in _part_counts(checked, parts):
        rows.append((label, total - fresh if label.startswith("head") else total, total))
    return InitReport(source, carried, int(parts.model.count_params()), tuple(rows), new)


def _same_network(checked: CheckedPlan, parts: DetectorParts, source: Path) -> InitReport:
    """A run's checkpoint folder: its snapshot ``.weights.h5`` when the run wrote one (a
    period snapshot, best), matched layer by layer; else the TensorFlow checkpoint, which
    must come from the same network and class count."""
    import tensorflow as tf

    if not source.is_dir():
        return _from_keras_weights(checked, parts, source, source)
    snapshot = source.with_name(f"{source.name}.weights.h5")
    if snapshot.is_file():
        return _from_keras_weights(checked, parts, source, snapshot)
    prefix = source / CHECKPOINT_PREFIX
    if not Path(f"{prefix}.index").is_file():
        raise CheckError(f"model.init_from: {source} holds no checkpoint ({prefix}.index); give a run's "
                         f"checkpoint folder such as runs/NAME/checkpoints/ep10 or .../best")
    try:
        tf.train.Checkpoint(model=parts.model).read(str(prefix)).expect_partial()
    except (ValueError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckError(f"model.init_from: {source} does not fit the plan's model ({message}); an every-epoch "
                         f"checkpoint must come from the same network and class count (a period snapshot or best, "
                         f"which have a .weights.h5, may differ in class count)") from None
    rows = tuple((label, total, total) for label, total in _part_counts(checked, parts))
    return InitReport(source, int(parts.model.count_params()), int(parts.model.count_params()), rows)


def initialise(checked: CheckedPlan, parts: DetectorParts) -> InitReport | None:
    """Load the plan's ``init_from`` into ``parts`` (a freshly built model); None without one."""
    source = checked.plan.init_from
    if source is None:
        return None
    if source.name.endswith(".weights") and not source.is_dir():
        report = _from_darknet(checked, parts, source)
    else:
        report = _same_network(checked, parts, source)
    return attrs.evolve(report, own=own_weights(checked))
