"""Detections and ground truth as COCO JSON files, and back.

``--evaluate`` writes the detections it scored as a COCO results file
(``coco_predictions.json``: a list of ``image_id``, ``category_id``, ``bbox`` [x, y, w, h]
in the original image's pixels, ``score``) and the ground truth as a COCO instances file
(``coco_ground_truth.json``, with each image's original height and width). ``--predict
--format coco`` writes the results file of any images. ``--evaluate --results FILE
--coco-gt FILE`` scores a results file against a ground truth with the plan's evaluator
and no model.

Ids: with a ground-truth file, an image is the one of the same file name and a class the
category of the same name. Without one, images are numbered 1, 2, ... in the order given
and classes 1, 2, ... in the plan's order. Ignore regions (KITTI's DontCare, COCO's
crowds) are ``iscrowd`` annotations of a ``DontCare`` category; KITTI's truncation and
occlusion, which its difficulties need, ride along as extra annotation fields.
numpy only: no TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detplug.core.errors import DataError
from detplug.core.evaluate.contract import ImageDetections, ImageTruth

IGNORE_NAME = "DontCare"


def _xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth_document(truths: Sequence[ImageTruth], classes: Sequence[str]) -> dict[str, Any]:
    """A COCO instances document of ``truths``; categories 1.. are ``classes`` (then the other
    names the truth holds, e.g. Van, and DontCare), images 1.. in order."""
    names = list(classes) + sorted({n for t in truths for n in t.names} - set(classes) - {IGNORE_NAME})
    names.append(IGNORE_NAME)
    category = {name: index + 1 for index, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, truth in enumerate(truths, start=1):
        size = {} if truth.size is None else {"height": truth.size[0], "width": truth.size[1]}
        images.append({"id": image_id, "file_name": truth.image_id, **size})
        for box, name, truncated, occluded in zip(truth.boxes, truth.names, truth.truncated, truth.occluded):
            xywh = _xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category[name],
                                "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": int(name == IGNORE_NAME),
                                "truncated": float(truncated), "occluded": int(occluded)})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": ident, "name": name} for name, ident in category.items()]}


def results_document(detections: Sequence[ImageDetections], image_ids: Mapping[str, int],
                     category_ids: Mapping[str, int]) -> list[dict[str, Any]]:
    """A COCO results list of ``detections``, ids from the two maps (by image and class name)."""
    results = []
    for found in detections:
        for box, name, score in zip(found.boxes, found.names, found.scores):
            results.append({"image_id": image_ids[found.image_id], "category_id": category_ids[name],
                            "bbox": _xywh(box), "score": float(score)})
    return results


def read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{what} {path}: cannot read it as JSON ({error})") from None


def read_ground_truth(path: Path) -> tuple[list[ImageTruth], dict[str, int], dict[str, int]]:
    """The truths of a COCO instances file, and its ids by image file name and category name."""
    document = read_json(path, "--coco-gt")
    if not isinstance(document, dict) or not {"images", "annotations", "categories"} <= set(document):
        raise DataError(f"--coco-gt {path}: not a COCO instances file (it needs 'images', 'annotations' and "
                        f"'categories')")
    names = {int(c["id"]): str(c["name"]) for c in document["categories"]}
    files = {int(image["id"]): str(image["file_name"]) for image in document["images"]}
    sizes = {int(image["id"]): (image["height"], image["width"]) for image in document["images"]
             if "height" in image and "width" in image}
    objects: dict[int, list[dict[str, Any]]] = {ident: [] for ident in files}
    for annotation in document["annotations"]:
        objects.setdefault(int(annotation["image_id"]), []).append(annotation)
    truths = []
    for ident, file_name in files.items():
        found = objects[ident]
        truths.append(ImageTruth(
            image_id=file_name,
            boxes=[[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in found)],
            names=[IGNORE_NAME if a.get("iscrowd") else names[int(a["category_id"])] for a in found],
            truncated=[float(a.get("truncated", 0.0)) for a in found],
            occluded=[int(a.get("occluded", 0)) for a in found],
            size=sizes.get(ident)))
    return truths, {name: ident for ident, name in files.items()}, {name: ident for ident, name in names.items()}


def read_results(path: Path, image_ids: Mapping[str, int], category_ids: Mapping[str, int]
                 ) -> list[ImageDetections]:
    """The detections of a COCO results file, one per image of ``image_ids`` (none: empty)."""
    results = read_json(path, "--results")
    if not isinstance(results, list):
        raise DataError(f"--results {path}: a COCO results file is a list of detections (image_id, category_id, "
                        f"bbox, score)")
    files = {ident: name for name, ident in image_ids.items()}
    names = {ident: name for name, ident in category_ids.items()}
    per_image: dict[int, list[dict[str, Any]]] = {ident: [] for ident in files}
    for result in results:
        ident, category = int(result["image_id"]), int(result["category_id"])
        if ident not in files or category not in names:
            raise DataError(f"--results {path}: image_id {ident} or category_id {category} is not in the ground "
                            f"truth; score results against the ground truth their ids come from")
        per_image[ident].append(result)
    detections = []
    for ident, found in per_image.items():
        boxes = np.asarray([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in found)]).reshape(-1, 4)
        detections.append(ImageDetections(files[ident], boxes, [names[int(r["category_id"])] for r in found],
                                          [float(r["score"]) for r in found]))
    return detections
