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

import attrs
from attrs import field, frozen

from detplug.core.errors import CheckError, PlanError
from detplug.core.plan.anchors import AnchorError, anchor_pixels, anchors_to_ratios, unmatched_strides
from detplug.core.plan.multi_scale import multi_scale_sizes
from detplug.core.plan.plan_file import Plan, Resolved, plan_argument
from detplug.core.plan.specs import Chain, ImageSpec, SpecError


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
    """A plan whose parts fit, with the chain of every dataset its periods train on.

    ``chain`` and ``links`` are one dataset's: the model's (``model_dataset``, the first
    period's) in the plan as checked, another's in the view :meth:`for_dataset` gives.
    Everything that builds or feeds a model reads ``chain``, so it is handed the view of
    the period at hand.
    """

    plan: Plan
    resolved: Mapping[str, Resolved]
    chain: Chain
    links: tuple[Link, ...]
    #: The dataset whose chain ``chain`` is (the first period's in the plan as checked).
    model_dataset: str
    #: Sentences about parts that fit but will not train as the user likely expects
    #: (a stride whose anchors cannot match any object); printed, never fatal.
    warnings: tuple[str, ...] = ()
    #: Each dataset a period trains on -> its chain, and the links of the components walked for it.
    chains: Mapping[str, Chain] = field(factory=dict)
    chain_links: Mapping[str, tuple[Link, ...]] = field(factory=dict)

    def for_dataset(self, key: str) -> CheckedPlan:
        """The plan as the model of dataset ``key``'s periods sees it."""
        if key == self.model_dataset:
            return self
        return attrs.evolve(self, chain=self.chains[key], links=self.chain_links[key], model_dataset=key)

    def for_period(self, index: int) -> CheckedPlan:
        return self.for_dataset(self.plan.periods[index].dataset)

    def first(self) -> CheckedPlan:
        """The view of the first period, which a new run's model is built for."""
        return self.for_period(0)

    def model_changes(self) -> list[int]:
        """The indexes of the periods whose model differs from the previous period's
        (another image size, classes or anchors): the model is rebuilt there."""
        periods = self.plan.periods
        return [index for index in range(1, len(periods))
                if self.chains[periods[index].dataset] != self.chains[periods[index - 1].dataset]]


def static_check(plan: Plan, resolved: Mapping[str, Resolved]) -> CheckedPlan:
    """Walk the chain dataset -> backbone -> head -> decoder -> losses, trainers for each
    dataset the periods train on (one model each, rebuilt where a period switches)."""
    if plan.init_from is not None and not plan.init_from.exists():
        raise CheckError(
            f"{plan.source}: model.init_from: {plan.init_from} does not exist (relative paths start at the "
            f"current folder); give a Darknet .weights file, a Keras .weights.h5 or a run's checkpoint folder"
        )
    try:
        pixels = anchor_pixels(plan.anchors)
    except AnchorError as error:
        raise PlanError(f"{plan.source}: model.anchors: {error}") from None
    dataset_links: list[Link] = []
    dataset_specs = {}
    for key in plan.datasets:
        item = resolved[f"datasets.{key}"]
        output = _visit(plan, item, Chain(), {})
        dataset_links.append(Link(item, output))
        dataset_specs[key] = output
    chains: dict[str, Chain] = {}
    chain_links: dict[str, tuple[Link, ...]] = {}
    warnings: list[str] = []
    trained = list(dict.fromkeys(period.dataset for period in plan.periods))
    for key in trained:
        spec = dataset_specs[key]
        start = Chain(image=spec.image, labels=spec.labels, anchors=anchors_to_ratios(pixels, spec.image))
        try:
            chain, links = _walk_model(plan, resolved, start, resolved[f"datasets.{key}"])
        except CheckError as error:
            if len({(dataset_specs[k].image, dataset_specs[k].labels) for k in trained}) == 1:
                raise
            periods = ", ".join(str(i + 1) for i, p in enumerate(plan.periods) if p.dataset == key)
            raise CheckError(f"{error} (in the model for dataset '{key}', {spec}, of period {periods})") from None
        chains[key] = chain
        chain_links[key] = (*dataset_links, *links)
        warnings += [w for w in _anchor_warnings(plan, pixels, spec.image) if w not in warnings]
    for index in range(len(plan.periods)):
        _check_multi_scale(plan, resolved, index, chains[plan.periods[index].dataset])
    _check_rot90(plan, {key: dataset_specs[key].image for key in trained})
    _check_patience(plan)
    run = plan.train.run
    if run.patience and plan.evaluation.eval_every == 0:
        warnings.append(f"{plan.source}: [train] patience = {run.patience} waits for evaluations, but [evaluation] "
                        f"eval_every = 0 evaluates after the last epoch only, so no period stops early; set eval_every "
                        f"to 1 or more, or \"auto\"")
    if run.shard_by == "file" and run.strategy != "multi_worker":
        warnings.append(f"{plan.source}: [train] shard_by = \"file\" gives the workers of a multi_worker run "
                        f"train shards of their own; under strategy '{run.strategy}' one process reads them all, "
                        f"as with shard_by = \"data\"")
    model_dataset = plan.periods[0].dataset
    return CheckedPlan(plan, resolved, chains[model_dataset], chain_links[model_dataset], model_dataset,
                       warnings=tuple(warnings), chains=chains, chain_links=chain_links)


def training_sizes(checked: CheckedPlan, index: int) -> list[tuple[int, int]]:
    """The input sizes period ``index`` trains at with multi_scale; empty without it."""
    period = checked.plan.periods[index]
    if not period.settings.multi_scale:
        return []
    chain = checked.chains[period.dataset]
    assert chain.image is not None and chain.decoded is not None  # checked chains are complete
    return multi_scale_sizes(chain.image, period.settings.multi_scale, max(chain.decoded))


def _check_multi_scale(plan: Plan, resolved: Mapping[str, Resolved], index: int, chain: Chain) -> None:
    """Every multi-scale size must hold whole cells of the largest stride and pass the model's chain."""
    period = plan.periods[index]
    if not period.settings.multi_scale:
        return
    assert chain.image is not None and chain.decoded is not None  # a walked chain is complete
    where = f"{plan.source}: multi_scale of period {index + 1} ([train] or periods[{index}])"
    largest = max(chain.decoded)
    sizes = multi_scale_sizes(chain.image, period.settings.multi_scale, largest)
    if not sizes:
        raise CheckError(f"{where}: {list(period.settings.multi_scale)} holds no multiple of the largest stride "
                         f"{largest}; widen the range of the long side (e.g. [{largest * 10}, {largest * 19}])")
    for height, width in sizes:
        start = Chain(image=ImageSpec(height, width, chain.image.channels), labels=chain.labels,
                      anchors=chain.anchors)
        try:
            _walk_model(plan, resolved, start, resolved[f"datasets.{period.dataset}"])
        except CheckError as error:
            raise CheckError(f"{error} (at the multi-scale size {height}x{width}; {where})") from None


def _check_rot90(plan: Plan, images: Mapping[str, ImageSpec]) -> None:
    """A quarter turn keeps an input's shape only when it is square: [train.augment] rot90 is
    refused for a non-square one (fitting the turned image back in would shrink its objects)."""
    augmentation = plan.train.augmentation
    if augmentation is None or not augmentation.rot90:
        return
    for key, image in images.items():
        if image.height != image.width:
            raise CheckError(
                f"{plan.source}: train.augment.rot90: a turn by 90 degrees needs a square input, but dataset "
                f"'{key}' trains at {image.height}x{image.width}; set rot90 = 0, or give the dataset a square "
                f"image_size (tiles, tile = {{ size = S }}, train well at [S, S])")


def _check_patience(plan: Plan) -> None:
    """[train] patience waits for a better [evaluation] best_metric, so it needs an evaluator
    that gives one (whether the evaluator has that metric is known only once it has run)."""
    if not plan.train.run.patience or (plan.evaluator is not None and plan.evaluation.best_metric):
        return
    missing = "no [evaluation] evaluator" if plan.evaluator is None else "no [evaluation] best_metric"
    raise CheckError(
        f"{plan.source}: train.patience: early stopping waits for a better [evaluation] best_metric, but the plan "
        f"has {missing}; name an evaluator and the metric to wait for (e.g. evaluator = \"kitti_ap\", "
        f"best_metric = \"mAP_moderate_AP40\"), or set patience = 0")


def _visit(plan: Plan, item: Resolved, chain: Chain, by_kind: dict[str, Resolved]) -> Any:
    try:
        output = item.component.spec(item.params, chain)
    except SpecError as error:
        raise CheckError(_mismatch(plan, item, error, by_kind)) from None
    by_kind[item.component.kind] = item
    return output


def _walk_model(plan: Plan, resolved: Mapping[str, Resolved], chain: Chain,
                dataset: Resolved) -> tuple[Chain, list[Link]]:
    """backbone -> head -> decoder, then every loss and trainer, from one dataset's chain."""
    links: list[Link] = []
    by_kind: dict[str, Resolved] = {"dataset": dataset}

    def visit(key: str, chain: Chain) -> Any:
        output = _visit(plan, resolved[key], chain, by_kind)
        links.append(Link(resolved[key], output))
        return output

    chain = chain.evolve(features=visit("model.backbone", chain))
    chain = chain.evolve(head=visit("model.head", chain))
    chain = chain.evolve(decoded=visit("model.decoder", chain))
    _check_assignment_reach(plan, resolved["model.decoder"], chain)
    for key, item in resolved.items():
        if item.component.kind in ("loss", "trainer"):
            visit(key, chain)
    return chain, links


def _anchor_warnings(plan: Plan, pixels: Mapping[int, Any], image: Any) -> tuple[str, ...]:
    where = f"'{plan.anchors}'" if isinstance(plan.anchors, str) else "(model.anchors)"
    return tuple(
        f"{plan.source}: anchors {where}, stride {stride}: {'; '.join(reasons)}; fit anchors to the data "
        f"with `run.py anchors --plan {plan_argument(plan)} --write`"
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
