"""The spec types every component declares: what it takes, what it gives.

This module imports attrs only, never TensorFlow: `run.py --list` and the
static check walk these types in milliseconds.

The spec chain, link by link (each component's spec function gives the next type)::

    dataset  -> DatasetSpec(ImageSpec(h, w, 3), LabelSpec(classes, max_boxes))
    backbone -> {stride: FeatureSpec(stride, channels)}
    head     -> {stride: HeadSpec(stride, anchors, 5 + classes)}
    decoder  -> {stride: DecodedSpec(stride, anchors, classes)}
    losses   -> one scalar per loss, from the decoded outputs and the targets

Each link is computed by the component's ``spec(params, chain)`` function from
a :class:`Chain` that holds everything known upstream of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from attrs import field, frozen, validators

#: The plugin API this detplug provides. A plugin declares the version it was
#: written for; see registry.py.
PLUGIN_API_VERSION = 1

#: Component kinds, in the order the spec chain visits them.
KINDS = ("dataset", "backbone", "head", "decoder", "loss", "trainer", "evaluator")


class SpecError(ValueError):
    """Two parts do not fit, said in one sentence.

    ``upstream`` names the kind whose output did not fit (``"backbone"`` when a
    head rejects the features it was given); the static check turns that into
    the name of the upstream component, so the message names both parts.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        expected: Any = None,
        found: Any = None,
        upstream: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.expected = expected
        self.found = found
        self.upstream = upstream


def _positive(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value <= 0:
        raise ValueError(f"'{attribute.name}' must be > 0 (got {value!r})")


@frozen
class ImageSpec:
    """The image tensor a model takes: (batch, height, width, channels), float32 in [0, 1]."""

    height: int = field(validator=_positive)
    width: int = field(validator=_positive)
    channels: int = field(default=3, validator=_positive)

    def __str__(self) -> str:
        return f"image {self.height}x{self.width}x{self.channels}"


def name_tuple(names: Iterable[str]) -> tuple[str, ...]:
    """The attrs converter for class names given as any iterable: a named function, as
    mypy's attrs plugin cannot type ``tuple`` as a converter."""
    return tuple(names)


@frozen
class LabelSpec:
    """What the labels hold: the class names (their order is the class index) and
    the most boxes one image carries after padding."""

    classes: tuple[str, ...] = field(converter=name_tuple)
    max_boxes: int = field(validator=_positive)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@frozen
class DatasetSpec:
    image: ImageSpec
    labels: LabelSpec

    def __str__(self) -> str:
        return f"{self.image}, {self.labels.num_classes} classes, <= {self.labels.max_boxes} boxes"


@frozen
class FeatureSpec:
    """One backbone output: a (batch, H/stride, W/stride, channels) feature map."""

    stride: int = field(validator=_positive)
    channels: int = field(validator=_positive)

    def __str__(self) -> str:
        return f"/{self.stride}x{self.channels}"


@frozen
class HeadSpec:
    """One head output: (batch, H/stride, W/stride, anchors, channels_per_anchor),
    where channels_per_anchor = 4 box + 1 objectness + classes."""

    stride: int = field(validator=_positive)
    anchors: int = field(validator=_positive)
    channels_per_anchor: int = field(validator=_positive)

    def __str__(self) -> str:
        return f"/{self.stride}x{self.anchors}x{self.channels_per_anchor}"


@frozen
class DecodedSpec:
    """One decoded output: a dict of tensors, each (batch, H/stride, W/stride, anchors, n):
    ``yxhw`` (n=4, box centre and size as ratios of the image), ``objectness``
    (n=1, probability), ``category`` (n=classes, probabilities) and ``raw``
    (n=5+classes, the head's output before decoding, for losses on logits).

    ``centre_reach``: how far beyond its own cell, in cells, a prediction can place
    a box centre (0 for YOLOv3's sigmoid offset); target assignment that trains
    neighbour cells needs 0.5."""

    stride: int = field(validator=_positive)
    anchors: int = field(validator=_positive)
    classes: int = field(validator=_positive)
    centre_reach: float = field(default=0.0, converter=float)

    def channels(self) -> dict[str, int]:
        return {"yxhw": 4, "objectness": 1, "category": self.classes, "raw": 5 + self.classes}

    def __str__(self) -> str:
        return f"/{self.stride}x{self.anchors}x(yxhw 4, obj 1, cat {self.classes})"


#: Anchors of one stride: (height, width) pairs as ratios of the image size.
AnchorRatios = tuple[tuple[float, float], ...]


@frozen
class Chain:
    """Everything known upstream of a component while the chain is walked.

    A spec function reads the fields it needs; a field is None until the
    component that provides it has been visited.
    """

    image: ImageSpec | None = None
    labels: LabelSpec | None = None
    anchors: Mapping[int, AnchorRatios] | None = None
    features: Mapping[int, FeatureSpec] | None = None
    head: Mapping[int, HeadSpec] | None = None
    decoded: Mapping[int, DecodedSpec] | None = None

    def evolve(self, **changes: Any) -> Chain:
        return attrs.evolve(self, **changes)

    def require(self, name: str, by: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise SpecError(f"{by} needs '{name}' but nothing upstream provides it", field=name)
        return value


def _factory_string(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    module, _, attr = str(value).partition(":")
    if not module or not attr:
        raise ValueError(f"'{attribute.name}' must look like 'package.module:callable' (got {value!r})")


def _attrs_class(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not attrs.has(value):
        raise TypeError(f"'params' must be an attrs class (got {value!r})")


@frozen
class Component:
    """One registered part.

    ``params`` is an attrs class whose fields are the component's parameters
    (typed, defaulted, validated); ``spec`` is a pure-Python function
    ``spec(params, chain) -> output spec`` that raises SpecError when the
    upstream parts do not fit; ``factory`` is ``"module:callable"`` and is
    imported only when the component is built, so a manifest that declares
    components never imports TensorFlow. What the factory returns for each
    kind is stated in core/build.py.

    ``darknet`` (backbones and heads that Darknet's cfg files also describe) is
    ``"module:callable"``: ``callable(model) -> [(conv layer name, batch-norm layer
    name or None), ...]``, the built part's convolutions in the order a Darknet
    ``.weights`` file stores them (:mod:`detplug.core.model.darknet_weights`).
    """

    kind: str = field(validator=validators.in_(KINDS))
    name: str = field(validator=validators.matches_re(r"^[a-z][a-z0-9_]*$"))
    summary: str
    params: type = field(validator=_attrs_class)
    spec: Callable[[Any, Chain], Any]
    factory: str = field(validator=_factory_string)
    darknet: str | None = field(default=None, kw_only=True, validator=validators.optional(_factory_string))

    def default_params(self) -> Any:
        return self.params()


@frozen
class Provider:
    """Where a component comes from: the distribution and the entry point."""

    distribution: str
    version: str
    entry_point: str
    module: str


@frozen
class Registered:
    component: Component
    provider: Provider


@frozen
class NoParams:
    """The params class of a component that takes none."""
