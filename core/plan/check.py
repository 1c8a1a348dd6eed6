"""The static check: walk the spec chain in pure Python, before TensorFlow is imported.

dataset -> backbone -> head -> decoder -> losses. Each component's spec
function sees a :class:`Chain` holding everything upstream; a SpecError is
turned into one sentence naming both components, the field, the expected and
the found value. The symbolic half of ``--check`` (building the Keras model
and comparing the declared specs with real tensor shapes) is in assemble.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen

from detplug.core.errors import CheckError, PlanError
from detplug.core.plan.anchors import AnchorError, anchor_pixels, anchors_to_ratios, unmatched_strides
from detplug.core.plan.plan_file import Plan, Resolved
from detplug.core.plan.specs import Chain, SpecError


@frozen
class Link:
    """One component in the checked chain and what it gives."""

    resolved: Resolved
    output: Any

    @property
    def label(self) -> str:
        return f"{self.resolved.component.kind} '{self.resolved.component.name}'"


@frozen
class CheckedPlan:
    plan: Plan
    resolved: Mapping[str, Resolved]
    chain: Chain
    links: tuple[Link, ...]
    #: The dataset whose spec the model is built for (the first period's).
    model_dataset: str
    #: Sentences about parts that fit but will not train as the user likely expects
    #: (a stride whose anchors cannot match any object); printed, never fatal.
    warnings: tuple[str, ...] = ()


def static_check(plan: Plan, resolved: Mapping[str, Resolved]) -> CheckedPlan:
    links: list[Link] = []
    by_kind: dict[str, Resolved] = {}

    def visit(key: str, chain: Chain) -> Any:
        item = resolved[key]
        try:
            output = item.component.spec(item.params, chain)
        except SpecError as error:
            raise CheckError(_mismatch(plan, item, error, by_kind)) from None
        links.append(Link(item, output))
        by_kind[item.component.kind] = item
        return output

    if plan.init_from is not None and not plan.init_from.exists():
        raise CheckError(
            f"{plan.source}: model.init_from: {plan.init_from} does not exist (relative paths start at the "
            f"current folder); give a Darknet .weights file, a Keras .weights.h5 or a run's checkpoint folder"
        )
    model_dataset = plan.periods[0].dataset
    dataset_spec = visit(f"datasets.{model_dataset}", Chain())
    for key in plan.datasets:
        if key == model_dataset:
            continue
        other = visit(f"datasets.{key}", Chain())
        if other.image != dataset_spec.image or other.labels.classes != dataset_spec.labels.classes:
            raise CheckError(
                f"{plan.source}: dataset '{key}' gives {other} but dataset '{model_dataset}' "
                f"(the first period's, which the model is built for) gives {dataset_spec}; "
                f"give every dataset of a plan the same image_size and classes"
            )
    try:
        pixels = anchor_pixels(plan.anchors)
    except AnchorError as error:
        raise PlanError(f"{plan.source}: model.anchors: {error}") from None
    chain = Chain(
        image=dataset_spec.image,
        labels=dataset_spec.labels,
        anchors=anchors_to_ratios(pixels, dataset_spec.image),
    )
    chain = chain.evolve(features=visit("model.backbone", chain))
    chain = chain.evolve(head=visit("model.head", chain))
    chain = chain.evolve(decoded=visit("model.decoder", chain))
    _check_assignment_reach(plan, resolved["model.decoder"], chain)
    for key, item in resolved.items():
        if item.component.kind in ("loss", "trainer"):
            visit(key, chain)
    return CheckedPlan(plan, resolved, chain, tuple(links), model_dataset,
                       warnings=_anchor_warnings(plan, pixels, dataset_spec.image))


def _anchor_warnings(plan: Plan, pixels: Mapping[int, Any], image: Any) -> tuple[str, ...]:
    where = f"'{plan.anchors}'" if isinstance(plan.anchors, str) else "(model.anchors)"
    return tuple(
        f"{plan.source}: anchors {where}, stride {stride}: {'; '.join(reasons)}; fit anchors to the data "
        f"with `run.py --plan {plan.name} --anchors --write`"
        for stride, reasons in unmatched_strides(pixels, image, anchor_ratio=plan.assignment.anchor_ratio).items()
    )


def _check_assignment_reach(plan: Plan, decoder: Resolved, chain: Chain) -> None:
    """Neighbour-cell positives need a decoder that can put a box centre outside its cell."""
    needed = plan.assignment.reach_needed
    assert chain.decoded is not None  # called once the decoder's link is in the chain
    short = {stride: spec.centre_reach for stride, spec in sorted(chain.decoded.items())
             if spec.centre_reach < needed}
    if short:
        if len(set(short.values())) == 1 and len(short) == len(chain.decoded):
            reach = f"{next(iter(short.values())):g} at every stride"
        else:
            reach = ", ".join(f"{reach:g} at stride {stride}" for stride, reach in short.items())
        raise CheckError(
            f"{plan.source}: model.assign: neighbours = true trains the cells next to a box's centre, whose "
            f"predictions must reach {needed:g} cells out of their own, but decoder '{decoder.component.name}' "
            f"(model.decoder) reaches {reach}; use decoder = {{ name = \"yolov4\", scale_xy = 2.0 }} "
            f"(YOLOv5's offsets) or set neighbours = false"
        )


def _mismatch(plan: Plan, item: Resolved, error: SpecError, by_kind: Mapping[str, Resolved]) -> str:
    here = f"{item.component.kind} '{item.component.name}' ({item.ref.key})"
    if error.upstream == "anchors":
        there = f"the anchors '{plan.anchors}' (model.anchors)" if isinstance(plan.anchors, str) \
            else "the anchors (model.anchors)"
    elif error.upstream is not None and error.upstream in by_kind:
        upstream = by_kind[error.upstream]
        there = f"{upstream.component.kind} '{upstream.component.name}' ({upstream.ref.key})"
    else:
        there = error.upstream or "its input"
    detail = ""
    if error.field is not None:
        detail = f": {error.field}: expected {error.expected}, found {error.found}"
    return f"{plan.source}: {here} does not fit {there}{detail} ({error.message})"


def describe_output(output: Any) -> str:
    """The chain link's output in words, as ``--check`` prints it."""
    if isinstance(output, Mapping):
        return "  ".join(str(spec) for _, spec in sorted(output.items()))
    if isinstance(output, tuple):
        return "scalar per image from strides " + ", ".join(str(s) for s in output)
    return "-" if output is None else str(output)
