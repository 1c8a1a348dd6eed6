"""Using a trained plan: load its weights, draw predictions on images, export a SavedModel."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from detplug.core.data.images import IMAGE_SUFFIXES, read_rgb
from detplug.core.disk import writing
from detplug.core.errors import CheckpointError, DataError
from detplug.core.evaluate.contract import ImageDetections
from detplug.core.evaluate.drawing import draw_boxes
from detplug.core.evaluate.kitti_files import write_kitti_results
from detplug.core.model.assemble import build_model
from detplug.core.model.inference import DetectorModule, valid_rows
from detplug.core.plan.check import CheckedPlan
from detplug.core.train.checkpoints import PREFIX, CheckpointStore


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


def predict_images(module: DetectorModule, paths: list[Path], out_dir: Path) -> list[Path]:
    """For each image: ``<stem>.png`` with the boxes drawn at its original size, and a
    KITTI-format result file ``<stem>.txt`` (16 columns, the score last)."""
    with writing("the predictions folder", out_dir.parent):
        out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        pixels = read_image(path)
        found = valid_rows(module.serve(tf.constant(pixels[None])))
        names = [name.decode() for name in found["class_names"]]
        drawn = draw_boxes(Image.fromarray(pixels), found["boxes"], names, scores=found["scores"],
                           classes=found["classes"])
        with writing(f"the predictions for {path.name}", out_dir):
            drawn.save(out_dir / f"{path.stem}.png")
            write_kitti_results(out_dir, [ImageDetections(
                image_id=path.stem, boxes=found["boxes"], names=tuple(names), scores=found["scores"])])
        print(f"{path}: {len(names)} detections -> {out_dir / (path.stem + '.png')}")
        written.append(out_dir / f"{path.stem}.png")
    return written


def export_saved_model(module: DetectorModule, directory: Path) -> Path:
    """A SavedModel whose ``serving_default`` takes uint8 images (B, H, W, 3) of any size."""
    if directory.exists() and any(directory.iterdir()):
        raise DataError(f"--export {directory}: the folder is not empty; give a new or empty folder")
    with writing("the SavedModel", directory):
        tf.saved_model.save(module, str(directory),
                            signatures={"serving_default": module.serve.get_concrete_function()})
    return directory
