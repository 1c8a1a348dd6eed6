"""Plans: the TOML file that names the components and the training periods.

Loading happens in two steps, both without TensorFlow:

1. :func:`load_plan` reads the TOML (with ``--set`` overrides applied) into
   :class:`Plan`, checking its own keys and types;
2. :func:`resolve_components` looks every named component up in the
   registry and builds its attrs params, so that a bad value is reported
   with the plan file, the key path and the expected and found value.

Errors are :class:`PlanError` sentences naming the file and the key.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import tomllib
from attrs import frozen

from detplug.core.errors import PlanError, RegistryError
from detplug.core.plan.assignment import Assignment
from detplug.core.plan.augmentation import Augmentation
from detplug.core.plan.params import ParamsError, build_params
from detplug.core.plan.settings import (
    EVALUATION_SETTING_KEYS,
    PERIOD_SETTING_KEYS,
    RUN_SETTING_KEYS,
    EvaluationSettings,
    PeriodSettings,
    RunSettings,
)
from detplug.core.plan.specs import Component, Provider, Registered

PLANS_DIR = Path(__file__).resolve().parents[2] / "plans"


@frozen
class ComponentRef:
    """A component named in the plan, with its raw params and where in the file it stands."""

    kind: str
    name: str
    params: Mapping[str, Any]
    key: str


@frozen
class Period:
    """One period of training: the original framework's five fields, the trainer, and
    the period settings ([train]'s, with this period's overrides applied)."""

    dataset: str
    epochs: int
    learning_rate: float
    losses: str
    save: bool
    trainer: ComponentRef
    settings: PeriodSettings

    def record(self) -> dict[str, Any]:
        """The period as plain values, to tell later whether it was changed."""
        return {
            "dataset": self.dataset, "epochs": self.epochs, "learning_rate": self.learning_rate,
            "losses": self.losses, "save": self.save,
            "trainer": {"name": self.trainer.name, **self.trainer.params},
            **{k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self.settings).items()},
        }


@frozen
class TrainSettings:
    trainer: ComponentRef
    run: RunSettings
    period_defaults: PeriodSettings
    #: What training images get (``augment = true`` or a table of Augmentation's fields); None: nothing.
    augmentation: Augmentation | None = None


@frozen
class Plan:
    name: str
    source: Path
    backbone: ComponentRef
    head: ComponentRef
    decoder: ComponentRef
    anchors: Any
    datasets: Mapping[str, ComponentRef]
    #: combination name -> loss name -> (weight, the loss component)
    loss_combos: Mapping[str, Mapping[str, tuple[float, ComponentRef]]]
    train: TrainSettings
    periods: tuple[Period, ...]
    evaluation: EvaluationSettings
    #: The evaluator component ([evaluation] evaluator), or None: validation losses only.
    evaluator: ComponentRef | None
    #: The plan as read, overrides applied: what plan.lock.toml records.
    document: Mapping[str, Any]
    #: Which anchors and cells each box trains ([model] assign); the default is YOLOv3's.
    assignment: Assignment = Assignment()
    #: The ``--set`` overrides applied to the file, so that an error names the one it came from.
    overrides: tuple[str, ...] = ()
    #: Weights a new run starts from ([model] init_from): a Darknet .weights file, a Keras
    #: .weights.h5 or a run's checkpoint folder; None: from scratch.
    init_from: Path | None = None

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.periods)

    def period_bounds(self) -> list[tuple[int, int]]:
        """(start epoch, end epoch) of each period; the end is the running sum of epochs."""
        bounds, end = [], 0
        for period in self.periods:
            bounds.append((end, end + period.epochs))
            end += period.epochs
        return bounds

    def components(self) -> Iterable[ComponentRef]:
        yield from self.datasets.values()
        yield self.backbone
        yield self.head
        yield self.decoder
        for combo in self.loss_combos.values():
            for _, ref in combo.values():
                yield ref
        yield self.train.trainer
        if self.evaluator is not None:
            yield self.evaluator
        for period in self.periods:
            if period.trainer is not self.train.trainer:
                yield period.trainer


@frozen
class Resolved:
    """A plan's component found in the registry, with its params built."""

    ref: ComponentRef
    component: Component
    params: Any
    provider: Provider


# ---------------------------------------------------------------------------
# finding and reading the file


def find_plan(name_or_path: str, extra_dirs: Iterable[Path] = ()) -> Path:
    """``--plan NAME`` finds ``plans/NAME.toml`` or a plugin's plan dir; ``--plan PATH`` takes a file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise PlanError(f"plan file {path} does not exist")
        return path
    dirs = [PLANS_DIR, *extra_dirs]
    for folder in dirs:
        candidate = Path(folder) / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in dirs if Path(folder).is_dir() for p in Path(folder).glob("*.toml")})
    close = difflib.get_close_matches(name_or_path, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise PlanError(
        f"no plan named '{name_or_path}': {hint}known plans: {', '.join(known) or 'none'} "
        f"(or give the path of a .toml file)"
    )


def plan_argument(plan: Plan) -> str:
    """What ``--plan`` takes to find ``plan`` again, for the commands detplug advises: a
    shipped plan's name, any other plan's file."""
    return plan.source.stem if plan.source.parent == PLANS_DIR else str(plan.source)


def load_plan(path: Path, overrides: Iterable[str] = ()) -> Plan:
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"cannot read plan file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"{path}: not valid TOML: {error}") from None
    overrides = tuple(overrides)
    for override in overrides:
        apply_override(document, override, path)
    return _PlanReader(path, overrides).read(document)


def apply_override(document: dict, override: str, path: Path) -> None:
    """Apply ``--set a.b.c=value`` (``periods.0.epochs=1`` indexes a list); the value is read
    as a TOML value, else as a string."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise PlanError(f"--set {override!r}: write it as KEY.PATH=VALUE, e.g. model.backbone.width=0.5")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.strip().split(".")
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, key, where, path)]
            continue
        child = node.get(part)
        if isinstance(child, str) and depth == 1 and (parts[0] == "model" or parts[:2] == ["train", "trainer"]):
            child = node[part] = {"name": child}  # `backbone = "x"` written as a bare name
        if child is None:
            child = node[part] = {}
        if not isinstance(child, (dict, list)):
            raise PlanError(f"--set {key}: {where} in {path} is not a table")
        node = child
    if isinstance(node, list):
        node[_list_index(node, parts[-1], key, key, path)] = value
    else:
        node[parts[-1]] = value


def _list_index(items: list, part: str, key: str, where: str, path: Path) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise PlanError(f"--set {key}: {where} in {path} has {len(items)} entries; index it with 0 to "
                        f"{len(items) - 1}")
    return int(part)


class _PlanReader:
    """Reads the TOML document into a Plan, naming the file and key path of every mistake."""

    TOP_KEYS = ("name", "model", "datasets", "loss_combos", "train", "periods", "evaluation")
    MODEL_KEYS = ("backbone", "head", "decoder", "anchors", "assign", "init_from")
    TRAIN_KEYS = ("trainer", "augment", *RUN_SETTING_KEYS, *PERIOD_SETTING_KEYS)
    PERIOD_KEYS = ("dataset", "epochs", "learning_rate", "losses", "save", "trainer", *PERIOD_SETTING_KEYS)

    def __init__(self, path: Path, overrides: tuple[str, ...] = ()) -> None:
        self.path = path
        self.overrides = overrides

    def error(self, key: str, message: str) -> PlanError:
        return PlanError(f"{origin(self.path, self.overrides, key)}: {key}: {message}")

    def table(self, document: Mapping, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        value = document if not key else document.get(key.rsplit(".", 1)[-1])
        if value is None:
            raise self.error(key, f"missing; add a [{key}] table")
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, found {type(value).__name__} {value!r}")
        self.check_keys(value, key, allowed)
        for name in required:
            if name not in value:
                raise self.error(_join(key, name), f"missing (required in {key or 'the plan'})")
        return value

    def check_keys(self, value: Mapping, key: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise self.error(_join(key, name), f"unknown key; {hint}valid keys: {', '.join(allowed)}")

    def typed(self, value: Any, key: str, kind: type) -> Any:
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise self.error(key, f"expected {kind.__name__}, found {value!r}")
        if kind is float and not math.isfinite(value):
            raise self.error(key, f"must be a finite number, found {value!r}")
        return value

    def positive(self, value: Any, key: str, kind: type) -> Any:
        value = self.typed(value, key, kind)
        if value <= 0:
            raise self.error(key, f"must be > 0 (got {value!r})")
        return value

    def component(self, value: Any, key: str, kind: str) -> ComponentRef:
        if isinstance(value, str):
            return ComponentRef(kind=kind, name=value, params={}, key=key)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise self.error(key, f"expected a {kind} name or a table with 'name' and its params, found {value!r}")
        params = {k: v for k, v in value.items() if k != "name"}
        return ComponentRef(kind=kind, name=value["name"], params=params, key=key)

    def read(self, document: dict) -> Plan:
        self.check_keys(document, "", self.TOP_KEYS)
        name = self.typed(document.get("name", self.path.stem), "name", str)
        model = self.table(document, "model", self.MODEL_KEYS, required=("backbone", "head", "decoder", "anchors"))
        datasets_table = self.table(document, "datasets", tuple(document.get("datasets", {}) or ()))
        if not datasets_table:
            raise self.error("datasets", "the plan names no dataset; add a [datasets.NAME] table with 'name'")
        datasets = {
            key: self.component(value, f"datasets.{key}", "dataset") for key, value in datasets_table.items()
        }
        combos_table = self.table(document, "loss_combos", tuple(document.get("loss_combos", {}) or ()))
        loss_combos = {key: self.loss_combo(value, f"loss_combos.{key}") for key, value in combos_table.items()}
        train = self.train(document.get("train"))
        periods = self.periods(document.get("periods"), train, datasets, loss_combos)
        evaluation = self.table({"evaluation": document.get("evaluation", {})}, "evaluation",
                                ("evaluator", *EVALUATION_SETTING_KEYS))
        evaluator = evaluation.get("evaluator")
        return Plan(
            evaluation=self.settings(EvaluationSettings, evaluation, "evaluation"),
            evaluator=None if evaluator is None else self.component(evaluator, "evaluation.evaluator", "evaluator"),
            name=name,
            source=self.path,
            backbone=self.component(model["backbone"], "model.backbone", "backbone"),
            head=self.component(model["head"], "model.head", "head"),
            decoder=self.component(model["decoder"], "model.decoder", "decoder"),
            anchors=model["anchors"],
            datasets=datasets,
            loss_combos=loss_combos,
            train=train,
            periods=periods,
            document=document,
            overrides=self.overrides,
            assignment=self.assignment(model.get("assign", {})),
            # An empty init_from (e.g. --set model.init_from='') starts from scratch.
            init_from=Path(self.typed(model["init_from"], "model.init_from", str)).expanduser()
            if model.get("init_from") else None,
        )

    def loss_combo(self, value: Any, key: str) -> dict[str, tuple[float, ComponentRef]]:
        if not isinstance(value, dict) or not value:
            raise self.error(key, f"expected a table of loss = weight, found {value!r}")
        combo = {}
        for loss, setting in value.items():
            loss_key = f"{key}.{loss}"
            if isinstance(setting, dict):
                params = dict(setting)
                weight = params.pop("weight", 1.0)
            else:
                weight, params = setting, {}
            weight = self.typed(weight, loss_key, float)
            if weight < 0:
                raise self.error(loss_key, f"a loss weight must be >= 0 (got {weight})")
            combo[loss] = (weight, ComponentRef(kind="loss", name=loss, params=params, key=loss_key))
        return combo

    def settings(self, settings_class: type, values: Mapping[str, Any], key: str, defaults: Any = None) -> Any:
        """An attrs settings class from the table's keys that belong to it, over ``defaults``."""
        chosen = {name: values[name] for name in attrs.fields_dict(settings_class) if name in values}
        if defaults is not None:
            chosen = {**attrs.asdict(defaults), **chosen}
        try:
            return build_params(settings_class, chosen)
        except ParamsError as error:
            raise self.error(_join(key, error.key) if error.key else key, error.message) from None

    def train(self, value: Any) -> TrainSettings:
        table = self.table({"train": value if value is not None else {}}, "train", self.TRAIN_KEYS)
        return TrainSettings(
            trainer=self.component(table.get("trainer", "graph"), "train.trainer", "trainer"),
            run=self.settings(RunSettings, table, "train"),
            period_defaults=self.settings(PeriodSettings, table, "train"),
            augmentation=self.augmentation(table.get("augment", False)),
        )

    def assignment(self, value: Any) -> Assignment:
        if not isinstance(value, dict):
            raise self.error("model.assign", f"expected a table of assignment settings "
                             f"({', '.join(attrs.fields_dict(Assignment))}), found {value!r}")
        self.check_keys(value, "model.assign", attrs.fields_dict(Assignment))
        return self.settings(Assignment, value, "model.assign")

    def augmentation(self, value: Any) -> Augmentation | None:
        if isinstance(value, bool):
            return Augmentation() if value else None
        if not isinstance(value, dict):
            raise self.error("train.augment", f"expected true, false or a table of augmentation settings "
                             f"({', '.join(attrs.fields_dict(Augmentation))}), found {value!r}")
        self.check_keys(value, "train.augment", attrs.fields_dict(Augmentation))
        return self.settings(Augmentation, value, "train.augment")

    def periods(self, value: Any, train: TrainSettings, datasets: Mapping, loss_combos: Mapping) -> tuple[Period, ...]:
        if value is None or value == []:
            raise self.error("periods", "the plan has no [[periods]]; add at least one")
        if not isinstance(value, list):
            raise self.error("periods", f"expected [[periods]] tables, found {value!r}")
        periods = []
        for index, table in enumerate(value):
            key = f"periods[{index}]"
            if not isinstance(table, dict):
                raise self.error(key, f"expected a table, found {table!r}")
            self.check_keys(table, key, self.PERIOD_KEYS)
            for required in ("dataset", "epochs", "learning_rate", "losses", "save"):
                if required not in table:
                    raise self.error(f"{key}.{required}", "missing (every period names dataset, epochs, "
                                     "learning_rate, losses and save)")
            dataset = self.typed(table["dataset"], f"{key}.dataset", str)
            if dataset not in datasets:
                raise self.error(f"{key}.dataset", f"'{dataset}' is not one of the plan's datasets: "
                                 f"{', '.join(datasets)}")
            losses = self.typed(table["losses"], f"{key}.losses", str)
            if losses not in loss_combos:
                raise self.error(f"{key}.losses", f"'{losses}' is not one of the plan's loss_combos: "
                                 f"{', '.join(loss_combos) or 'none'}")
            trainer = table.get("trainer")
            periods.append(Period(
                dataset=dataset,
                epochs=self.positive(table["epochs"], f"{key}.epochs", int),
                learning_rate=self.positive(table["learning_rate"], f"{key}.learning_rate", float),
                losses=losses,
                save=self.typed(table["save"], f"{key}.save", bool),
                trainer=train.trainer if trainer is None else self.component(trainer, f"{key}.trainer", "trainer"),
                settings=self.settings(PeriodSettings, table, key, defaults=train.period_defaults),
            ))
        return tuple(periods)


def origin(path: Path, overrides: Iterable[str], key: str) -> str:
    """Where the value at ``key`` came from: the plan file, or the ``--set`` that gave it."""
    dotted = re.sub(r"\[(\d+)\]", r".\1", key)
    for override in overrides:
        target = override.partition("=")[0].strip()
        if dotted == target or dotted.startswith(f"{target}."):
            return f"--set {override} (over {path})"
    return str(path)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ---------------------------------------------------------------------------
# resolving against the registry


class ComponentLookup(Protocol):
    """What the plan reader needs of :class:`detplug.registry.Registry`: named here rather
    than imported, because the registry imports the hooks, whose annotations reach back
    into the plan."""

    def get(self, kind: str, name: str) -> Registered:
        """The component ``kind`` ``name``; a RegistryError saying what is installed if none."""
        ...


def resolve_components(plan: Plan, registry: ComponentLookup) -> dict[str, Resolved]:
    """Every component the plan names, by key path, looked up and with its params built."""
    resolved = {}
    for ref in plan.components():
        try:
            registered = registry.get(ref.kind, ref.name)
        except RegistryError as error:
            raise PlanError(f"{plan.source}: {ref.key}: {error}") from None
        try:
            params = build_params(registered.component.params, ref.params)
        except ParamsError as error:
            key = f"{ref.key}.{error.key}" if error.key else ref.key
            raise PlanError(f"{origin(plan.source, plan.overrides, key)}: {key}: {error.message}") from None
        resolved[ref.key] = Resolved(ref, registered.component, params, registered.provider)
    return resolved
