"""detplug's command line: one subcommand per job, each declaring only its own options.

    detplug train --plan kitti_simple [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR] [--restart]
    detplug check --plan P [--static]
    detplug list [KIND] [--json [FILE]] [--verbose]
    detplug prepare --plan P [--data-root DIR] [--skip-bad] [--verify] [--force]
    detplug evaluate --plan P [--checkpoint latest|best|ep10] [--json FILE]
    detplug predict --plan P IMAGE_OR_FOLDER... [--checkpoint C] [--out DIR]
    detplug export --plan P DIR [--checkpoint C] [--format saved_model|tflite] [--quantize none|float16|int8]
                   [--calibration-images N]
    detplug anchors --plan P [--write]
    detplug show-data --plan P [--out DIR] [--images N] [--period K]
    detplug import-weights --plan P FILE.weights --out OUT.weights.h5
    detplug kitti-eval LABEL_DIR RESULT_DIR [--json FILE]

``python run.py`` is the same program. The older flag forms (``run.py --plan P``
to train, ``--list``, ``--check``, ``--evaluate``, ``--predict``, ``--export``,
``--prepare``, ``--anchors``, ``--show-data``, ``--kitti-eval``) keep working: :func:`parse_args`
reads them with the parser they always had and hands the same handler a
namespace of the subcommand they mean; an option that means nothing for that
job, or two jobs at once, is an error. Everything up to the static check runs
without TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from detplug.core.cli.slicing import add_slicing_options, slicing_options
from detplug.core.errors import DetplugError, PlanError
from detplug.core.plan.settings import STRATEGIES
from detplug.core.train.preemption import Stopped

if TYPE_CHECKING:
    from detplug.core.plan.check import CheckedPlan
    from detplug.registry import Registry

PROG = "detplug"
DEFAULT_TEMPLATE = "small"
#: Training images --show-data draws unless --images says otherwise.
SHOW_IMAGES = 16


# -- options, each declared once -----------------------------------------------------


def _strict_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail if any plugin failed to load (default: report and skip it)")
    parser.add_argument("--verbose-tf", action="store_true",
                        help="show TensorFlow's C++ start-up messages (CUDA probing, oneDNN notices), hidden by "
                             "default; so does setting TF_CPP_MIN_LOG_LEVEL yourself")


def _plan(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Every command that works on a plan takes these, including where its run folder, data
    and cache are: one command line works for each of them by changing the command word."""
    parser.add_argument("--plan", required=required, metavar="NAME_OR_PATH",
                        help="plan name (plans/NAME.toml) or a .toml file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one plan value, e.g. --set model.backbone.width=0.5 (repeatable)")
    _strict_plugins(parser)
    _workdir(parser)
    _data(parser)


def _strategy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="where training runs (plan: [train] strategy): default = one device; mirrored = all "
                             "local GPUs, or DETPLUG_CPU_REPLICAS CPU devices; multi_worker = the TF_CONFIG "
                             "cluster; tpu = TPU_NAME or the local TPU")


def _workdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, help="run folder (default: runs/<plan name>)")


def _data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, help="dataset folder (for KITTI: the folder holding training/)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where converted records and the synthetic sample go (default: $DETPLUG_CACHE "
                             "or ~/.cache/detplug)")


def _skip_bad(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad images, count them and list them in the manifest (default: stop at them)")


def _checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="latest", metavar="NAME",
                        help="latest, best, or a snapshot such as ep10")


def _json_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")


def _missing_as_empty(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--missing-as-empty", action="store_true",
                        help="count a label file without its result file as an image without detections (the "
                             "devkit refuses such a submission)")


def _train_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser, required=False)
    _data_folder(parser)
    _strategy(parser)
    _skip_bad(parser)
    parser.add_argument("--restart", action="store_true",
                        help="start the plan over: move the run folder's checkpoints and logs to replaced-<time>/")


def _data_folder(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, defaults: bool = True) -> None:
    """--data and its options; ``defaults=False`` (the older flag form) leaves --model unset,
    so that _from_legacy can tell it was given."""
    parser.add_argument("--data", type=Path, metavar="PATH",
                        help="train on this dataset without a plan of yours: a YOLO folder or its data.yaml, a COCO "
                             "annotations file or folder, a KITTI root, or a Pascal VOC devkit (or images with their "
                             "XML beside them); writes runs/<name>/plan.toml")
    parser.add_argument("--model", default=DEFAULT_TEMPLATE if defaults else None, metavar="TEMPLATE",
                        help=f"with --data: the template plan giving the model and the periods (default "
                             f"{DEFAULT_TEMPLATE}; `list plans` shows them)")
    parser.add_argument("--epochs", type=int, metavar="N", help="with --data: epochs (over the template's)")
    parser.add_argument("--image-size", type=int, nargs="+", metavar="SIZE",
                        help="with --data: input size, one number (square) or height and width")
    parser.add_argument("--batch", type=int, metavar="B", help="with --data: batch size (over the template's)")
    parser.add_argument("--tile", type=int, metavar="SIZE",
                        help="with --data: cut images larger than SIZE into SIZExSIZE tiles at conversion (split by "
                             "source image); the input is SIZExSIZE unless --image-size says")
    parser.add_argument("--overlap", type=float, metavar="R",
                        help="with --tile: the share of a tile its neighbour also covers (default 0.2)")


def _check_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    _strategy(parser)
    parser.add_argument("--static", action="store_true",
                        help="the spec chain only: no TensorFlow, no model built")


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", metavar="KIND", help="only this kind (backbone, head, ...)")
    parser.add_argument("--json", nargs="?", const=True, metavar="FILE",
                        help="print JSON (or write it to FILE)")
    parser.add_argument("--verbose", action="store_true", help="params, defaults and factory module")
    _strict_plugins(parser)


def _prepare_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    _skip_bad(parser)
    parser.add_argument("--verify", action="store_true", help="re-read every shard against the manifest")
    parser.add_argument("--force", "--force-prepare", dest="force", action="store_true",
                        help="convert again even if the source is unchanged")


def _evaluate_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    _checkpoint(parser)
    _json_file(parser)
    _results(parser)
    _coco_gt(parser)


def _results(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--results", type=Path, metavar="FILE",
                        help="score this COCO results file against --coco-gt with the plan's evaluator, no model")


def _predict_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    _checkpoint(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--out", type=Path, help="output folder (default: <run folder>/predictions)")
    parser.add_argument("--format", dest="predict_format", choices=PREDICT_FORMATS, default="kitti",
                        help=PREDICT_FORMAT_HELP)
    _coco_gt(parser)
    add_slicing_options(parser)  # --tile SIZE [--overlap R] [--full-image-pass]: core/cli/slicing.py


#: --predict's formats: drawn PNGs + KITTI result files, or one COCO results file.
PREDICT_FORMATS = ("kitti", "coco")
PREDICT_FORMAT_HELP = ("with --predict: kitti (drawn PNGs and KITTI result files, the default) or coco (one COCO "
                       "results file, predictions.json, at the evaluation score threshold)")


def _coco_gt(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--coco-gt", type=Path, metavar="FILE",
                        help="a COCO instances file: --predict --format coco takes its image and category ids; "
                             "--evaluate --results scores against it")


def _export_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    _checkpoint(parser)
    parser.add_argument("directory", type=Path, metavar="DIR", help="where the SavedModel or model.tflite goes")
    _export_format(parser, default="saved_model")


#: --export's formats and --format tflite's quantizations (core/model/tflite_export.py).
EXPORT_FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")


def _export_format(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: str | None,
                   predict_formats: tuple[str, ...] = ()) -> None:
    parser.add_argument("--format", choices=EXPORT_FORMATS + predict_formats, default=default,
                        help="with --export: saved_model (the default; uint8 images of any size) or tflite "
                             "(DIR/model.tflite, builtin ops only: one uint8 image at the plan's input size)"
                             + (f"; {PREDICT_FORMAT_HELP}" if predict_formats else ""))
    parser.add_argument("--quantize", choices=QUANTIZATIONS,
                        help="with --format tflite: none (float32, the default), float16 weights, or int8 "
                             "(calibrated on the plan's training records)")
    parser.add_argument("--calibration-images", type=int, metavar="N",
                        help="with --quantize int8: how many training images to calibrate on (default 100)")


def _anchors_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    parser.add_argument("--write", action="store_true", help="write the new anchors into the plan file")


def _show_data_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    _show_data(parser)


def _show_data(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, out: bool = True,
               defaults: bool = True) -> None:
    """--show-data's options; ``defaults=False`` as for :func:`_data_folder`."""
    if out:
        parser.add_argument("--out", type=Path, help="output folder (default: <run folder>/show-data)")
    parser.add_argument("--images", dest="show_images", type=int, default=SHOW_IMAGES if defaults else None,
                        metavar="N", help=f"how many training images to draw (default {SHOW_IMAGES})")
    parser.add_argument("--period", type=int, default=1 if defaults else None, metavar="K",
                        help="draw the batches of period K (1-based; default 1)")


def _import_weights_options(parser: argparse.ArgumentParser) -> None:
    _plan(parser)
    parser.add_argument("weights", type=Path, metavar="FILE.weights", help="a Darknet .weights file")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT.weights.h5",
                        help="where the Keras weights of the plan's model go")


def _kitti_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("label_dir", type=Path, metavar="LABEL_DIR")
    parser.add_argument("result_dir", type=Path, metavar="RESULT_DIR")
    _json_file(parser)
    _missing_as_empty(parser)


# -- what each command does ----------------------------------------------------------


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
    if getattr(args, "data", None) is not None:
        args.plan = str(_plan_for_data(args))
    elif not args.plan:
        raise DetplugError("give --plan NAME (a plan file) or --data PATH (a dataset folder) to train")
    checked = _checked(args, registry)
    plan, workdir = checked.plan, _run_folder(args, checked)
    periods = len(plan.periods)
    strategy = plan.train.run.strategy
    print(f"training plan '{plan.name}': {periods} period{'s' if periods != 1 else ''}, {plan.total_epochs} epochs, "
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
        print(f"--data {args.data}: input size {size[0]}x{size[1]} (height x width): {why}")
    hint = None if tile else tile_hint(size, typical_long_side(layout))
    if hint:
        print(f"--data {args.data}: {hint}")
    plan = data_plan(layout, model=args.model, name=name, epochs=args.epochs, image_size=size, batch=args.batch,
                     tile=tile)
    folder = args.workdir or Path("runs") / name
    for override in args.set:  # the written plan holds them, so that --plan plan.toml alone runs it again
        apply_override(plan, override, folder / PLAN_FILE)
    command = " ".join(["python run.py", *sys.argv[1:]])
    path = write_data_plan(plan, folder, command=command)
    print(f"--data {args.data}: {layout.description}; template '{args.model}'; the plan is {path}")
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
        print(describe(key, item, verified=args.verify))


def evaluate(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    registry = _registry(args)
    checked = _checked(args, registry)
    use.evaluate(checked, registry, workdir=_run_folder(args, checked), checkpoint=args.checkpoint,
                 json_path=args.json, data_root=_data_root(args), cache_dir=args.cache_dir, results=args.results,
                 coco_gt=args.coco_gt)


def predict(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    checked = _checked(args, _registry(args))
    workdir = _run_folder(args, checked)
    use.predict(checked, workdir=workdir, checkpoint=args.checkpoint, images=args.images,
                out_dir=args.out or workdir / "predictions", format=args.predict_format, coco_gt=args.coco_gt,
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
    use.show_data(checked, period=args.period, images=args.show_images,
                  out_dir=args.out or _run_folder(args, checked) / "show-data", data_root=_data_root(args),
                  cache_dir=args.cache_dir)


def import_weights(args: argparse.Namespace) -> None:
    from detplug.core.cli import use

    use.import_weights(_checked(args, _registry(args)), weights=args.weights, out=args.out)


def kitti_eval(args: argparse.Namespace) -> None:
    from detplug.core.cli.kitti_eval import run_kitti_eval

    run_kitti_eval(args.label_dir, args.result_dir, json_path=args.json, missing_as_empty=args.missing_as_empty)


Handler = Callable[[argparse.Namespace], None]
#: name: (one line of help, its options, what it does)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "train": ("train a plan; run it again to resume", _train_options, train),
    "check": ("check that the plan's parts fit (spec chain, then the symbolic Keras model)", _check_options, check),
    "list": ("list the registered components and where they come from", _list_options, list_components),
    "prepare": ("convert and validate the plan's datasets into TFRecords + manifest.json", _prepare_options,
                prepare),
    "evaluate": ("evaluate a checkpoint on the validation split", _evaluate_options, evaluate),
    "predict": ("draw the detections on images and write KITTI-format result files", _predict_options, predict),
    "export": ("write a SavedModel (or with --format tflite a .tflite) serving uint8 images", _export_options,
               export),
    "anchors": ("fit anchors to the plan's data by k-means (IoU distance) and compare them", _anchors_options,
                anchors),
    "show-data": ("draw training batches as the trainer sees them (boxes, their anchors and strides, ignore "
                  "regions) and labels.png; no training", _show_data_options, show_data),
    "import-weights": ("read a Darknet .weights file into the plan's model and write its .weights.h5",
                       _import_weights_options, import_weights),
    "kitti-eval": ("evaluate KITTI result files against KITTI label files, like the devkit; no plan needed",
                   _kitti_eval_options, kitti_eval),
}


def command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train YOLOv3-style detectors from a plan of pluggable components.",
        epilog="The older forms `run.py --plan P [--check|--evaluate|...]` and `run.py --list` still work.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, add_options, handler) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        add_options(sub)
        sub.set_defaults(handlers=[handler])
    return parser


# -- the older flag forms --------------------------------------------------------------


def legacy_parser() -> argparse.ArgumentParser:
    """``run.py``'s flags as they were before subcommands; :func:`_from_legacy` maps them."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train YOLOv3-style detectors from a plan of pluggable components "
                               f"(also as subcommands: {', '.join(COMMANDS)}; see `{PROG} COMMAND --help`)."
    )
    parser.add_argument("--list", nargs="?", const="", metavar="KIND",
                        help="list the registered components (of one kind if given) and exit")
    parser.add_argument("--json", nargs="?", const=True, metavar="FILE",
                        help="with --list: print JSON (or write it to FILE); with --evaluate or --kitti-eval: "
                             "write the results as JSON to FILE")
    parser.add_argument("--verbose", action="store_true", help="with --list: params, defaults and factory module")
    _strict_plugins(parser)
    parser.add_argument("--plan", metavar="NAME_OR_PATH", help="plan name (plans/NAME.toml) or a .toml file")
    _data_folder(parser.add_argument_group("training a dataset folder without a plan"), defaults=False)
    parser.add_argument("--check", action="store_true",
                        help="check that the plan's parts fit (spec chain, then the symbolic Keras model) and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one plan value, e.g. --set model.backbone.width=0.5 (repeatable)")
    _workdir(parser)
    _strategy(parser)
    parser.add_argument("--restart", action="store_true",
                        help="start the plan over: move the run folder's checkpoints and logs to replaced-<time>/")
    _data(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--prepare", action="store_true",
                      help="convert and validate every dataset the plan names into TFRecords + manifest.json, and exit")
    data.add_argument("--skip-bad", action="store_true",
                      help="with --prepare (or training): skip bad images, count them and list them in the manifest")
    data.add_argument("--verify", action="store_true", help="with --prepare: re-read every shard against the manifest")
    data.add_argument("--force-prepare", action="store_true", help="with --prepare: convert again even if unchanged")
    use = parser.add_argument_group("using a trained plan")
    use.add_argument("--evaluate", action="store_true", help="evaluate a checkpoint on the validation split")
    use.add_argument("--predict", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                     help="draw the detections on these images and write KITTI-format result files")
    use.add_argument("--out", type=Path, help="with --predict or --show-data: output folder (default: in the run "
                                              "folder)")
    use.add_argument("--export", type=Path, metavar="DIR", help="write a SavedModel serving uint8 images")
    _export_format(use, default=None, predict_formats=PREDICT_FORMATS)
    _results(use)
    _coco_gt(use)
    use.add_argument("--checkpoint", metavar="NAME",
                     help="with --evaluate/--predict/--export: latest, best, or a snapshot such as ep10")
    use.add_argument("--anchors", action="store_true",
                     help="compute anchors for the plan's dataset by k-means (IoU distance) and compare them")
    use.add_argument("--write", action="store_true", help="with --anchors: write the new anchors into the plan file")
    use.add_argument("--show-data", action="store_true",
                     help="draw training batches as the trainer sees them, and labels.png (with --out, --images N, "
                          "--period K)")
    _show_data(use, out=False, defaults=False)
    use.add_argument("--import-weights", type=Path, metavar="FILE.weights",
                     help="read a Darknet .weights file into the plan's model; --out names the .weights.h5 to write")
    use.add_argument("--kitti-eval", nargs=2, type=Path, metavar=("LABEL_DIR", "RESULT_DIR"),
                     help="evaluate KITTI result files against KITTI label files, like the devkit; no plan needed")
    _missing_as_empty(parser)
    return parser


#: The flag that picks each job in the older form (training: none).
_JOB_FLAGS = {"list": "--list", "kitti_eval": "--kitti-eval", "check": "--check", "prepare": "--prepare",
              "anchors": "--anchors", "evaluate": "--evaluate", "predict": "--predict", "export": "--export",
    "show_data": "--show-data", "import_weights": "--import-weights"}
_PLAN_JOBS = ("check", "prepare", "anchors", "evaluate", "predict", "export", "show_data", "import_weights", "train")
#: The options of the older form, by the jobs that take them.
_OPTION_JOBS = {
    "json": ("list", "kitti_eval", "evaluate"), "verbose": ("list",), "missing_as_empty": ("kitti_eval",),
    "set": _PLAN_JOBS,
    "strategy": ("check", "train"), "restart": ("train",),
    "workdir": _PLAN_JOBS, "data_root": _PLAN_JOBS, "cache_dir": _PLAN_JOBS,
    "skip_bad": ("prepare", "train"), "verify": ("prepare",), "force_prepare": ("prepare",),
    "data": ("train",), "epochs": ("train",), "image_size": ("train",), "batch": ("train",),
    "tile": ("train",), "overlap": ("train",),
    "out": ("predict", "show_data", "import_weights"), "checkpoint": ("evaluate", "predict", "export"),
    "write": ("anchors",), "format": ("export", "predict"),
    "results": ("evaluate",), "coco_gt": ("evaluate", "predict"), "quantize": ("export",),
    "calibration_images": ("export",), "show_images": ("show_data",), "period": ("show_data",),
    "model": ("train",),
}
#: Flags whose name is not their destination's.
_FLAGS = {"show_images": "--images"}
#: --evaluate, --predict and --export together run one after the other, as they always did.
_USE_JOBS = ("evaluate", "predict", "export")


def _flag(dest: str) -> str:
    return _FLAGS.get(dest, "--" + dest.replace("_", "-"))


def _given(value: object) -> bool:
    """Was an option of the older form given? Unset options are None, False or [] (0 is a value)."""
    return value is not None and value is not False and value != []


def _from_legacy(parser: argparse.ArgumentParser, old: argparse.Namespace) -> argparse.Namespace:
    jobs = [job for job in _JOB_FLAGS if getattr(old, job) not in (None, False)]
    if len(jobs) > 1 and not set(jobs) <= set(_USE_JOBS):
        parser.error(f"{' and '.join(_JOB_FLAGS[job] for job in jobs)} cannot be combined; give one of them "
                     f"(or use the subcommands: {PROG} {jobs[0].replace('_', '-')} ...)")
    jobs = jobs or ["train"]
    if jobs[0] not in ("list", "kitti_eval") and not old.plan and not (jobs == ["train"] and old.data):
        parser.error("give --plan NAME (to train or --check), --data PATH (to train a dataset folder), --list or "
                     "--kitti-eval")
    if jobs[0] in ("list", "kitti_eval") and old.plan:
        parser.error(f"{_JOB_FLAGS[jobs[0]]} takes no --plan")
    for dest, takers in _OPTION_JOBS.items():
        if _given(getattr(old, dest)) and not set(jobs) & set(takers):
            doing = " ".join(_JOB_FLAGS.get(job, "training") for job in jobs)
            parser.error(f"{_flag(dest)} means nothing with {doing}; it goes with "
                         f"{', '.join(_JOB_FLAGS.get(job, 'training') for job in takers)}")
    args = argparse.Namespace(
        command=jobs[0].replace("_", "-"), handlers=[COMMANDS[job.replace("_", "-")][2] for job in jobs],
        plan=old.plan, set=old.set, strict_plugins=old.strict_plugins, strategy=old.strategy, restart=old.restart,
        workdir=old.workdir, data_root=old.data_root, cache_dir=old.cache_dir, skip_bad=old.skip_bad,
        verify=old.verify, force=old.force_prepare, static=False, checkpoint=old.checkpoint or "latest",
        kind=old.list or None, verbose=old.verbose, images=old.predict, out=old.out, directory=old.export,
        write=old.write, json=old.json, weights=old.import_weights, verbose_tf=old.verbose_tf,
        show_images=SHOW_IMAGES if old.show_images is None else old.show_images,
        period=1 if old.period is None else old.period, data=old.data, model=old.model or DEFAULT_TEMPLATE,
        epochs=old.epochs,
        image_size=old.image_size, batch=old.batch, tile=old.tile, overlap=old.overlap,
        format=old.format if old.format in EXPORT_FORMATS else "saved_model", quantize=old.quantize,
        calibration_images=old.calibration_images, results=old.results, coco_gt=old.coco_gt,
        predict_format=old.format if old.format in PREDICT_FORMATS else "kitti",
        full_image_pass=False,  # predict --full-image-pass has no older flag form
    )
    for formats, job in ((EXPORT_FORMATS, "export"), (PREDICT_FORMATS, "predict")):
        if old.format in formats and job not in jobs:
            parser.error(f"--format {old.format} goes with {_JOB_FLAGS[job]}")
    if jobs[0] == "import_weights" and old.out is None:
        parser.error("--import-weights needs --out OUT.weights.h5, the file to write")
    if old.kitti_eval:
        args.label_dir, args.result_dir = old.kitti_eval
        args.missing_as_empty = old.missing_as_empty
    if jobs[0] != "list" and args.json is True:
        parser.error(f"{_JOB_FLAGS[jobs[0]]} --json needs a FILE to write")
    if jobs[0] != "list" and isinstance(args.json, str):
        args.json = Path(args.json)
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """A subcommand's namespace, from ``detplug COMMAND ...`` or from the older flag form."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return command_parser().parse_args(argv)
    if not argv:
        command_parser().print_help(sys.stderr)
        raise SystemExit(2)
    parser = legacy_parser()
    return _from_legacy(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for handler in args.handlers:
            handler(args)
        return 0
    except Stopped as stop:  # SIGTERM or SIGINT, after the checkpoint: 143 or 130
        print(stop, file=sys.stderr)
        return stop.exit_code
    except DetplugError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `run.py --list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: the latest checkpoint is kept; run the same command again to resume",
              file=sys.stderr)
        return 130
