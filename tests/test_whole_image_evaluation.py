"""A tiled validation split is scored on its whole source images through sliced prediction,
and says so; ``[evaluation] on = "tiles"`` scores the tile records. The prepared data is the
shared finished run's, its manifest given the tiling and source images a tiled conversion
lists (core/data/slicing.py), with two larger images the test writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from PIL import Image

from detplug.core.data.prepared import PreparedData, read_prepared
from detplug.core.data.slicing import Slicing, prepared_slicing, source_images
from detplug.core.errors import DataError

#: Two images larger than the model's 64x96 input, with their ground truth.
SOURCES = {"wide": ((80, 150), [[10, 12, 40, 50], [100, 30, 140, 70]], [0, -1]),
           "tall": ((130, 90), [[20, 60, 70, 120]], [1])}


def tiled(prepared: PreparedData, folder: Path) -> PreparedData:
    """``prepared`` as a tiled conversion lists it: 48 px tiles, its val split's source images."""
    rng = np.random.default_rng(0)
    entries = []
    for name, ((height, width), boxes, classes) in SOURCES.items():
        Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(folder / f"{name}.png")
        entries.append({"key": name, "image": f"{name}.png", "size": [height, width], "boxes": boxes,
                        "classes": classes, "tiles": []})
    manifest = json.loads(json.dumps(prepared.manifest))
    manifest["source"]["path"] = str(folder)
    manifest["tiles"] = {"size": 48, "overlap": 0.2, "min_area_ratio": 0.5, "images": {"train": [], "val": entries}}
    return PreparedData(prepared.directory, manifest)


@pytest.fixture(scope="module")
def evaluation(finished, tmp_path_factory) -> dict[str, Any]:
    from detplug.core.cli.predict import load_trained_model
    from detplug.core.evaluate.collect import plan_evaluator
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.registry import Registry

    plan, workdir, cache = finished
    loaded = load_plan(plan, overrides=['evaluation.evaluator="coco_map"'])
    model, view = load_trained_model(static_check(loaded, resolve_components(loaded, Registry.discover())),
                                     workdir / "checkpoints")
    folder = tmp_path_factory.mktemp("whole_images")
    prepared = read_prepared(next(cache.glob("**/manifest.json")).parent)
    return {"model": model, "view": view, "evaluator": plan_evaluator(view), "untiled": prepared,
            "tiled": tiled(prepared, folder), "folder": folder}


@pytest.mark.slow(seconds=10)  # loading the model and tracing it, once for the module
def test_a_tiled_val_split_is_scored_on_its_whole_images_sliced_and_says_so(evaluation):
    from detplug.core.evaluate.whole_images import evaluate_split, evaluation_subject
    from detplug.core.model.inference import batch_detector
    from detplug.core.model.sliced import predict_sliced

    view, tiled, out = evaluation["view"], evaluation["tiled"], evaluation["folder"] / "scored"
    assert evaluation_subject(tiled, view.plan.evaluation) == "2 whole val images (sliced: 48 px tiles, overlap 0.2)"
    result = evaluate_split(evaluation["model"], view, evaluation["evaluator"], tiled,
                            grid_path=out / "grid.png", coco_folder=out)
    assert result.evaluator == "coco_map"
    truth = json.loads((out / "coco_ground_truth.json").read_text())
    sizes = {image["file_name"]: (image["height"], image["width"]) for image in truth["images"]}
    assert sizes == {name: size for name, (size, _, _) in SOURCES.items()}
    # The detections scored are sliced prediction's on each whole image, in its pixels.
    settings = view.plan.evaluation
    detect = batch_detector(evaluation["model"], view.chain.image, settings.max_detections, settings.iou_threshold,
                            settings.eval_score_threshold)
    image_ids = {image["id"]: image["file_name"] for image in truth["images"]}
    scored = json.loads((out / "coco_predictions.json").read_text())
    for name in SOURCES:
        pixels = np.asarray(Image.open(evaluation["folder"] / f"{name}.png").convert("RGB"))
        expected = predict_sliced(pixels, detect, view.chain.image, Slicing(48, 0.2),
                                  iou_threshold=settings.iou_threshold, max_detections=settings.max_detections)
        boxes = np.array([row["bbox"] for row in scored if image_ids[row["image_id"]] == name]).reshape(-1, 4)
        assert len(boxes) == len(expected["boxes"]) > 0
        np.testing.assert_allclose(boxes[:, :2], expected["boxes"][:, :2], atol=0.01)
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (2 * 96, 64)  # two images, each shrunk into the 64x96 input


def test_evaluation_on_tiles_scores_the_tile_records(evaluation):
    from detplug.core.evaluate.whole_images import evaluate_split, evaluation_subject

    view, tiled, out = evaluation["view"], evaluation["tiled"], evaluation["folder"] / "tiles"
    on_tiles = attrs.evolve(view, plan=attrs.evolve(view.plan, evaluation=attrs.evolve(view.plan.evaluation,
                                                                                       on="tiles")))
    records = tiled.images("val")
    assert evaluation_subject(tiled, on_tiles.plan.evaluation) == f"{records} val tiles ([evaluation] on = \"tiles\")"
    evaluate_split(evaluation["model"], on_tiles, evaluation["evaluator"], tiled, coco_folder=out)
    assert len(json.loads((out / "coco_ground_truth.json").read_text())["images"]) == records


def test_an_untiled_split_has_no_source_images_and_is_scored_as_before(evaluation):
    from detplug.core.evaluate.whole_images import evaluation_subject

    untiled = evaluation["untiled"]
    assert prepared_slicing(untiled) is None and source_images(untiled, "val") is None
    assert evaluation_subject(untiled, evaluation["view"].plan.evaluation) is None


def test_a_missing_source_image_is_one_sentence_naming_it_and_the_way_out(evaluation, tmp_path):
    manifest = json.loads(json.dumps(evaluation["tiled"].manifest))
    manifest["source"]["path"] = str(tmp_path)
    with pytest.raises(DataError, match=r"wide.png is gone \(2 of 2 missing\); put the source back at .*"
                                        r"or set \[evaluation\] on = \"tiles\""):
        source_images(PreparedData(evaluation["tiled"].directory, manifest), "val")
    manifest["tiles"]["images"]["val"] = []
    with pytest.raises(DataError, match="is tiled but lists no source_images of its val split"):
        source_images(PreparedData(evaluation["tiled"].directory, manifest), "val")
