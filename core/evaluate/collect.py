"""Evaluating a model on a prepared split: detections and ground truth in the source
images' pixels, handed to the plan's evaluator, plus a grid of drawn predictions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from detplug.core.build import build_evaluator
from detplug.core.data import records
from detplug.core.disk import writing
from detplug.core.errors import CheckError
from detplug.core.evaluate.contract import EvaluationResult, Evaluator, ImageDetections, ImageTruth
from detplug.core.evaluate.drawing import draw_boxes, grid
from detplug.core.model.inference import batch_detector, to_source_pixels
from detplug.core.plan.check import CheckedPlan
from detplug.core.plan.specs import SpecError

#: How many validation images the drawn grid shows.
GRID_IMAGES = 8
#: The name of ignore regions (class -1 in the records) as evaluators expect it.
IGNORE_NAME = "DontCare"
#: What --evaluate writes beside its JSON (or in the run folder): the detections it scored
#: and their ground truth, as COCO JSON.
COCO_PREDICTIONS, COCO_GROUND_TRUTH = "coco_predictions.json", "coco_ground_truth.json"


def collect(model: keras.Model, checked: CheckedPlan, files: Sequence[Path], *, batch_size: int = 8,
            score_threshold: float | None = None, draw: int = GRID_IMAGES
            ) -> tuple[list[ImageTruth], list[ImageDetections], list[Image.Image]]:
    """Ground truth and detections for every record of ``files``, in source pixels, and the
    first ``draw`` letterboxed images with their predictions and truth drawn."""
    chain, settings = checked.chain, checked.plan.evaluation
    image_spec = chain.image
    # static_check fills in every link of a checked plan's chain.
    assert image_spec is not None and chain.labels is not None
    names = list(chain.labels.classes)
    threshold = settings.eval_score_threshold if score_threshold is None else score_threshold
    parsed = tf.data.TFRecordDataset([str(f) for f in files]).map(records.parse_all)
    truths: list[ImageTruth] = []
    detections: list[ImageDetections] = []
    drawn: list[Image.Image] = []
    detect = batch_detector(model, image_spec, settings.max_detections, settings.iou_threshold, threshold)

    def run(batch: list[dict[str, Any]]) -> None:
        images = tf.stack([tf.image.convert_image_dtype(tf.io.decode_png(r["png"], channels=3), tf.float32)
                           for r in batch])
        found = detect(images)
        for index, record in enumerate(batch):
            count = int(found["num_detections"][index])
            source_hw = record["original_size"]
            image_id = record["filename"].numpy().decode()
            classes = record["classes"].numpy()
            truths.append(ImageTruth(
                image_id=image_id, boxes=record["source_boxes"].numpy(),
                names=tuple(IGNORE_NAME if c < 0 else names[c] for c in classes),
                truncated=record["truncated"].numpy(), occluded=record["occluded"].numpy().astype(int),
                size=source_hw.numpy(),
            ))
            found_classes = found["classes"][index][:count].numpy()
            detections.append(ImageDetections(
                image_id=image_id,
                boxes=to_source_pixels(found["boxes"][index][:count], source_hw, image_spec).numpy(),
                names=tuple(names[c] for c in found_classes), scores=found["scores"][index][:count].numpy(),
            ))
            if len(drawn) < draw:
                drawn.append(_drawn(images[index], found, index, count, record, names, settings.score_threshold))

    batch: list[dict[str, Any]] = []
    for record in parsed:
        batch.append(record)
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    return truths, detections, drawn


def _drawn(image: tf.Tensor, found: dict, index: int, count: int, record: dict, names: list[str],
           score_threshold: float) -> Image.Image:
    """One letterboxed image with its confident detections and (white) ground truth."""
    height, width = image.shape[:2]
    scale = np.array([width, height, width, height], np.float32)
    yxyx = found["boxes"][index][:count].numpy()
    keep = found["scores"][index][:count].numpy() >= score_threshold
    boxes = yxyx[:, [1, 0, 3, 2]] * scale
    truth = record["boxes"].numpy()[:, [1, 0, 3, 2]] * scale
    classes = found["classes"][index][:count].numpy()
    pixels = Image.fromarray((image.numpy() * 255).astype(np.uint8))
    return draw_boxes(pixels, boxes[keep], [names[c] for c in classes[keep]],
                      scores=found["scores"][index][:count].numpy()[keep], classes=classes[keep], truth=truth)


def plan_evaluator(checked: CheckedPlan) -> Any | None:
    """The plan's evaluator, built for the classes the model detects; None when it names none."""
    ref = checked.plan.evaluator
    if ref is None:
        return None
    item = checked.resolved[ref.key]
    labels = checked.chain.labels
    assert labels is not None  # static_check fills in every link of a checked plan's chain
    try:
        return build_evaluator(item.component, item.params, classes=tuple(labels.classes))
    except SpecError as error:
        raise CheckError(f"{checked.plan.source}: {ref.key}: evaluator '{ref.name}' cannot evaluate dataset "
                         f"'{checked.model_dataset}': {error}; choose an evaluator for its classes") from None


def evaluate_files(model: keras.Model, checked: CheckedPlan, evaluator: Evaluator, files: Sequence[Path],
                   grid_path: Path | None = None, coco_folder: Path | None = None) -> EvaluationResult:
    """The evaluator's result on the records of ``files``; the drawn grid at ``grid_path``, and
    the detections and ground truth as COCO JSON files in ``coco_folder`` (core/evaluate/coco_files.py)."""
    truths, detections, drawn = collect(model, checked, files, draw=GRID_IMAGES if grid_path is not None else 0)
    return score_collected(checked, evaluator, truths, detections, drawn, grid_path=grid_path,
                           coco_folder=coco_folder)


def score_collected(checked: CheckedPlan, evaluator: Evaluator, truths: Sequence[ImageTruth],
                    detections: Sequence[ImageDetections], drawn: Sequence[Image.Image], *,
                    grid_path: Path | None = None, coco_folder: Path | None = None) -> EvaluationResult:
    """The evaluator's result on collected ground truth and detections, with the drawn grid
    and the COCO JSON files written where asked (see :func:`evaluate_files`)."""
    if grid_path is not None and drawn:
        with writing(f"the drawn predictions {grid_path.name}", grid_path.parent):
            grid_path.parent.mkdir(parents=True, exist_ok=True)
            grid(drawn).save(grid_path)
    if coco_folder is not None:
        assert checked.chain.labels is not None  # static_check fills in every link of a checked plan's chain
        write_coco_files(truths, detections, checked.chain.labels.classes, coco_folder)
    return evaluator.evaluate(truths, detections)


def write_coco_files(truths: Sequence[ImageTruth], detections: Sequence[ImageDetections], classes: Sequence[str],
                     folder: Path) -> tuple[Path, Path]:
    """COCO_PREDICTIONS and COCO_GROUND_TRUTH in ``folder``: what was scored, as COCO JSON."""
    from detplug.core.evaluate.coco_files import ground_truth_document, results_document

    truth = ground_truth_document(truths, classes)
    image_ids = {image["file_name"]: image["id"] for image in truth["images"]}
    category_ids = {category["name"]: category["id"] for category in truth["categories"]}
    paths = folder / COCO_PREDICTIONS, folder / COCO_GROUND_TRUTH
    with writing("the COCO JSON files of the evaluation", folder):
        folder.mkdir(parents=True, exist_ok=True)
        paths[0].write_text(json.dumps(results_document(detections, image_ids, category_ids)))
        paths[1].write_text(json.dumps(truth))
    return paths
