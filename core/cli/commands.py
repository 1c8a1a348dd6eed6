"""What each subcommand does: one function per subcommand (:data:`HANDLERS`), taking the
namespace core/cli/parser.py's sub-parser gives. Each imports what it needs when it runs:
``list``, ``kitti-eval`` and ``check --static`` never import TensorFlow."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from detplug.core.errors import DetplugError, PlanError

if TYPE_CHECKING:
    from detplug.core.plan.check import CheckedPlan
    from detplug.registry import Registry

log = logging.getLogger(__name__)


def _registry(args: argparse.Namespace) -> Registry:
    from detplug.registry import Registry

    registry = Registry.discover()
    if getattr(args, "strict_plugins", False):
        registry.raise_for_load_errors()
    return registry


def _checked(args: argparse.Namespace, registry: Registry) -> CheckedPlan:
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components

    plan_dirs = [Path(d) for dirs in registry.hook.detplug_plan_dirs() for d in dirs]
    strategy = getattr(args, "strategy", None)
    overrides = [*args.set, *([f"train.strategy={strategy}"] if strategy else [])]
    try:
        path = find_plan(args.plan, plan_dirs)
    except PlanError as error:
        # A plan shipped by a plugin that failed to load is not found: say which failed and why.
        raise PlanError(f"{error}{registry.load_error_notes(f'plan {args.plan!r}')}") from None
    plan = load_plan(path, overrides=overrides)
    checked = static_check(plan, resolve_components(plan, registry))
    if not getattr(args, "static", False):  # the plan's parts fit: now TensorFlow is worth starting
        from detplug.core.cli.tensorflow_start import start_tensorflow

        start_tensorflow(verbose=getattr(args, "verbose_tf", False))
    return checked


def _data_root(args: argparse.Namespace) -> Path | None:
    if args.data_root is not None and not args.data_root.is_dir():
        raise DetplugError(f"--data-root {args.data_root} is not a folder; give the folder that holds the dataset")
    return args.data_root


def _run_folder(args: argparse.Namespace, checked: CheckedPlan) -> Path:
    return args.workdir or Path("runs") / checked.plan.name


def train(args: argparse.Namespace) -> None:
    from detplug.core.cli.tensorflow_start import where_steps_run
    from detplug.core.train.training import train_plan

    registry = _registry(args)
    if args.data is not None:
        args.plan = str(_plan_for_data(args))
    elif not args.plan:
        raise DetplugError("give --plan NAME (a plan file) or --data PATH (a dataset folder) to train")
    checked = _checked(args, registry)
    plan, workdir = checked.plan, _run_folder(args, checked)
    periods = len(plan.periods)
    strategy = plan.train.run.strategy
    log.info(f"training plan '{plan.name}': {periods} period{'s' if periods != 1 else ''}, {plan.total_epochs} epochs, "
             f"on {where_steps_run()}" + (f" (strategy '{strategy}')" if strategy != "default" else "")
             + f", into {workdir}")
    train_plan(checked, registry=registry, workdir=workdir, data_root=_data_root(args),
               cache_dir=args.cache_dir, restart=args.restart, skip_bad=args.skip_bad)


def _plan_for_data(args: argparse.Namespace) -> Path:
    """``train --data PATH``: the plan the template and the data give, written into the run
    folder as plan.toml (core/plan/from_data.py); its path."""
    from detplug.core.data.layouts import detect_layout, typical_aspect, typical_long_side
    from detplug.core.plan.from_data import (
        PLAN_FILE,
        data_image_size,
        data_plan,
        image_size_of,
        plan_name,
        tile_hint,
        tile_image_size,
        tile_table,
        write_data_plan,
    )
    from detplug.core.plan.plan_file import apply_override

    if args.plan:
        raise DetplugError(f"--data {args.data} and --plan {args.plan} name two plans; give --data alone (its plan "
                           f"comes from --model TEMPLATE), or --plan alone")
    for flag, value in (("--epochs", args.epochs), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise DetplugError(f"{flag} {value}: give a whole number >= 1")
    tile = tile_table(args.tile, args.overlap)
    layout = detect_layout(args.data)
    name = plan_name(args.data, args.model)
    size = image_size_of(args.image_size)
    if size is None:
        size, why = tile_image_size(tile["size"]) if tile else data_image_size(args.model, typical_aspect(layout))
        log.info(f"--data {args.data}: input size {size[0]}x{size[1]} (height x width): {why}")
    hint = None if tile else tile_hint(size, typical_long_side(layout))
    if hint:
        log.info(f"--data {args.data}: {hint}")
    plan = data_plan(layout, model=args.model, name=name, epochs=args.epochs, image_size=size, batch=args.batch,
                     tile=tile)
    folder = args.workdir or Path("runs") / name
    for override in args.set:  # the written plan holds them, so that --plan plan.toml alone runs it again
        apply_override(plan, override, folder / PLAN_FILE)
    command = " ".join(["python run.py", *sys.argv[1:]])
    path = write_data_plan(plan, folder, command=command)
    log.info(f"--data {args.data}: {layout.description}; template '{args.model}'; the plan is {path}")
    return path


def check(args: argparse.Namespace) -> None:
    from detplug.core.cli.listing import print_check

    print_check(_checked(args, _registry(args)), symbolic=not args.static)


def list_components(args: argparse.Namespace) -> None:
    from detplug.core.cli.listing import print_listing, print_plans

    if args.kind == "plans":
        registry = _registry(args)
        print_plans([Path(d) for dirs in registry.hook.detplug_plan_dirs() for d in dirs])
        return
    print_listing(_registry(args), kind=args.kind or None, as_json=bool(args.json), verbose=args.verbose,
                  json_path=Path(args.json) if isinstance(args.json, str) else None)


def prepare(args: argparse.Namespace) -> None:
    from detplug.core.data.datasets import describe, prepare_datasets
    from detplug.core.train.training import default_cache_dir

    checked = _checked(args, _registry(args))
    prepared = prepare_datasets(checked, data_root=_data_root(args), cache_dir=args.cache_dir or default_cache_dir(),
                                skip_bad=args.skip_bad, verify=args.verify, force=args.force)
    for key, item in prepared.items():
        log.info(describe(key, item, verified=args.verify))


def evaluate(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    registry = _registry(args)
    checked = _checked(args, registry)
    use.evaluate(checked, registry, workdir=_run_folder(args, checked), checkpoint=args.checkpoint,
                 json_path=args.json, data_root=_data_root(args), cache_dir=args.cache_dir, results=args.results,
                 coco_gt=args.coco_gt)


def predict(args: argparse.Namespace) -> None:
    from detplug.core.cli import use
    from detplug.core.cli.slicing import slicing_options

    checked = _checked(args, _registry(args))
    workdir = _run_folder(args, checked)
    use.predict(checked, workdir=workdir, checkpoint=args.checkpoint, images=args.images,
                out_dir=args.out or workdir / "predictions", format=args.format, coco_gt=args.coco_gt,
                **slicing_options(args))


def export(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    checked = _checked(args, _registry(args))
    use.export(checked, workdir=_run_folder(args, checked), checkpoint=args.checkpoint, directory=args.directory,
               format=args.format, quantize=args.quantize, calibration_images=args.calibration_images,
               data_root=_data_root(args), cache_dir=args.cache_dir)


def anchors(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    use.anchors(_checked(args, _registry(args)), write=args.write, data_root=_data_root(args),
                cache_dir=args.cache_dir)


def show_data(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    checked = _checked(args, _registry(args))
    use.show_data(checked, period=args.period, images=args.images,
                  out_dir=args.out or _run_folder(args, checked) / "show-data", data_root=_data_root(args),
                  cache_dir=args.cache_dir)


def import_weights(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    use.import_weights(_checked(args, _registry(args)), weights=args.weights, out=args.out)


def kitti_eval(args: argparse.Namespace) -> None:
    from detplug.core.cli.kitti_eval import run_kitti_eval

    run_kitti_eval(args.label_dir, args.result_dir, json_path=args.json, missing_as_empty=args.missing_as_empty)



Handler = Callable[[argparse.Namespace], None]
#: The function of each subcommand of core/cli/parser.py's SUBCOMMANDS.
HANDLERS: dict[str, Handler] = {
    "train": train, "check": check, "list": list_components, "prepare": prepare, "evaluate": evaluate,
    "predict": predict, "export": export, "anchors": anchors, "show-data": show_data,
    "import-weights": import_weights, "kitti-eval": kitti_eval,
}
