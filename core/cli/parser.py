"""The one command-line parser: a sub-parser per subcommand, each declaring only its own arguments.

Each subcommand's arguments are a tuple in :data:`SUBCOMMANDS`; adding an option to a
subcommand is one more ``arg(...)`` in its tuple. The older flag form (core/cli/older_form.py)
reads the same tuples to know which options each job takes, so it needs no table of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from detplug.core.data.tiles import DEFAULT_OVERLAP
from detplug.core.plan.settings import STRATEGIES

PROG = "detplug"
DEFAULT_TEMPLATE = "small"
#: Training images show-data draws unless --images says otherwise.
SHOW_IMAGES = 16
#: predict's formats: drawn PNGs + KITTI result files, or one COCO results file.
PREDICT_FORMATS = ("kitti", "coco")
#: export's formats and --format tflite's quantizations (core/model/tflite_export.py).
EXPORT_FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")


@frozen
class Argument:
    """One ``add_argument`` call: its names (flags, or a positional's name) and its settings."""

    names: tuple[str, ...]
    settings: Mapping[str, Any]

    def takes(self, flag: str, values: list[str]) -> bool:
        """Is this the option ``flag``, and are ``values`` among its choices (if it has any)?"""
        choices = self.settings.get("choices")
        return flag in self.names and (choices is None or all(value in choices for value in values))


def arg(*names: str, **settings: Any) -> Argument:
    return Argument(names, settings)


@frozen
class Subcommand:
    """One mode of the program: its line of help and every argument its sub-parser takes."""

    summary: str
    arguments: tuple[Argument, ...]

    def takes(self, flag: str, values: list[str] | None = None) -> bool:
        """Does this subcommand have the option ``flag`` (with ``values`` among its choices)?"""
        return any(argument.takes(flag, values or []) for argument in self.arguments)


# -- arguments that several subcommands share -----------------------------------------

PLUGINS = (
    arg("--strict-plugins", action="store_true",
        help="fail if any plugin failed to load (default: report and skip it)"),
    arg("--verbose-tf", action="store_true",
        help="show TensorFlow's C++ start-up messages (CUDA probing, oneDNN notices), hidden by default; so "
             "does setting TF_CPP_MIN_LOG_LEVEL yourself"),
)


#: How much detplug says (core/console.py): every subcommand takes them. ``list`` has a
#: --verbose of its own, which also shows the params, defaults and factory of each component.
QUIET = arg("--quiet", action="store_true", help="say only warnings and errors")
VERBOSE = arg("--verbose", action="store_true",
              help="say debug messages too (and, under multi_worker, let every worker say what the chief says)")
SPEAKING = (QUIET, VERBOSE)


def on_a_plan(*, required: bool = True) -> tuple[Argument, ...]:
    """Every command that works on a plan takes these, including where its run folder, data
    and cache are: one command line works for each of them by changing the command word."""
    return (
        arg("--plan", required=required, metavar="NAME_OR_PATH", help="plan name (plans/NAME.toml) or a .toml file"),
        arg("--set", action="append", default=[], metavar="KEY=VALUE",
            help="override one plan value, e.g. --set model.backbone.width=0.5 (repeatable)"),
        *PLUGINS, *SPEAKING,
        arg("--workdir", type=Path, help="run folder (default: runs/<plan name>)"),
        arg("--data-root", type=Path, help="dataset folder (for KITTI: the folder holding training/)"),
        arg("--cache-dir", type=Path, help="where converted records and the synthetic sample go (default: "
                                           "$DETPLUG_CACHE or ~/.cache/detplug)"),
    )


ON_A_PLAN = on_a_plan()
STRATEGY = arg("--strategy", choices=STRATEGIES,
               help="where training runs (plan: [train] strategy): default = one device; mirrored = all local "
                    "GPUs, or DETPLUG_CPU_REPLICAS CPU devices; multi_worker = the TF_CONFIG cluster; tpu = "
                    "TPU_NAME or the local TPU")
SKIP_BAD = arg("--skip-bad", action="store_true",
               help="skip bad images, count them and list them in the manifest (default: stop at them)")
CHECKPOINT = arg("--checkpoint", default="latest", metavar="NAME", help="latest, best, or a snapshot such as ep10")
JSON_FILE = arg("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
COCO_GT = arg("--coco-gt", type=Path, metavar="FILE",
              help="a COCO instances file: predict --format coco takes its image and category ids; evaluate "
                   "--results scores against it")

#: train --data: a dataset folder trained without a plan of the user's.
DATA_FOLDER = (
    arg("--data", type=Path, metavar="PATH",
        help="train on this dataset without a plan of yours: a YOLO folder or its data.yaml, a COCO annotations "
             "file or folder, a KITTI root, or a Pascal VOC devkit (or images with their XML beside them); writes "
             "runs/<name>/plan.toml"),
    arg("--model", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
        help=f"with --data: the template plan giving the model and the periods (default {DEFAULT_TEMPLATE}; "
             f"`list plans` shows them)"),
    arg("--epochs", type=int, metavar="N", help="with --data: epochs (over the template's)"),
    arg("--image-size", type=int, nargs="+", metavar="SIZE",
        help="with --data: input size, one number (square) or height and width"),
    arg("--batch", type=int, metavar="B", help="with --data: batch size (over the template's)"),
    arg("--tile", type=int, metavar="SIZE",
        help="with --data: cut images larger than SIZE into SIZExSIZE tiles at conversion (split by source "
             "image); the input is SIZExSIZE unless --image-size says"),
    arg("--overlap", type=float, metavar="R",
        help=f"with --tile: the share of a tile its neighbour also covers (default {DEFAULT_OVERLAP})"),
)

#: predict --tile: large images cut as in training, the tiles' boxes merged over the image.
SLICING = (
    arg("--tile", type=int, metavar="SIZE",
        help="predict large images in SIZE px tiles, cut as in training, merged by class-wise NMS (default: the "
             "plan's dataset tile; 0: whole images)"),
    arg("--overlap", type=float, metavar="R",
        help=f"with --tile: the share of a tile that neighbours overlap (default: the dataset's, else "
             f"{DEFAULT_OVERLAP})"),
    arg("--full-image-pass", action="store_true",
        help="with --tile: also look at the whole image shrunk to the input, for objects larger than a tile"),
)

# -- the subcommands ------------------------------------------------------------------

SUBCOMMANDS: dict[str, Subcommand] = {
    "train": Subcommand("train a plan; run it again to resume", (
        *on_a_plan(required=False), *DATA_FOLDER, STRATEGY, SKIP_BAD,
        arg("--restart", action="store_true",
            help="start the plan over: move the run folder's checkpoints and logs to replaced-<time>/"),
    )),
    "check": Subcommand("check that the plan's parts fit (spec chain, then the symbolic Keras model)", (
        *ON_A_PLAN, STRATEGY,
        arg("--static", action="store_true", help="the spec chain only: no TensorFlow, no model built"),
    )),
    "list": Subcommand("list the registered components and where they come from", (
        arg("kind", nargs="?", metavar="KIND", help="only this kind (backbone, head, ...), or plans"),
        arg("--json", nargs="?", const=True, metavar="FILE", help="print JSON (or write it to FILE)"),
        QUIET, arg("--verbose", action="store_true", help="params, defaults and factory module; debug messages too"),
        *PLUGINS,
    )),
    "prepare": Subcommand("convert and validate the plan's datasets into TFRecords + manifest.json", (
        *ON_A_PLAN, SKIP_BAD,
        arg("--verify", action="store_true", help="re-read every shard against the manifest"),
        arg("--force", "--force-prepare", dest="force", action="store_true",
            help="convert again even if the source is unchanged"),
    )),
    "evaluate": Subcommand("evaluate a checkpoint on the validation split", (
        *ON_A_PLAN, CHECKPOINT, JSON_FILE,
        arg("--results", type=Path, metavar="FILE",
            help="score this COCO results file against --coco-gt with the plan's evaluator, no model"),
        COCO_GT,
    )),
    "predict": Subcommand("draw the detections on images and write KITTI-format result files", (
        *ON_A_PLAN, CHECKPOINT,
        arg("images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER"),
        arg("--out", type=Path, help="output folder (default: <run folder>/predictions)"),
        arg("--format", choices=PREDICT_FORMATS, default="kitti",
            help="kitti (drawn PNGs and KITTI result files, the default) or coco (one COCO results file, "
                 "predictions.json, at the evaluation score threshold)"),
        COCO_GT, *SLICING,
    )),
    "export": Subcommand("write a SavedModel (or with --format tflite a .tflite) serving uint8 images", (
        *ON_A_PLAN, CHECKPOINT,
        arg("directory", type=Path, metavar="DIR", help="where the SavedModel or model.tflite goes"),
        arg("--format", choices=EXPORT_FORMATS, default="saved_model",
            help="saved_model (the default; uint8 images of any size) or tflite (DIR/model.tflite, builtin ops "
                 "only: one uint8 image at the plan's input size)"),
        arg("--quantize", choices=QUANTIZATIONS,
            help="with --format tflite: none (float32, the default), float16 weights, or int8 (calibrated on "
                 "the plan's training records)"),
        arg("--calibration-images", type=int, metavar="N",
            help="with --quantize int8: how many training images to calibrate on (default 100)"),
    )),
    "anchors": Subcommand("fit anchors to the plan's data by k-means (IoU distance) and compare them", (
        *ON_A_PLAN,
        arg("--write", action="store_true", help="write the new anchors into the plan file"),
    )),
    "show-data": Subcommand("draw training batches as the trainer sees them (boxes, their anchors and strides, "
                            "ignore regions) and labels.png; no training", (
        *ON_A_PLAN,
        arg("--out", type=Path, help="output folder (default: <run folder>/show-data)"),
        arg("--images", type=int, default=SHOW_IMAGES, metavar="N",
            help=f"how many training images to draw (default {SHOW_IMAGES})"),
        arg("--period", type=int, default=1, metavar="K", help="draw the batches of period K (1-based; default 1)"),
    )),
    "import-weights": Subcommand("read a Darknet .weights file into the plan's model and write its .weights.h5", (
        *ON_A_PLAN,
        arg("weights", type=Path, metavar="FILE.weights", help="a Darknet .weights file"),
        arg("--out", type=Path, required=True, metavar="OUT.weights.h5",
            help="where the Keras weights of the plan's model go"),
    )),
    "kitti-eval": Subcommand("evaluate KITTI result files against KITTI label files, like the devkit; no plan "
                             "needed", (
        arg("label_dir", type=Path, metavar="LABEL_DIR"),
        arg("result_dir", type=Path, metavar="RESULT_DIR"),
        JSON_FILE,
        arg("--missing-as-empty", action="store_true",
            help="count a label file without its result file as an image without detections (the devkit "
                 "refuses such a submission)"),
        *SPEAKING,
    )),
}


def command_parser() -> argparse.ArgumentParser:
    """``detplug COMMAND ...``; the namespace's ``command`` names the subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train YOLOv3-style detectors from a plan of pluggable components.",
        epilog="The older flag forms still work and mean a subcommand: `run.py --plan P` trains, "
               "`run.py --plan P --check` (or --evaluate, --predict ..., --export DIR, ...) is "
               "`run.py check --plan P`, `run.py --list` is `run.py list`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.summary, description=subcommand.summary)
        for argument in subcommand.arguments:
            sub.add_argument(*argument.names, **argument.settings)
    return parser
