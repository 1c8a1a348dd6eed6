"""COCO box mAP, computed by pycocotools (no home-made metric where a
maintained library computes it).

The ground truth is built in memory as a COCO dataset (one category per class,
ids from 1 in the order of ``classes``); ``ignore_names`` regions become crowd
annotations (iscrowd=1) of every category, which COCOeval matches by the
intersection over the detection's area and never counts as hits or misses.
Ground truths of other names are left out, and so are detections of names that
are not among ``classes``. Names are compared case-insensitively.

Metrics (over all areas; every detection, or at most ``max_detections`` per image
and class): ``mAP`` (IoU .50:.05:.95), ``AP50``, ``AP75`` and ``AP/<class>``
(IoU .50:.95), NaN where no class has ground truth.

Each class's precision-recall curve (``EvaluationResult.curves``) is COCOeval's
``eval['precision']`` at IoU 0.50, area all, ``max_detections``, against its 101
recall points 0, .01, ..., 1: the curve whose mean is the class's AP50 (the
table's AP50 column), the one IoU at which a picture of a detector reads plainly.
(The headline mAP averages ten such curves, at IoU .50 to .95, so no single curve
has it as its AP.) A class without ground truth has NaN precision and AP.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from detplug.core.errors import DataError
from detplug.core.evaluate.contract import (
    EvaluationResult,
    ImageDetections,
    ImageTruth,
    PrecisionRecall,
    pair_by_image,
)
from detplug.core.plan.specs import name_tuple
from detplug.plugins.evaluators import CocoMapParams

#: COCOeval's IoU thresholds (Params.iouThrs): .50, .55, ..., .95.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: COCOeval's recall points (Params.recThrs): 0, .01, ..., 1.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: The IoU of the PR curves, as an index into IOU_THRESHOLDS.
CURVE_IOU_INDEX = 0


def coco_ground_truth(pairs: Sequence[tuple[ImageTruth, ImageDetections]], classes: tuple[str, ...],
                      ignore_names: tuple[str, ...]) -> dict[str, Any]:
    """The COCO dataset dict of the truths: image ids 1..N in order, boxes as x, y, w, h."""
    category = {name.lower(): index + 1 for index, name in enumerate(classes)}
    ignored = {name.lower() for name in ignore_names}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_number, (truth, _) in enumerate(pairs, start=1):
        images.append({"id": image_number, "file_name": truth.image_id})
        for name, box in zip(truth.names, truth.boxes):
            key = name.lower()
            if key in category:
                targets, crowd = [category[key]], 0
            elif key in ignored:
                targets, crowd = list(category.values()), 1
            else:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            for category_id in targets:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_number, "category_id": category_id,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd,
                })
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(pairs: Sequence[tuple[ImageTruth, ImageDetections]], classes: tuple[str, ...]) -> list[dict]:
    """The detections as a COCO result list, image ids as in :func:`coco_ground_truth`."""
    category = {name.lower(): index + 1 for index, name in enumerate(classes)}
    results = []
    for image_number, (_, found) in enumerate(pairs, start=1):
        for name, box, score in zip(found.names, found.boxes, found.scores):
            if name.lower() not in category:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({"image_id": image_number, "category_id": category[name.lower()],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return results


def _mean_defined(values: np.ndarray) -> float:
    # COCOeval.summarize's rule: -1 marks a category/threshold without ground truth.
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else float("nan")


@attrs.frozen
class CocoMapEvaluator:
    classes: tuple[str, ...] = attrs.field(converter=name_tuple)
    params: CocoMapParams = attrs.field(factory=CocoMapParams)

    def evaluate(self, truths: Sequence[ImageTruth], detections: Sequence[ImageDetections]) -> EvaluationResult:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        pairs = pair_by_image(truths, detections)
        if not pairs:
            raise DataError("coco_map was given no images to evaluate")
        # pycocotools reports progress on stdout; the caller prints the table instead.
        with contextlib.redirect_stdout(io.StringIO()):
            ground_truth = COCO()
            ground_truth.dataset = coco_ground_truth(pairs, self.classes, self.params.ignore_names)
            ground_truth.createIndex()
            results = coco_results(pairs, self.classes)
            precision = self._precision(ground_truth, results, COCO, COCOeval)
        # precision: (IoU thresholds, 101 recall points, classes) at area "all", max_detections.
        per_class = [_mean_defined(precision[:, :, k]) for k in range(len(self.classes))]
        metrics = {"mAP": _mean_defined(precision), "AP50": _mean_defined(precision[0]),
                   "AP75": _mean_defined(precision[5])}
        metrics.update({f"AP/{name}": value for name, value in zip(self.classes, per_class)})
        counts = _ground_truth_counts(ground_truth, len(self.classes))
        rows = [(name, per_class[k], _mean_defined(precision[0, :, k]), _mean_defined(precision[5, :, k]),
                 counts[k]) for k, name in enumerate(self.classes)]
        rows.append(("all", metrics["mAP"], metrics["AP50"], metrics["AP75"], sum(counts)))
        curves = {name: _curve(precision[CURVE_IOU_INDEX, :, k]) for k, name in enumerate(self.classes)}
        return EvaluationResult("coco_map", metrics, "mAP", ("class", "AP", "AP50", "AP75", "GT"), tuple(rows),
                                curves=curves)

    def _precision(self, ground_truth: Any, results: list[dict], coco: type, coco_eval: type) -> np.ndarray:
        shape = (len(IOU_THRESHOLDS), len(RECALL_POINTS), len(self.classes))
        if not results:
            # loadRes cannot take an empty list; with nothing detected every class that has
            # ground truth scores 0, and a class without any stays undefined.
            has_truth = np.array([bool(ground_truth.getAnnIds(catIds=[k + 1], iscrowd=False))
                                  for k in range(len(self.classes))])
            return np.broadcast_to(np.where(has_truth, 0.0, -1.0), shape).copy()
        evaluation = coco_eval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.params.maxDets = [self.params.max_detections or _most_per_image(results)]  # summarize() unused
        evaluation.evaluate()
        evaluation.accumulate()
        return evaluation.eval["precision"][:, :, :, 0, -1]


def _most_per_image(results: list[dict]) -> int:
    """The most detections of one class in one image: COCOeval's cap that cuts none."""
    counts = Counter((found["image_id"], found["category_id"]) for found in results)
    return max(counts.values(), default=1)


def _curve(precision: np.ndarray) -> PrecisionRecall:
    """One class's 101 precisions at one IoU as a curve whose AP is their mean, as the
    table's figures are; COCOeval's -1 (no ground truth) becomes NaN."""
    return PrecisionRecall(recall=RECALL_POINTS.copy(), precision=np.where(precision > -1, precision, np.nan),
                           ap=_mean_defined(precision), iou=float(IOU_THRESHOLDS[CURVE_IOU_INDEX]))


def _ground_truth_counts(ground_truth: Any, num_classes: int) -> list[int]:
    return [len(ground_truth.getAnnIds(catIds=[k + 1], iscrowd=False)) for k in range(num_classes)]


def coco_map_evaluator(params: CocoMapParams, *, classes: tuple[str, ...]) -> CocoMapEvaluator:
    """The factory: COCO mAP over ``classes``."""
    if not classes:
        raise ValueError("coco_map needs at least one class to evaluate")
    return CocoMapEvaluator(tuple(classes), params)
