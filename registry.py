"""Finds components through pluggy entry points and looks them up by kind and name.

What each kind's factory (``Component.factory``, ``"module:callable"``) is
called with and must return -- the one contract per kind:

dataset
    ``factory(params, *, data_root, cache_dir) -> PreparedData``
    (:mod:`detplug.core.data.prepared`): converts its source into TFRecord
    shards plus ``manifest.json`` and says where they are. ``data_root`` is
    ``--data-root`` or None. Its spec gives a DatasetSpec.
backbone
    ``factory(params, chain) -> keras.Model`` from the image
    (batch, h, w, 3), float32 in [0, 1], to ``{str(stride): (batch, h/stride, w/stride, channels)}``.
head
    ``factory(params, chain) -> keras.Model`` from the backbone's dict to
    ``{str(stride): (batch, h/stride, w/stride, anchors, 5 + classes)}``.
decoder
    ``factory(params, chain) -> keras layer`` from the head's dict to
    ``{str(stride): {"yxhw", "objectness", "category", "raw"}}`` (see DecodedSpec).
loss
    ``factory(params, chain) -> callable(pred, target, boxes) -> (batch,) tensor``
    for one stride: ``pred`` is that stride's decoded dict, ``target`` the
    (batch, h/s, w/s, anchors, 5 + classes) target tensor (yxhw, objectness,
    one-hot classes), ``boxes`` every box of each image, (batch, max_boxes, 4)
    yxhw, zero-padded, ignore regions included.
trainer
    ``factory(params, *, model, losses, optimizer) -> detplug.core.epoch_loop.Trainer``.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
from typing import Any, Iterable

import attrs
import pluggy

from detplug import hookspecs
from detplug.core.errors import DetplugError
from detplug.core.specs import KINDS, Component

ENTRY_POINT_GROUP = "detplug"


class RegistryError(DetplugError):
    """A component cannot be found or two plugins disagree; the message says what to do."""


@attrs.frozen
class Provider:
    """Where a component comes from: the distribution and the entry point."""

    distribution: str
    version: str
    entry_point: str
    module: str


@attrs.frozen
class Registered:
    component: Component
    provider: Provider


@attrs.frozen
class LoadError:
    provider: Provider
    error: str


class Registry:
    """Every component of every loaded plugin, by kind and name."""

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self.plugin_manager = plugin_manager
        self.load_errors: list[LoadError] = []
        self._components: dict[tuple[str, str], Registered] = {}

    @property
    def hook(self) -> Any:
        return self.plugin_manager.hook

    @classmethod
    def discover(cls, entry_points: Iterable[metadata.EntryPoint] | None = None) -> "Registry":
        """Load every plugin of entry-point group ``detplug`` and collect its components."""
        plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        plugin_manager.add_hookspecs(hookspecs)
        registry = cls(plugin_manager)
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for entry_point in sorted(entry_points, key=lambda ep: ep.name):
            registry._load(entry_point)
        return registry

    def _load(self, entry_point: metadata.EntryPoint) -> None:
        dist = entry_point.dist
        provider = Provider(
            distribution=dist.name if dist else "?",
            version=dist.version if dist else "?",
            entry_point=entry_point.name,
            module=entry_point.value,
        )
        try:
            module = entry_point.load()
            if self.plugin_manager.is_registered(module):
                return
            self.plugin_manager.register(module, name=entry_point.name)
            components = getattr(module, "detplug_components", lambda: [])()
        except Exception as error:  # a broken plugin must not break the others
            self.load_errors.append(LoadError(provider, f"{type(error).__name__}: {error}"))
            return
        for component in components:
            self.add(component, provider)

    def add(self, component: Component, provider: Provider) -> None:
        key = (component.kind, component.name)
        known = self._components.get(key)
        if known is not None:
            if known.component is component:
                return
            raise RegistryError(
                f"{component.kind} '{component.name}' is registered twice: by "
                f"{known.provider.distribution} {known.provider.version} ({known.provider.module}) "
                f"and by {provider.distribution} {provider.version} ({provider.module}); "
                f"uninstall one of them"
            )
        self._components[key] = Registered(component, provider)

    def of_kind(self, kind: str) -> list[Registered]:
        return sorted(
            (r for (k, _), r in self._components.items() if k == kind),
            key=lambda r: r.component.name,
        )

    def all(self) -> list[Registered]:
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(
            self._components.values(),
            key=lambda r: (order.get(r.component.kind, len(order)), r.component.name),
        )

    def get(self, kind: str, name: str) -> Registered:
        if kind not in KINDS:
            raise RegistryError(f"there is no component kind '{kind}'; the kinds are: {', '.join(KINDS)}")
        found = self._components.get((kind, name))
        if found is not None:
            return found
        installed = [r.component.name for r in self.of_kind(kind)]
        close = difflib.get_close_matches(name, installed, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise RegistryError(
            f"unknown {kind} '{name}': {hint}installed {kind}s: {', '.join(installed) or 'none'}; "
            f"if another package provides it, pip install that package "
            f"(see: python run.py --list)"
        )


def load_factory(component: Component) -> Any:
    """Import and return the callable named by ``component.factory``."""
    module_name, _, attribute = component.factory.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RegistryError(
            f"{component.kind} '{component.name}': its factory '{component.factory}' names "
            f"'{attribute}', which module {module_name} does not define"
        ) from None
