"""The static check: walk the spec chain in pure Python, before TensorFlow is imported.

dataset -> backbone -> head -> decoder -> losses. Each component's spec
function sees a :class:`Chain` holding everything upstream; a SpecError is
turned into one sentence naming both components, the field, the expected and
the found value. The symbolic half of ``--check`` (building the Keras model
and comparing the declared specs with real tensor shapes) is in assemble.py.
"""

from __future__ import annotations

from typing import Any, Mapping

from attrs import frozen

from detplug.core.anchors import AnchorError, anchor_pixels, anchors_to_ratios
from detplug.core.errors import CheckError, PlanError
from detplug.core.plan import Plan, Resolved
from detplug.core.specs import Chain, SpecError


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
    for key, item in resolved.items():
        if item.component.kind in ("loss", "trainer"):
            visit(key, chain)
    return CheckedPlan(plan, resolved, chain, tuple(links), model_dataset)


def _mismatch(plan: Plan, item: Resolved, error: SpecError, by_kind: Mapping[str, Resolved]) -> str:
    here = f"{item.component.kind} '{item.component.name}' ({item.ref.key})"
    if error.upstream == "anchors":
        there = f"the anchors '{plan.anchors}' (model.anchors)" if isinstance(plan.anchors, str) \
            else "the anchors (model.anchors)"
    elif error.upstream in by_kind:
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
