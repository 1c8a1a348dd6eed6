"""What ``--list`` and ``--check`` print. ``--list`` never imports TensorFlow; ``--check``
imports it only after the static chain has been printed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from detplug.core.errors import DetplugError
from detplug.core.plan.check import CheckedPlan, describe_output, training_sizes
from detplug.core.plan.specs import KINDS

if TYPE_CHECKING:
    from detplug.core.plan.specs import Component
    from detplug.registry import Registry

log = logging.getLogger(__name__)


def _params_of(component: Component) -> list[dict[str, str]]:
    params = []
    for field in attrs.fields(component.params):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        params.append({
            "name": field.name,
            "type": field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type)),
            "default": repr(default),
        })
    return params


def listing_rows(registry: Registry, kind: str | None, verbose: bool) -> list[dict[str, Any]]:
    if kind is not None and kind not in KINDS:
        raise DetplugError(f"--list {kind}: there is no component kind '{kind}'; the kinds are: {', '.join(KINDS)}")
    rows = []
    for item in registry.all():
        component, provider = item.component, item.provider
        if kind is not None and component.kind != kind:
            continue
        row: dict[str, Any] = {
            "kind": component.kind,
            "name": component.name,
            "summary": component.summary,
            "distribution": provider.distribution,
            "version": provider.version,
            "plugin": provider.entry_point,
        }
        if verbose:
            row.update(
                params=_params_of(component),
                spec=(component.spec.__doc__ or "").strip().splitlines()[0] if component.spec.__doc__ else "",
                factory=component.factory,
            )
        rows.append(row)
    return rows


def print_listing(registry: Any, *, kind: str | None, as_json: bool, verbose: bool,
                  json_path: Path | None = None) -> None:
    rows = listing_rows(registry, kind, verbose)
    errors = [
        {"plugin": e.provider.entry_point, "distribution": e.provider.distribution,
         "version": e.provider.version, "error": e.last_line}
        for e in registry.load_errors
    ]
    clashes = [clash.message() for clash in registry.clashes.values()]
    disabled = [{"plugin": p.entry_point, "distribution": p.distribution, "version": p.version}
                for p in registry.disabled]
    if as_json:
        text = json.dumps({"components": rows, "load_errors": errors, "clashes": clashes, "disabled": disabled},
                          indent=2)
        if json_path is not None:
            json_path.write_text(text + "\n")
        else:
            print(text)
        return
    name_width = max([len(r["name"]) for r in rows] + [4])
    provider_width = max([len(f"{r['distribution']} {r['version']}") for r in rows] + [8])
    for row in rows:
        provided = f"{row['distribution']} {row['version']}"
        print(f"{row['kind']:<9} {row['name']:<{name_width}}  {provided:<{provider_width}}  {row['summary']}")
        if verbose:
            indent = " " * (11 + name_width)
            for param in row["params"]:
                print(f"{indent}{param['name']}: {param['type']} = {param['default']}")
            if row["spec"]:
                print(f"{indent}spec: {row['spec']}")
            print(f"{indent}factory: {row['factory']} (plugin '{row['plugin']}')")
    if errors:
        print("\nplugins that failed to load (skipped):")
        for error in errors:
            print(f"  {error['plugin']} ({error['distribution']} {error['version']}): {error['error']}")
    if clashes:
        print("\nnames registered twice (unusable until one is removed):")
        for clash in clashes:
            print(f"  {clash}")
    if disabled:
        print("\ndisabled plugins: " + ", ".join(f"{d['plugin']} ({d['distribution']} {d['version']})"
                                                for d in disabled))


def print_check(checked: CheckedPlan, *, symbolic: bool = True) -> None:
    """The spec chain as a table, its warnings, each period's chain, then (``symbolic``) the
    Keras model of each chain built and compared with every declared spec, its parameter
    count, what init_from carries and what carries over where a period switches models."""
    plan = checked.plan
    log.info(f"plan '{plan.name}' ({plan.source})")
    log.info("spec chain (pure Python):")
    _print_links(checked.links)
    for warning in checked.warnings:
        log.warning(f"warning: {warning}")
    changes = checked.model_changes()
    if len(checked.chains) > 1:
        for key in list(checked.chains)[1:]:
            log.info(f"spec chain of dataset '{key}' (pure Python):")
            _print_links([link for link in checked.for_dataset(key).links
                          if link.resolved.component.kind != "dataset"])
    for index, period in enumerate(plan.periods):
        view = checked.for_period(index)
        sizes = training_sizes(checked, index)
        log.info(f"period {index + 1}: {period.dataset}: {_chain_words(view)}"
                 + ("; the model is rebuilt for it" if index in changes else "")
                 + (f"; multi-scale every {period.settings.multi_scale_every} batches: "
                    + ", ".join(f"{h}x{w}" for h, w in sizes) if sizes else ""))
    if not symbolic:
        log.info("symbolic Keras model: not built (--static)")
        return
    from detplug.core.model.assemble import build_parts, count_parameters
    from detplug.core.model.init_from import initialise, own_weights
    from detplug.core.model.transfer import plan_transfer

    parts = build_parts(checked.first())
    scales = {size for index in range(len(plan.periods)) for size in training_sizes(checked, index)}
    log.info("symbolic Keras model: every declared spec matches the built tensor shapes"
             + (f" at {len(scales)} multi-scale sizes" if scales else ""))
    log.info(f"parameters: {count_parameters(parts.model)}")
    report = initialise(checked.first(), parts)
    if report is not None:
        log.info(report.describe())
    else:
        for _, sentence in own_weights(checked):
            log.info(sentence)
    models = {checked.model_dataset: parts.model}
    for index in changes:
        before, view = checked.for_period(index - 1), checked.for_period(index)
        if view.model_dataset not in models:
            models[view.model_dataset] = build_parts(view).model
        assert before.chain.labels is not None and view.chain.labels is not None  # checked chains are complete
        transfer, _ = plan_transfer(
            models[before.model_dataset], models[view.model_dataset],
            classes=(before.chain.labels.num_classes, view.chain.labels.num_classes),
            where=f"{plan.source}: period {index + 1} ({view.model_dataset})")
        log.info(f"period {index + 1} ({view.model_dataset}): symbolic Keras model matches its specs; "
                 f"from period {index}'s model: {transfer.describe()}")


def _print_links(links: Any) -> None:
    rows = [("kind", "component", "provided by", "plan key", "output spec")] + [
        (link.resolved.component.kind, link.resolved.component.name,
         f"{link.resolved.provider.distribution} {link.resolved.provider.version}", link.resolved.ref.key,
         describe_output(link.output))
        for link in links
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        log.info("  " + "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)) + f"  {row[4]}")


def _chain_words(view: CheckedPlan) -> str:
    """One period's chain in a line: input, classes, and the output grid of each stride."""
    chain = view.chain
    assert chain.image is not None and chain.labels is not None and chain.decoded is not None
    image = chain.image
    grids = ", ".join(f"{image.height // stride}x{image.width // stride}x{spec.anchors} at stride {stride}"
                      for stride, spec in sorted(chain.decoded.items()))
    return f"{image}, {chain.labels.num_classes} classes ({', '.join(chain.labels.classes)}); outputs {grids}"


def print_plans(plugin_dirs: list[Path]) -> None:
    """``list plans``: the plans --plan finds by name (detplug's, then the plugins'), and the
    templates --data --model takes, each with the first line of its comment."""
    from detplug.core.plan.from_data import TEMPLATES
    from detplug.core.plan.plan_file import PLANS_DIR

    for title, folders in (("plans (--plan NAME)", [PLANS_DIR, *plugin_dirs]),
                           ("templates (train --data PATH --model NAME)", [TEMPLATES])):
        print(title)
        for folder in folders:
            for path in sorted(Path(folder).glob("*.toml")):
                print(f"  {path.stem:<20} {_first_comment(path)}")


def _first_comment(path: Path) -> str:
    """What a plan file's leading comment says, on one line (up to its first sentence)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines).split(". ")[0].rstrip(".")
    return text if len(text) <= 100 else text[:97].rstrip() + "..."
