"""What plan.lock.toml records: the resolved plan and the versions that ran it."""

from __future__ import annotations

import importlib.metadata as metadata
from typing import TYPE_CHECKING, Any

from detplug.core.plan.check import CheckedPlan

if TYPE_CHECKING:
    from detplug.registry import Registry



def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def lock_document(checked: CheckedPlan, registry: Registry) -> dict[str, Any]:
    plan = checked.plan
    resolved_params = {
        key: {"name": item.component.name, **_plain(item.params)} for key, item in checked.resolved.items()
    }
    providers = sorted({(item.provider.distribution, item.provider.version) for item in checked.resolved.values()})
    return {
        "plan": _plain(dict(plan.document)),
        "resolved": {"source": str(plan.source), "components": resolved_params},
        "versions": {
            "detplug": _version("detplug"),
            "tensorflow": _version("tensorflow"),
            "keras": _version("keras"),
            "plugins": {name: version for name, version in providers},
        },
    }


def _plain(value: Any) -> Any:
    """attrs instances, tuples and None made TOML-writable."""
    import attrs

    if attrs.has(type(value)):
        return _plain(attrs.asdict(value, recurse=False))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
