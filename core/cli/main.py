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

from detplug.core.cli.commands import (
    anchors,
    check,
    evaluate,
    export,
    import_weights,
    kitti_eval,
    list_components,
    predict,
    prepare,
    show_data,
    train,
)
from detplug.core.cli.parser import (
    DEFAULT_TEMPLATE,
    EXPORT_FORMATS,
    PREDICT_FORMATS,
    QUANTIZATIONS,
    SHOW_IMAGES,
    _anchors_options,
    _check_options,
    _coco_gt,
    _data,
    _data_folder,
    _evaluate_options,
    _export_format,
    _export_options,
    _import_weights_options,
    _kitti_eval_options,
    _list_options,
    _missing_as_empty,
    _predict_options,
    _prepare_options,
    _results,
    _show_data,
    _show_data_options,
    _strategy,
    _strict_plugins,
    _train_options,
    _workdir,
)
from detplug.core.errors import DetplugError
from detplug.core.train.preemption import Stopped

__all__ = ["QUANTIZATIONS", "main", "parse_args"]

PROG = "detplug"

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
        image_size=old.image_size, batch=old.batch,
        format=old.format if old.format in EXPORT_FORMATS else "saved_model", quantize=old.quantize,
        calibration_images=old.calibration_images, results=old.results, coco_gt=old.coco_gt,
        predict_format=old.format if old.format in PREDICT_FORMATS else "kitti",
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
