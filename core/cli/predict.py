"""Using a trained plan: load its weights, draw predictions on images, export a SavedModel."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from detplug.core.data.images import IMAGE_SUFFIXES, read_rgb
from detplug.core.data.slicing import Slicing
from detplug.core.disk import writing
from detplug.core.errors import CheckpointError, DataError, first_few
from detplug.core.evaluate.contract import ImageDetections
from detplug.core.evaluate.drawing import draw_boxes
from detplug.core.evaluate.kitti_files import write_kitti_results
from detplug.core.model.assemble import build_model
from detplug.core.model.inference import DetectorModule, batch_detector, valid_rows
from detplug.core.model.sliced import predict_sliced
from detplug.core.plan.check import CheckedPlan
from detplug.core.train.checkpoints import PREFIX, CheckpointStore

log = logging.getLogger(__name__)


def load_trained_model(checked: CheckedPlan, checkpoints: Path,
                       checkpoint: str = "latest") -> tuple[keras.Model, CheckedPlan]:
    """The model of the period that ``checkpoint`` (``latest``, ``best`` or a snapshot such
    as ``ep10``) belongs to, with its weights; and the plan as that model sees it (its
    dataset's image size and classes). A snapshot's ``.weights.h5`` (EMA weights when the
    plan uses EMA) is preferred; the latest every-epoch checkpoint holds the raw weights."""
    from detplug.core.train.training import period_index_at

    store = CheckpointStore(checkpoints)
    state = store.state()
    name = state["latest"] if checkpoint == "latest" else checkpoint
    available = sorted({*state["kept"], *state["snapshots"], *(["best"] if state.get("best") else [])})
    if not name or not (checkpoints / name).is_dir():
        raise CheckpointError(
            f"no checkpoint '{checkpoint}' in {checkpoints}; available: {', '.join(available) or 'none (train first)'}"
        )
    view = checked.for_period(period_index_at(checked.plan, max(store.epoch_of(name), 1) - 1))
    model = build_model(view)
    weights = checkpoints / f"{name}.weights.h5"
    if weights.is_file():
        model.load_weights(str(weights))
    else:
        tf.train.Checkpoint(model=model).read(str(checkpoints / name / PREFIX)).expect_partial()
    return model, view


def detector_module(checked: CheckedPlan, model: keras.Model) -> DetectorModule:
    image, labels = checked.chain.image, checked.chain.labels
    assert image is not None and labels is not None  # static_check fills in every link of a checked plan's chain
    return DetectorModule(model, image, labels.classes, checked.plan.evaluation)


def image_paths(inputs: Iterable[Path]) -> list[Path]:
    """Image files named directly or found (not recursively) in named folders."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise DataError(f"--predict {item}: no such image or folder")
    if not paths:
        raise DataError(f"--predict: no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return paths


def read_image(path: Path) -> np.ndarray:
    try:
        return np.asarray(read_rgb(path), np.uint8)
    except OSError as error:
        raise DataError(f"cannot read image {path}: {error}") from None


def detect_image(module: DetectorModule, pixels: np.ndarray, slicing: Slicing | None = None) -> dict[str, np.ndarray]:
    """The detections of one uint8 image (H, W, 3) in its pixels: boxes x1 y1 x2 y2, scores,
    classes, class_names. Whole (``module.serve``, as the exported model), or with ``slicing``
    cut into tiles that go through the same model and NMS in batches (core/model/sliced.py)."""
    if slicing is None:
        return valid_rows(module.serve(tf.constant(pixels[None])))
    settings = module.settings
    detect = batch_detector(module.model, module.image, settings.max_detections, settings.iou_threshold,
                            module.score_threshold)
    found = predict_sliced(pixels, detect, module.image, slicing, iou_threshold=settings.iou_threshold,
                           max_detections=settings.max_detections)
    found["class_names"] = module.class_names.numpy()[found["classes"]]
    return found


def predict_images(module: DetectorModule, paths: list[Path], out_dir: Path,
                   slicing: Slicing | None = None) -> list[Path]:
    """For each image: ``<stem>.png`` with the boxes drawn at its original size, and a
    KITTI-format result file ``<stem>.txt`` (16 columns, the score last); sliced with ``slicing``."""
    with writing("the predictions folder", out_dir.parent):
        out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        pixels = read_image(path)
        found = detect_image(module, pixels, slicing)
        names = [name.decode() for name in found["class_names"]]
        drawn = draw_boxes(Image.fromarray(pixels), found["boxes"], names, scores=found["scores"],
                           classes=found["classes"])
        with writing(f"the predictions for {path.name}", out_dir):
            drawn.save(out_dir / f"{path.stem}.png")
            write_kitti_results(out_dir, [ImageDetections(
                image_id=path.stem, boxes=found["boxes"], names=tuple(names), scores=found["scores"])])
        log.info(f"{path}: {len(names)} detections -> {out_dir / (path.stem + '.png')}")
        written.append(out_dir / f"{path.stem}.png")
    return written


def predict_coco(module: DetectorModule, paths: list[Path], out_dir: Path, *, coco_gt: Path | None,
                 classes: Sequence[str], slicing: Slicing | None = None) -> Path:
    """One COCO results file, ``out_dir/predictions.json``, of every image's detections at its
    original size (sliced with ``slicing``). Ids: ``coco_gt``'s image of the same file name and category of the same
    name; without it images 1, 2, ... in the order given (listed in ``image_ids.json``) and
    classes 1, 2, ... in the plan's order."""
    import json

    from detplug.core.evaluate.coco_files import read_ground_truth, results_document

    if coco_gt is not None:
        _, by_file, category_ids = read_ground_truth(coco_gt)
        image_ids = {name: by_file.get(name, by_file.get(Path(name).name, 0)) for name in (p.name for p in paths)}
        missing = [name for name, ident in image_ids.items() if not ident]
        unknown = [name for name in classes if name not in category_ids]
        if missing or unknown:
            raise DataError(f"--coco-gt {coco_gt}: " + (f"has no image named {first_few(missing)}" if missing else
                            f"has no category named {first_few(unknown)}") + "; give the ground truth of these images")
    else:
        image_ids = {path.name: index for index, path in enumerate(paths, start=1)}
        category_ids = {name: index for index, name in enumerate(classes, start=1)}
    detections = []
    for path in paths:
        found = detect_image(module, read_image(path), slicing)
        detections.append(ImageDetections(image_id=path.name, boxes=found["boxes"],
                                          names=tuple(name.decode() for name in found["class_names"]),
                                          scores=found["scores"]))
    out = out_dir / "predictions.json"
    with writing("the COCO predictions", out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results_document(detections, image_ids, category_ids)))
        if coco_gt is None:
            (out_dir / "image_ids.json").write_text(json.dumps({str(ident): str(path) for path, ident in
                                                                 zip(paths, image_ids.values())}, indent=1))
    found_count = sum(len(found.names) for found in detections)
    log.info(f"wrote {found_count} detections of {len(paths)} images to {out}"
             + (f" (ids from {coco_gt})" if coco_gt else f" (image ids in {out_dir / 'image_ids.json'})"))
    return out


def export_saved_model(module: DetectorModule, directory: Path) -> Path:
    """A SavedModel whose ``serving_default`` takes uint8 images (B, H, W, 3) of any size."""
    if directory.exists() and any(directory.iterdir()):
        raise DataError(f"--export {directory}: the folder is not empty; give a new or empty folder")
    with writing("the SavedModel", directory):
        tf.saved_model.save(module, str(directory),
                            signatures={"serving_default": module.serve.get_concrete_function()})
    return directory
