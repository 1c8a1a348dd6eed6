"""Finds components through pluggy entry points and looks them up by kind and name.

A component's ``factory`` (``"module:callable"``) is imported by
:func:`load_factory` and called only by :mod:`detplug.core.build`, whose
docstring is the contract each kind's factory keeps.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import logging
import os
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from detplug import hookspecs
from detplug.core.errors import RegistryError
from detplug.core.plan.specs import KINDS, PLUGIN_API_VERSION, Component, Provider, Registered

ENTRY_POINT_GROUP = "detplug"
#: detplug's own plugins, the only ones DETPLUG_DISABLE_PLUGIN_AUTOLOAD=1 keeps.
BUILTIN_DISTRIBUTION = "detplug"

log = logging.getLogger(__name__)


class PluginAPIError(Exception):
    """A plugin written for another version of the plugin API."""


@attrs.frozen
class LoadError:
    """A plugin that was skipped: it raised on import, broke the hook contract or
    was written for another plugin API."""

    provider: Provider
    error: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.error.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


@attrs.frozen
class Clash:
    """Two distributions registering the same kind and name; using that name is an error."""

    kind: str
    name: str
    providers: tuple[Provider, ...]

    def message(self) -> str:
        who = " and by ".join(f"{p.distribution} {p.version} (plugin '{p.entry_point}')" for p in self.providers)
        return (f"{self.kind} '{self.name}' is registered by {who}; uninstall one of them, or disable one "
                f"with DETPLUG_DISABLE_PLUGINS=<plugin>")


def plural(kind: str) -> str:
    """``backbones``, ``losses``: a component kind in the plural."""
    return f"{kind}es" if kind.endswith("s") else f"{kind}s"


def _env_names(variable: str) -> set[str]:
    return {name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()}


class Registry:
    """Every component of every loaded plugin, by kind and name.

    A plugin that fails to load is recorded in ``load_errors`` and skipped, so
    the others keep working; it only matters when a plan needs what it would
    have provided (the unknown-name error then mentions it) or with
    ``--strict-plugins``.
    """

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self.plugin_manager = plugin_manager
        self.load_errors: list[LoadError] = []
        self.disabled: list[Provider] = []
        self.clashes: dict[tuple[str, str], Clash] = {}
        self._components: dict[tuple[str, str], Registered] = {}

    @property
    def hook(self) -> Any:
        return self.plugin_manager.hook

    @classmethod
    def discover(cls, entry_points: Iterable[metadata.EntryPoint] | None = None) -> Registry:
        """Load every plugin of entry-point group ``detplug`` and collect its components.

        ``DETPLUG_DISABLE_PLUGINS=name,...`` skips plugins by entry-point name
        (the name ``--list`` shows) without importing them;
        ``DETPLUG_DISABLE_PLUGIN_AUTOLOAD=1`` loads only detplug's own.
        """
        plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        plugin_manager.add_hookspecs(hookspecs)
        registry = cls(plugin_manager)
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        disabled = _env_names("DETPLUG_DISABLE_PLUGINS")
        builtins_only = os.environ.get("DETPLUG_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")
        for entry_point in sorted(entry_points, key=lambda ep: ep.name):
            provider = _provider(entry_point)
            if entry_point.name in disabled or (builtins_only and provider.distribution != BUILTIN_DISTRIBUTION):
                registry.disabled.append(provider)
                log.debug(f"plugin '{entry_point.name}' ({provider.distribution} {provider.version}) is disabled")
                continue
            registry._load(entry_point, provider)
        return registry

    def _load(self, entry_point: metadata.EntryPoint, provider: Provider) -> None:
        module = None
        try:
            module = entry_point.load()
            if self.plugin_manager.is_registered(module):
                return
            _check_api_version(module)
            self.plugin_manager.register(module, name=entry_point.name)
            _check_hooks_have_specs(self.plugin_manager, module)
            components = list(getattr(module, "detplug_components", lambda: [])())
            for component in components:
                if not isinstance(component, Component):
                    raise TypeError(f"detplug_components() returned {component!r}, not a detplug.Component")
        except Exception as error:  # a broken plugin must not break the others
            # pluggy may have added some of its hooks before rejecting another one.
            if module is not None and self.plugin_manager.is_registered(module):
                self.plugin_manager.unregister(module)
            self.load_errors.append(LoadError(provider, _describe(error)))
            log.debug(f"plugin '{entry_point.name}' ({provider.distribution} {provider.version}) failed to load: "
                      f"{self.load_errors[-1].last_line}")
            return
        for component in components:
            self.add(component, provider)
        log.debug(f"plugin '{entry_point.name}' ({provider.distribution} {provider.version}, {entry_point.value}): "
                  f"{len(components)} components")

    def add(self, component: Component, provider: Provider) -> None:
        key = (component.kind, component.name)
        if key in self.clashes:
            self.clashes[key] = attrs.evolve(self.clashes[key], providers=(*self.clashes[key].providers, provider))
            return
        known = self._components.get(key)
        if known is None:
            self._components[key] = Registered(component, provider)
        elif known.component is not component:  # the identical object twice is harmless
            del self._components[key]
            self.clashes[key] = Clash(component.kind, component.name, (known.provider, provider))

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
        if (kind, name) in self.clashes:
            raise RegistryError(self.clashes[(kind, name)].message())
        installed = [r.component.name for r in self.of_kind(kind)]
        close = difflib.get_close_matches(name, installed, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        broken = self.load_error_notes("it")
        disabled = "".join(
            f"; plugin '{p.entry_point}' ({p.distribution} {p.version}) is disabled and may provide it"
            for p in self.disabled
        )
        raise RegistryError(
            f"unknown {kind} '{name}': {hint}installed {plural(kind)}: {', '.join(installed) or 'none'}; "
            f"if another package provides it, pip install that package "
            f"(see: python run.py list){broken}{disabled}"
        )

    def load_error_notes(self, what: str) -> str:
        """``; plugin 'x' (dist 1.0) failed to load and may provide <what>: <its error>`` per failed plugin."""
        return "".join(
            f"; plugin '{e.provider.entry_point}' ({e.provider.distribution} {e.provider.version}) failed to "
            f"load and may provide {what}: {e.last_line}"
            for e in self.load_errors
        )

    def raise_for_load_errors(self) -> None:
        """``--strict-plugins``: any plugin that failed to load, or any clash, is fatal."""
        problems = [
            f"plugin '{e.provider.entry_point}' ({e.provider.distribution} {e.provider.version}): {e.last_line}"
            for e in self.load_errors
        ] + [clash.message() for clash in self.clashes.values()]
        if problems:
            raise RegistryError("--strict-plugins: " + "; ".join(problems))


def _provider(entry_point: metadata.EntryPoint) -> Provider:
    dist = entry_point.dist
    return Provider(
        distribution=dist.name if dist else "?",
        version=dist.version if dist else "?",
        entry_point=entry_point.name,
        module=entry_point.value,
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _check_api_version(module: Any) -> None:
    declared = getattr(module, "PLUGIN_API", None)
    if declared is None:
        raise PluginAPIError(
            f"module {module.__name__} declares no PLUGIN_API; add PLUGIN_API = {PLUGIN_API_VERSION} "
            f"(the detplug plugin API it was written for)"
        )
    if declared != PLUGIN_API_VERSION:
        raise PluginAPIError(f"requires plugin API {declared}, detplug provides {PLUGIN_API_VERSION}")


def _check_hooks_have_specs(plugin_manager: pluggy.PluginManager, module: Any) -> None:
    """pluggy checks a hookimpl's arguments against its spec at registration, but a
    misspelt hook name would be silently ignored: make it a load error too."""
    for caller in plugin_manager.get_hookcallers(module) or ():
        if caller.spec is None:
            raise pluggy.PluginValidationError(
                module, f"{module.__name__} implements '{caller.name}', which is not a detplug hook "
                f"(see detplug/hookspecs.py)"
            )


def load_factory(component: Component) -> Any:
    """Import and return the callable named by ``component.factory``."""
    return load_reference(component, component.factory, "factory")


def load_reference(component: Component, reference: str, what: str) -> Any:
    """Import and return the callable a component names by ``"module:callable"`` (its
    ``factory``, its ``darknet`` layout)."""
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RegistryError(
            f"{component.kind} '{component.name}': its {what} '{reference}' names "
            f"'{attribute}', which module {module_name} does not define"
        ) from None
