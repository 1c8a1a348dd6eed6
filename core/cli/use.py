"""The commands that use a trained plan: --evaluate, --predict, --export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from detplug.core.errors import DataError, DetplugError, PlanError
from detplug.core.plan.check import CheckedPlan
from detplug.core.train.run_folder import RunFolder

log = logging.getLogger(__name__)


def _prepared(checked: CheckedPlan, key: str, *, data_root: Path | None, cache_dir: Path | None) -> Any:
    """The plan's dataset ``key``, converted or reused, checked against the plan's spec."""
    from detplug.core.data.datasets import prepare_datasets
    from detplug.core.train.training import default_cache_dir

    return prepare_datasets(checked, data_root=data_root, cache_dir=cache_dir or default_cache_dir(),
                            keys=[key])[key]


def _model(checked: CheckedPlan, workdir: Path, checkpoint: str) -> tuple[Any, CheckedPlan]:
    """The trained model of ``checkpoint``'s period, and the plan as that model sees it."""
    from detplug.core.cli.predict import load_trained_model

    return load_trained_model(checked, RunFolder(workdir).checkpoints, checkpoint)


def evaluate(checked: CheckedPlan, registry: Any, *, workdir: Path, checkpoint: str, json_path: Path | None,
             data_root: Path | None, cache_dir: Path | None, results: Path | None = None,
             coco_gt: Path | None = None) -> Any:
    """Evaluate ``checkpoint`` on the validation split of the dataset of the period it belongs to;
    print the table, write the JSON when asked, draw the evaluator's PR curves and write what
    was scored as COCO JSON. With ``results`` (a COCO results file) and ``coco_gt`` (its
    ground truth), score that file instead, with no model."""
    from detplug.core.evaluate.collect import plan_evaluator
    from detplug.core.evaluate.contract import format_table
    from detplug.core.evaluate.whole_images import evaluate_split, evaluation_subject
    from detplug.core.pictures.pr_curves import pr_curve_path, write_pr_curves

    if checked.plan.evaluator is None:
        raise PlanError(f"{checked.plan.source}: --evaluate needs an evaluator: add [evaluation] "
                        f"evaluator = \"kitti_ap\" (or coco_map) to the plan")
    folder = json_path.parent if json_path is not None else RunFolder(workdir).path
    if results is not None:
        result = _score_results(checked, results, coco_gt)
    else:
        if coco_gt is not None:
            raise PlanError("--coco-gt goes with --results FILE: it is the ground truth the results are scored "
                            "against; --evaluate alone scores the plan's own split")
        model, view = _model(checked, workdir, checkpoint)
        evaluator = plan_evaluator(view)
        assert evaluator is not None  # the plan names one
        dataset = view.model_dataset
        prepared = _prepared(checked, dataset, data_root=data_root, cache_dir=cache_dir)
        grid_path = RunFolder(workdir).path / "predictions" / f"evaluate-{checkpoint}.png"
        split = checked.plan.evaluation.split
        subject = evaluation_subject(prepared, checked.plan.evaluation)
        result = evaluate_split(model, view, evaluator, prepared, grid_path=grid_path, coco_folder=folder)
        if subject is None:
            print(f"{checked.plan.name}, checkpoint '{checkpoint}', {dataset} {split} split "
                  f"({prepared.images(split)} images):")
        else:
            print(f"{checked.plan.name}, checkpoint '{checkpoint}', {dataset}: {result.evaluator} on {subject}:")
    print(format_table(result))
    if json_path is not None:
        from detplug.core.disk import writing

        with writing(json_path.name, json_path.parent):
            json_path.write_text(result.to_json())
        log.info(f"wrote {json_path}")
    log.info(write_pr_curves(result, pr_curve_path(RunFolder(workdir).path, json_path)))
    if results is None:
        from detplug.core.evaluate.collect import COCO_GROUND_TRUTH, COCO_PREDICTIONS
        from detplug.core.plan.plan_file import plan_argument

        log.info(f"wrote what was scored as COCO JSON: {folder / COCO_PREDICTIONS} (score it again "
                 f"with `run.py evaluate --plan {plan_argument(checked.plan)} --results FILE --coco-gt "
                 f"{folder / COCO_GROUND_TRUTH}`)")
    return result


def _score_results(checked: CheckedPlan, results: Path, coco_gt: Path | None) -> Any:
    """The plan's evaluator on a COCO results file against its ground truth: no model."""
    from detplug.core.evaluate.coco_files import read_ground_truth, read_results
    from detplug.core.evaluate.collect import plan_evaluator

    if coco_gt is None:
        raise PlanError(f"--results {results} needs --coco-gt FILE, the COCO ground truth its ids refer to (--evaluate "
                        f"writes coco_ground_truth.json beside coco_predictions.json)")
    truths, image_ids, category_ids = read_ground_truth(coco_gt)
    detections = read_results(results, image_ids, category_ids)
    evaluator = plan_evaluator(checked)
    assert evaluator is not None  # the caller checked that the plan names one
    print(f"{checked.plan.name}: {results} scored against {coco_gt} ({len(truths)} images), no model:")
    return evaluator.evaluate(truths, detections)


def predict(checked: CheckedPlan, *, workdir: Path, checkpoint: str, images: list[Path], out_dir: Path,
            format: str = "kitti", coco_gt: Path | None = None, tile: int | None = None,
            overlap: float | None = None, full_image_pass: bool = False) -> None:
    """Detections of ``images``: drawn PNGs and KITTI result files, or (``format`` "coco") one
    COCO results file at the evaluation score threshold, ids from ``coco_gt`` if given. Large
    images are cut into ``tile``-pixel tiles (default: the tiling of the dataset the model
    trained on; core/cli/slicing.py), every format in the images' own pixels."""
    from detplug.core.cli.predict import detector_module, image_paths, predict_coco, predict_images
    from detplug.core.cli.slicing import prediction_slicing
    from detplug.core.model.inference import DetectorModule

    paths = image_paths(images)  # a missing image is reported before the model is built
    if coco_gt is not None and format != "coco":
        raise PlanError("--coco-gt goes with --format coco: it gives the COCO results file its image and category ids")
    slicing = prediction_slicing(checked, tile=tile, overlap=overlap, full_image_pass=full_image_pass)
    model, view = _model(checked, workdir, checkpoint)
    if slicing is not None:
        log.info(f"predicting {len(paths)} image{'' if len(paths) == 1 else 's'} {slicing.describe()} "
                 f"(each tile letterboxed to the {view.chain.image} input)")
    if format == "coco":
        labels = view.chain.labels
        assert view.chain.image is not None and labels is not None  # static_check fills in every link
        # Scored results keep every detection an AP needs: the evaluation threshold, not the drawing one.
        module = DetectorModule(model, view.chain.image, labels.classes, view.plan.evaluation,
                                score_threshold=view.plan.evaluation.eval_score_threshold)
        predict_coco(module, paths, out_dir, coco_gt=coco_gt, classes=labels.classes, slicing=slicing)
        return
    predict_images(detector_module(view, model), paths, out_dir, slicing)


def export(checked: CheckedPlan, *, workdir: Path, checkpoint: str, directory: Path, format: str = "saved_model",
           quantize: str | None = None, calibration_images: int | None = None, data_root: Path | None = None,
           cache_dir: Path | None = None) -> None:
    """``--export DIR``: a SavedModel taking uint8 images of any size, or with ``format``
    ``tflite`` DIR/model.tflite (core/model/tflite_export.py), optionally quantized; int8
    calibrates on ``calibration_images`` images of the plan's training records."""
    check_export_options(directory, format=format, quantize=quantize, calibration_images=calibration_images)
    model, view = _model(checked, workdir, checkpoint)
    if format == "tflite":
        _export_tflite(checked, view, model, directory, quantize=quantize or "none",
                       calibration_images=calibration_images, data_root=data_root, cache_dir=cache_dir)
        return
    from detplug.core.cli.predict import detector_module, export_saved_model

    export_saved_model(detector_module(view, model), directory)
    log.info(f"exported a SavedModel to {directory}: signature serving_default(images: uint8 [B, H, W, 3]) -> "
             f"boxes (x1 y1 x2 y2 pixels), scores, classes, class_names, num_detections")


def check_export_options(directory: Path, *, format: str, quantize: str | None,
                         calibration_images: int | None) -> None:
    """Refuse a bad --export before a model is loaded: an option that means nothing for the
    format, too few calibration images, a folder that is not new or empty."""
    if format == "saved_model" and quantize is not None:
        raise DetplugError(f"--quantize {quantize} applies to --format tflite only; add --format tflite, or leave "
                           f"--quantize out for a SavedModel")
    if calibration_images is not None and quantize != "int8":
        raise DetplugError("--calibration-images calibrates int8 quantization only; add --quantize int8 (and "
                           "--format tflite), or leave --calibration-images out")
    if calibration_images is not None and calibration_images < 1:
        raise DetplugError(f"--calibration-images {calibration_images}: int8 needs at least 1 image to calibrate "
                           f"on; give a number of 1 or more")
    if directory.exists() and not directory.is_dir():
        raise DataError(f"--export {directory} is a file; give a new or empty folder")
    if directory.is_dir() and any(directory.iterdir()):
        raise DataError(f"--export {directory}: the folder is not empty; give a new or empty folder")


def _export_tflite(checked: CheckedPlan, view: CheckedPlan, model: Any, directory: Path, *, quantize: str,
                   calibration_images: int | None, data_root: Path | None, cache_dir: Path | None) -> None:
    """DIR/model.tflite; int8 calibrates on the first images of the training split of the
    dataset the checkpoint's period trained on, as the records hold them (letterboxed)."""
    from detplug.core.cli.predict import detector_module
    from detplug.core.model import tflite_export

    calibration = []
    if quantize == "int8":
        prepared = _prepared(checked, view.model_dataset, data_root=data_root, cache_dir=cache_dir)
        count = tflite_export.DEFAULT_CALIBRATION_IMAGES if calibration_images is None else calibration_images
        calibration = tflite_export.calibration_images(prepared.files("train"), count)
    written = tflite_export.write_tflite(detector_module(view, model), directory, quantize=quantize,
                                         calibration=calibration)
    log.info(written.describe())


def anchors(checked: CheckedPlan, *, write: bool, data_root: Path | None, cache_dir: Path | None) -> dict:
    """k-means anchors (IoU distance) for the plan's first dataset, per stride, with the
    best-possible recall of the current and the new anchors; ``write`` puts them in the plan."""
    import numpy as np

    from detplug.core.data.kmeans_anchors import (
        anchor_table_toml,
        best_possible_recall,
        group_by_stride,
        kmeans_anchors,
        read_boxes_wh,
    )
    from detplug.core.plan.anchors import anchor_pixels
    plan = checked.plan
    item = checked.resolved[f"datasets.{plan.periods[0].dataset}"]
    prepared = _prepared(checked, plan.periods[0].dataset, data_root=data_root, cache_dir=cache_dir)
    boxes = read_boxes_wh(prepared)
    current = anchor_pixels(plan.anchors)
    strides = sorted(current)
    count = sum(len(pairs) for pairs in current.values())
    table = group_by_stride(kmeans_anchors(boxes, count, seed=plan.train.run.seed), strides)
    flat = lambda t: np.array([pair for stride in sorted(t) for pair in t[stride]], np.float64)  # noqa: E731
    recall_now, recall_new = best_possible_recall(boxes, flat(current)), best_possible_recall(boxes, flat(table))
    image = checked.chain.image
    assert image is not None  # static_check fills in every link of a checked plan's chain
    log.info(f"{len(boxes)} boxes of '{plan.periods[0].dataset}' ({item.component.name}), "
             f"in pixels of the {image.height}x{image.width} input:")
    for stride in strides:
        log.info(f"  stride {stride:>2}: current {list(map(tuple, current[stride]))}  "
                 f"new {[(round(w), round(h)) for w, h in table[stride]]}")
    log.info(f"best-possible recall (IoU >= 0.5): current {recall_now:.3f}, new {recall_new:.3f}")
    value = anchor_table_toml(table)
    if write:
        _write_anchors(plan.source, value)
        log.info(f"wrote model.anchors = {value} into {plan.source}")
    else:
        log.info(f"model.anchors = {value}   (--write puts it into {plan.source})")
    return {"current_recall": recall_now, "new_recall": recall_new, "anchors": value}


def _write_anchors(path: Path, value: str) -> None:
    """Replace the ``anchors = ...`` line of the plan's [model] table, keeping everything else.
    The table runs from its header to the next line that starts a table (``[``); its lines
    may hold brackets of their own, such as an anchor table's."""
    import re

    from detplug.core.disk import write_atomically

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if re.match(r"\[model\]\s*(#.*)?$", line.strip())), None)
    anchors: int | None = None
    if header is not None:
        end = next((i for i in range(header + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        anchors = next((i for i in range(header + 1, end) if re.match(r"anchors\s*=", lines[i].strip())), None)
    if anchors is None:
        raise PlanError(f"{path}: --anchors --write found no 'anchors = ...' line in [model] to replace; "
                        f"write it there by hand: anchors = {value}")
    newline = "\n" if lines[anchors].endswith("\n") else ""
    lines[anchors] = f"anchors = {value}{newline}"
    write_atomically(path, "".join(lines))


def import_weights(checked: CheckedPlan, *, weights: Path, out: Path) -> None:
    """``import-weights``: read a Darknet ``.weights`` file into the plan's model and write
    its Keras ``.weights.h5``; nothing is written when the file does not fit."""
    import os

    from detplug.core.model.assemble import build_parts
    from detplug.core.model.darknet_weights import load_darknet
    from detplug.core.model.init_from import darknet_parts

    if not out.name.endswith(".weights.h5"):
        raise PlanError(f"--out {out}: Keras writes weights to a file named *.weights.h5; give such a name")
    if not weights.is_file():
        raise PlanError(f"--import-weights {weights}: no such file; give the path of a Darknet .weights file")
    parts = build_parts(checked)
    mapped, unmapped = darknet_parts(checked, parts)
    loaded = load_darknet(weights, mapped, unmapped=unmapped)
    log.info(loaded.describe(weights))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name[:-len('.weights.h5')]}-{os.getpid()}.weights.h5")
    parts.model.save_weights(partial)
    os.replace(partial, out)
    log.info(f"wrote {out} ({parts.model.count_params():,} parameters of plan '{checked.plan.name}')")


def show_data(checked: CheckedPlan, *, period: int, images: int, out_dir: Path, data_root: Path | None,
              cache_dir: Path | None) -> list[Path]:
    """Draw period ``period``'s (1-based) first training batches, exactly as the trainer
    takes them, and labels.png; see core/pictures/data_view.py. Needs no model."""
    import math

    import numpy as np

    from detplug.core.data.records import read_boxes
    from detplug.core.pictures.data_view import BATCH_IMAGES, draw_batch, draw_labels
    from detplug.core.train.batches import input_pipeline, training_batches

    plan = checked.plan
    if not 1 <= period <= len(plan.periods):
        raise PlanError(f"--period {period}: plan '{plan.name}' has periods 1 to {len(plan.periods)}")
    if images < 1:
        raise PlanError(f"--images {images}: give how many training images to draw, at least 1")
    index = period - 1
    view = checked.for_period(index)
    dataset = plan.periods[index].dataset
    prepared = _prepared(checked, dataset, data_root=data_root, cache_dir=cache_dir)
    pipeline = input_pipeline(view)
    labels = view.chain.labels
    assert labels is not None  # static_check fills in every link of a checked plan's chain
    first_epoch = plan.period_bounds()[index][0] + 1
    per_picture = min(plan.periods[index].settings.batch_size, BATCH_IMAGES)
    batches = training_batches(checked, index, pipeline, prepared.train_files, [first_epoch])
    written, drawn = [], 0
    for number, (pixels, targets) in enumerate(batches.take(math.ceil(images / per_picture))):
        count = min(per_picture, images - drawn, len(pixels))
        drawn += count
        arrays = {key: np.asarray(value)[:count] for key, value in targets.items()}
        written.append(draw_batch(np.asarray(pixels)[:count], arrays, pipeline.anchors, labels.classes,
                                  out_dir / f"train_batch{number}.png"))
    boxes, classes = read_boxes(prepared.train_files)
    real = classes >= 0
    written.append(draw_labels(boxes[real], classes[real], prepared.image_size, pipeline.anchors, labels.classes,
                               out_dir / "labels.png"))
    log.info(f"drew {drawn} training image{'' if drawn == 1 else 's'} of period {period} ({dataset}, epoch "
             f"{first_epoch}, as the trainer sees them) and the label statistics of its {int(real.sum()):,} boxes:")
    for path in written:
        log.info(f"  {path}")
    return written
