"""The subcommand parsers' options, each declared once and added to the commands that take it."""

from __future__ import annotations

import argparse
from pathlib import Path

from detplug.core.plan.settings import STRATEGIES

DEFAULT_TEMPLATE = "small"
#: Training images --show-data draws unless --images says otherwise.
SHOW_IMAGES = 16


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
                             "annotations file or folder, or a KITTI root; writes runs/<name>/plan.toml")
    parser.add_argument("--model", default=DEFAULT_TEMPLATE if defaults else None, metavar="TEMPLATE",
                        help=f"with --data: the template plan giving the model and the periods (default "
                             f"{DEFAULT_TEMPLATE}; `list plans` shows them)")
    parser.add_argument("--epochs", type=int, metavar="N", help="with --data: epochs (over the template's)")
    parser.add_argument("--image-size", type=int, nargs="+", metavar="SIZE",
                        help="with --data: input size, one number (square) or height and width")
    parser.add_argument("--batch", type=int, metavar="B", help="with --data: batch size (over the template's)")


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
