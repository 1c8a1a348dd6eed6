"""The checks that need no TensorFlow: params, the manifest's imports, a dataset's spec,
and the declared shapes that the Keras checks compare with."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

import attrs

from detplug.core.plan.params import ParamsError, build_params
from detplug.core.plan.specs import Chain, Component, DatasetSpec, SpecError
from detplug.testing._common import ContractError, not_a_spec_error, params_or_defaults


def check_params_defaults(component: Component) -> None:
    """The params class is a frozen attrs class whose every field is typed and defaulted,
    builds with no arguments, and round-trips through plain values as a plan gives them
    (``attrs.asdict`` then the plan loader's ``build_params``)."""
    check = "check_params_defaults"
    params_class = component.params
    if not attrs.has(params_class):
        raise ContractError(component, check, f"params must be an attrs class, found {params_class!r}")
    fields = attrs.fields(params_class)
    no_default = [f.name for f in fields if f.default is attrs.NOTHING]
    if no_default:
        raise ContractError(
            component, check,
            f"fields {no_default} have no default; a plan that names the component without "
            f"params must work, so give every field a default",
            expected="a default for every field", found=no_default,
        )
    untyped = [f.name for f in fields if f.type is None]
    if untyped:
        raise ContractError(
            component, check,
            f"fields {untyped} have no type annotation; plan values are checked against it "
            f"and `run.py list --verbose` shows it",
            expected="a type for every field", found=untyped,
        )
    try:
        defaults = params_class()
    except Exception as error:
        raise ContractError(component, check, f"{params_class.__name__}() fails with its own defaults: "
                                              f"{type(error).__name__}: {error}") from error
    _check_frozen(component, check, defaults)
    values = attrs.asdict(defaults)
    try:
        rebuilt = build_params(params_class, values)
    except ParamsError as error:
        where = f"field '{error.key}': " if error.key else ""
        raise ContractError(
            component, check,
            f"its defaults written as plan values {values} do not read back: {where}{error.message}; "
            f"use types a TOML plan can hold (int, float, bool, str, tuples of them)",
        ) from None
    if attrs.asdict(rebuilt) != attrs.asdict(defaults):
        raise ContractError(component, check, "its defaults change when read back from plan values",
                            expected=attrs.asdict(defaults), found=attrs.asdict(rebuilt))


def _check_frozen(component: Component, check: str, instance: Any) -> None:
    # Frozen attrs refuses every attribute; a field name if there is one, else any name.
    fields = attrs.fields(type(instance))
    name = fields[0].name if fields else "_detplug_probe"
    try:
        setattr(instance, name, getattr(instance, name, None))
    except attrs.exceptions.FrozenInstanceError:
        return
    except AttributeError:  # slotted, unfrozen, no such slot: still mutable where it counts
        pass
    raise ContractError(
        component, check,
        f"{type(instance).__name__} is mutable; declare it with @attrs.frozen so a "
        f"component's params cannot change after the plan was checked",
        expected="frozen", found="mutable",
    )


def check_manifest_without_tensorflow(component: Component) -> None:
    """The modules declaring the component (its params class and spec function) import
    without TensorFlow or Keras, so ``run.py --list`` and the static check stay fast.

    Runs in a fresh interpreter (this one may have imported TensorFlow already) that
    refuses those imports, so the check is quick and names the line that tried.
    """
    check = "check_manifest_without_tensorflow"
    modules = tuple(sorted({component.params.__module__, component.spec.__module__}))
    attempts, error = _heavy_imports(modules)
    if attempts:
        found = [f"{attempt['module']} (from {attempt['from']})" for attempt in attempts]
        raise ContractError(
            component, check,
            f"importing {', '.join(modules)} imports {', '.join(found)}; keep TensorFlow code in "
            f"the module the factory string names ({component.factory})",
            expected="no tensorflow or keras", found=found,
        )
    if error:
        raise ContractError(component, check, f"importing {', '.join(modules)} in a fresh interpreter "
                                              f"fails: {error}")


# The child records, then refuses, every import of a heavy package: refusing is what
# keeps the check fast, recording catches an import a manifest wraps in try/except.
_PROBE = """
import importlib, json, sys, traceback
attempts = []
class RefuseHeavy:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "keras"):
            frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<")]
            where = f"{frames[-1].filename} line {frames[-1].lineno}" if frames else "?"
            attempts.append({"module": name, "from": where})
            raise ImportError(f"detplug.testing refuses {name} while a manifest is imported")
        return None
sys.meta_path.insert(0, RefuseHeavy())
error = None
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"attempts": attempts, "error": error}))
"""


@functools.cache
def _heavy_imports(modules: tuple[str, ...]) -> tuple[list[dict[str, str]], str | None]:
    # The child sees this process's sys.path: a plugin under test may be importable
    # only through it (pytest's rootdir, a test's tmp_path).
    path = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": path}, timeout=120,
    )
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return [], (result.stderr.strip().splitlines() or ["the interpreter gave no output"])[-1]
    return report["attempts"], report["error"]


def check_dataset_spec(component: Component, *, params: Any = None) -> DatasetSpec | None:
    """A dataset's spec function gives a DatasetSpec from the empty chain.

    With its default params a dataset may instead raise SpecError: one whose
    classes come from its source cannot know them before the plan names the
    source. Then None is returned. Given ``params``, a DatasetSpec is required.
    """
    check = "check_dataset_spec"
    try:
        output = component.spec(params_or_defaults(component, params), Chain())
    except SpecError as error:
        if params is None:
            return None
        raise ContractError(component, check, f"its spec function rejects the given params: {error.message}",
                            expected="a DatasetSpec", found=f"SpecError ({error.field})") from None
    except Exception as error:
        raise not_a_spec_error(component, check, error) from error
    if not isinstance(output, DatasetSpec):
        raise ContractError(component, check, "the spec function must return a DatasetSpec",
                            expected="DatasetSpec", found=type(output).__name__)
    return output
