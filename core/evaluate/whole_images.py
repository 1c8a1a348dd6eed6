"""Scoring a split as a deployed model sees it: the whole source images of a tiled split, each
predicted by slicing (core/model/sliced.py) and compared with its full-size ground truth,
rather than each tile alone. :func:`evaluate_split` picks that or the split's records, by
``[evaluation] on`` and by what the prepared data holds (core/data/slicing.py), and says which."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageOps

from detplug.core.data.images import read_rgb
from detplug.core.data.prepared import PreparedData
from detplug.core.data.slicing import Slicing, SourceImage, prepared_slicing, source_images
from detplug.core.errors import DataError
from detplug.core.evaluate.collect import GRID_IMAGES, IGNORE_NAME, evaluate_files, score_collected
from detplug.core.evaluate.contract import EvaluationResult, Evaluator, ImageDetections, ImageTruth
from detplug.core.evaluate.drawing import draw_boxes
from detplug.core.model.inference import batch_detector
from detplug.core.model.sliced import predict_sliced
from detplug.core.plan.check import CheckedPlan
from detplug.core.plan.settings import EvaluationSettings
from detplug.core.plan.specs import ImageSpec


def evaluation_subject(prepared: PreparedData, settings: EvaluationSettings) -> str | None:
    """What an evaluation of a tiled ``prepared`` scores, as the lines that quote its figures
    say it: ``3 whole val images (sliced: 320 px tiles, overlap 0.2)``, or ``12 val tiles
    ([evaluation] on = "tiles")``; None for a split converted without tiles (its records are
    the whole images, and "the val split" says it all)."""
    split, slicing = settings.split, prepared_slicing(prepared)
    if slicing is None:
        return None
    if settings.on == "tiles":
        return f"{_count(prepared.images(split), split + ' tile')} ([evaluation] on = \"tiles\")"
    images = source_images(prepared, split) or []
    return f"{_count(len(images), 'whole ' + split + ' image')} ({slicing.describe()})"


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def evaluate_split(model: keras.Model, checked: CheckedPlan, evaluator: Evaluator, prepared: PreparedData, *,
                   grid_path: Path | None = None, coco_folder: Path | None = None) -> EvaluationResult:
    """The evaluator's result on ``[evaluation] split`` of ``prepared``: the whole source images
    through sliced prediction when the split is tiled (unless ``[evaluation] on = "tiles"``),
    else its records (core/evaluate/collect.evaluate_files). Grid and COCO files as there."""
    settings = checked.plan.evaluation
    slicing = prepared_slicing(prepared)
    images = source_images(prepared, settings.split) if slicing is not None and settings.on == "images" else None
    if slicing is None or images is None:  # untiled records are whole images; or the tiles were asked for
        return evaluate_files(model, checked, evaluator, prepared.files(settings.split), grid_path=grid_path,
                              coco_folder=coco_folder)
    truths, detections, drawn = collect_whole_images(model, checked, images, slicing,
                                                     draw=GRID_IMAGES if grid_path is not None else 0)
    return score_collected(checked, evaluator, truths, detections, drawn, grid_path=grid_path,
                           coco_folder=coco_folder)


def collect_whole_images(model: keras.Model, checked: CheckedPlan, images: Sequence[SourceImage], slicing: Slicing,
                         *, score_threshold: float | None = None, draw: int = GRID_IMAGES, batch_size: int = 8
                         ) -> tuple[list[ImageTruth], list[ImageDetections], list[Image.Image]]:
    """Ground truth and sliced detections of each whole image, in its pixels, and the first
    ``draw`` images shrunk to the model input with their predictions and truth drawn."""
    chain, settings = checked.chain, checked.plan.evaluation
    image_spec, labels = chain.image, chain.labels
    assert image_spec is not None and labels is not None  # static_check fills in every link of a checked plan's chain
    names = list(labels.classes)
    threshold = settings.eval_score_threshold if score_threshold is None else score_threshold
    detect = batch_detector(model, image_spec, settings.max_detections, settings.iou_threshold, threshold)
    truths: list[ImageTruth] = []
    detections: list[ImageDetections] = []
    drawn: list[Image.Image] = []
    for source in images:
        pixels = _read(source)
        found = predict_sliced(pixels, detect, image_spec, slicing, iou_threshold=settings.iou_threshold,
                               max_detections=settings.max_detections, batch_size=batch_size)
        truths.append(ImageTruth(
            image_id=source.key, boxes=source.boxes,
            names=tuple(IGNORE_NAME if c < 0 else names[c] for c in source.classes),
            truncated=source.truncated, occluded=source.occluded, size=source.size,
        ))
        detections.append(ImageDetections(image_id=source.key, boxes=found["boxes"],
                                          names=tuple(names[c] for c in found["classes"]), scores=found["scores"]))
        if len(drawn) < draw:
            drawn.append(_drawn(pixels, found, source, names, settings.score_threshold, image_spec))
    return truths, detections, drawn


def _read(source: SourceImage) -> np.ndarray:
    """The source image's pixels; a DataError naming it when it no longer has the size the
    conversion saw, since its ground truth is in those pixels."""
    try:
        pixels = np.asarray(read_rgb(source.path), np.uint8)
    except OSError as error:
        raise DataError(f"cannot read source image {source.path}: {error}") from None
    if pixels.shape[:2] != source.size:
        raise DataError(f"source image {source.path} is {pixels.shape[0]}x{pixels.shape[1]} but was "
                        f"{source.size[0]}x{source.size[1]} when converted; convert again (--prepare --force)")
    return pixels


def _drawn(pixels: np.ndarray, found: dict[str, np.ndarray], source: SourceImage, names: list[str],
           score_threshold: float, image_spec: ImageSpec) -> Image.Image:
    """The whole image shrunk into the model input's size (a grid's cells are of one size),
    its confident detections and (white) ground truth drawn at that scale."""
    height, width = pixels.shape[:2]
    scale = min(image_spec.width / width, image_spec.height / height)
    shrunk = Image.fromarray(pixels).resize((max(1, round(width * scale)), max(1, round(height * scale))))
    keep = found["scores"] >= score_threshold
    truth = source.boxes[source.classes >= 0] * scale
    picture = draw_boxes(shrunk, found["boxes"][keep] * scale, [names[c] for c in found["classes"][keep]],
                         scores=found["scores"][keep], classes=found["classes"][keep], truth=truth)
    return ImageOps.pad(picture, (image_spec.width, image_spec.height))
