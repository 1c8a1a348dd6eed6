"""The real-data recipe's folders (benchmarks/real_data.py) and the peer benchmark's --data
mode: the VOC devkit and the YOLO tiles rebuilt from a wheel, ignore regions scored as COCO
crowds, and detplug's plan for such a folder. A tiny wheel the test writes stands in for
deepforest's (same member names, small scenes); no TensorFlow, no training."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from detplug.core.data.tiles import tiles_needed

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# Scene stem -> (width, height), boxes (x1, y1, x2, y2) and their VOC labels.
SCENES = {
    "2019_YELL_2_528000_4978000_image_crop2": ((96, 64), [(4, 4, 20, 20), (40, 10, 56, 30), (70, 40, 90, 60)],
                                              ["Tree"] * 3),
    "2019_YELL_2_541000_4977000_image_crop": ((80, 48), [(10, 10, 26, 26), (36, 20, 60, 44)], ["Tree"] * 2),
    "OSBS_029": ((48, 48), [(8, 8, 24, 24)], ["Tree"]),
    "SOAP_061": ((48, 48), [(4, 4, 14, 14), (30, 30, 44, 44)], ["Alive", "Dead"]),
}


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def voc_xml(stem: str, size: tuple[int, int], boxes: list, labels: list[str]) -> str:
    objects = "".join(f"<object><name>{label}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                      f"<ymax>{y2}</ymax></bndbox></object>" for (x1, y1, x2, y2), label in zip(boxes, labels))
    return (f"<annotation><filename>{stem}.png</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "deepforest-2.1.0-py3-none-any.whl"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for stem, (size, boxes, labels) in SCENES.items():
            png = BytesIO()
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(png, format="PNG")
            archive.writestr(f"deepforest/data/{stem}.png", png.getvalue())
            archive.writestr(f"deepforest/data/{stem}.xml", voc_xml(stem, size, boxes, labels))
    return path


def test_voc_devkit_and_tiles_from_the_wheel(tmp_path: Path, wheel: Path) -> None:
    real_data = load(BENCHMARKS / "real_data.py", "real_data_benchmark")
    summary = real_data.build(tmp_path / "out", wheel, tile=32, overlap=0.25, min_area_ratio=0.5)
    voc = tmp_path / "out" / "voc"
    assert (voc / "ImageSets/Main/val.txt").read_text() == "2019_YELL_2_541000_4977000_image_crop\n"
    assert len((voc / "ImageSets/Main/train.txt").read_text().split()) == 3
    soap = (voc / "Annotations/SOAP_061.xml").read_text()
    assert soap.count("<name>Tree</name>") == 2 and "Alive" not in soap and "Dead" not in soap
    with Image.open(voc / "JPEGImages/2019_YELL_2_528000_4978000_image_crop2.jpg") as image:
        assert image.size == (96, 64)

    yolo = tmp_path / "out" / "yolo"
    assert "names:\n  0: Tree\n" in (yolo / "data.yaml").read_text()
    for split in ("train", "val"):
        stems = {stem for stem, scene in zip(SCENES, real_data.SCENES) if scene.split == split}
        assert summary["tiles"][split]["tiles"] == sum(tiles_needed(SCENES[s][0][1], SCENES[s][0][0], 32, 0.25)
                                                       for s in stems)
        images = sorted(p.stem for p in (yolo / "images" / split).iterdir())
        assert images == sorted(p.stem for p in (yolo / "labels" / split).iterdir())
        assert images == sorted(p.stem for p in (yolo / "ignore" / split).iterdir())

    # The val scene (80x48) in tiles of 32 stepping by 24: columns at 0, 24, 48; rows at 0, 16.
    # Its box (36, 20, 60, 44) has 12x24 of its 24x24 inside the tile at (16, 48): half, kept;
    # and 12x12 inside the tile at (0, 48): a quarter, an ignore region there.
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    by_stem = {item["stem"]: item for item in bench.read_labels(yolo, "val")}
    half = by_stem["2019_YELL_2_541000_4977000_image_crop@16_48"]
    assert [[round(v, 3) for v in box] for box in half["boxes"]] == [[0, 0.0, 4.0, 12.0, 28.0]]
    assert half["ignored"] == []
    quarter = by_stem["2019_YELL_2_541000_4977000_image_crop@0_48"]
    assert quarter["boxes"] == [] and [[round(v, 3) for v in box] for box in quarter["ignored"]] == [
        [0, 0.0, 20.0, 12.0, 32.0]]


def test_ignore_regions_are_crowds_in_the_score(tmp_path: Path, wheel: Path) -> None:
    """A detection on a crown a tile cuts neither hits nor misses; without the ignore files
    it is a false positive and the AP falls."""
    real_data = load(BENCHMARKS / "real_data.py", "real_data_benchmark")
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    real_data.build(tmp_path / "out", wheel, tile=32, overlap=0.25, min_area_ratio=0.5)
    yolo = tmp_path / "out" / "yolo"
    items = bench.read_labels(yolo, "val")
    found = [{"stem": item["stem"], "class": 0, "box": box[1:], "score": score}
             for item in items for boxes, score in ((item["boxes"], 0.5), (item["ignored"], 0.9)) for box in boxes]
    assert any(item["ignored"] for item in items) and any(item["boxes"] for item in items)
    truth = bench.coco_ground_truth(yolo, tmp_path / "gt.json", names=bench.class_names(yolo))
    assert json.loads(truth.read_text())["categories"] == [{"id": 1, "name": "Tree"}]
    scored = bench.coco_scores(truth, bench.coco_results(truth, found, tmp_path / "found.json"))
    assert scored["ap50"] == pytest.approx(1.0)
    for path in (yolo / "ignore" / "val").iterdir():
        path.unlink()
    plain = bench.coco_ground_truth(yolo, tmp_path / "plain.json", names=("Tree",))
    assert bench.coco_scores(plain, bench.coco_results(plain, found, tmp_path / "again.json"))["ap50"] < 0.9


def test_detplug_plan_for_a_data_folder_is_the_templates(tmp_path: Path, wheel: Path) -> None:
    """--data's plan: the template's model and recipe, k-means anchors, this folder's class,
    and it passes the static check (pure Python)."""
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.registry import Registry

    real_data = load(BENCHMARKS / "real_data.py", "real_data_benchmark")
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    real_data.build(tmp_path / "out", wheel, tile=32, overlap=0.25, min_area_ratio=0.5)
    yolo = tmp_path / "out" / "yolo"
    assert bench.folder_summary(yolo)["classes"] == ["Tree"]
    anchors = bench.anchor_table(yolo, 64)
    text = bench.detplug_template_plan(yolo, template="small", image_size=64, batch=4, epochs=3, anchors=anchors)
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(text)
    document = tomllib.loads(text)
    with open(BENCHMARKS.parent / "plans" / "templates" / "small.toml", "rb") as handle:
        template = tomllib.load(handle)
    assert document["model"]["backbone"] == template["model"]["backbone"]
    assert document["model"]["anchors"] == {str(stride): pairs for stride, pairs in anchors.items()}
    assert document["datasets"]["data"]["names"] == ["Tree"] and document["periods"][0]["epochs"] == 3
    assert document["evaluation"]["score_threshold"] == bench.SCORE_THRESHOLD
    plan = load_plan(plan_file)
    static_check(plan, resolve_components(plan, Registry.discover()))


def test_data_folder_without_splits_is_one_sentence(tmp_path: Path) -> None:
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    (tmp_path / "images" / "train").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"no images/val; give a YOLO folder with images/train"):
        bench.folder_summary(tmp_path)


@pytest.mark.slow(seconds=20)  # TensorFlow's import, for detplug's NMS: 15 s at a load of 8, 25 s at 10
def test_tile_detections_merge_into_whole_scenes(tmp_path: Path, wheel: Path) -> None:
    """One crown seen by two overlapping tiles (whole by one, cut by the other) is one
    detection in its scene, in the scene's pixels; the tiles' detections of every crown score AP50 1 on the whole scene."""
    real_data = load(BENCHMARKS / "real_data.py", "real_data_benchmark")
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    real_data.build(tmp_path / "out", wheel, tile=32, overlap=0.25, min_area_ratio=0.5)
    scene = "2019_YELL_2_541000_4977000_image_crop"
    assert real_data.tile_origin(f"{scene}@16_24") == (scene, 16, 24)
    with pytest.raises(ValueError, match="is not a tile's name"):
        real_data.tile_origin(scene)
    # Crown (10, 10, 26, 26), whole in the tile at (0, 0) and its lower part in the tile at
    # (16, 0): one detection (IoU 0.625 in the scene); crown (36, 20, 60, 44) is seen from the
    # tile at (16, 24), 24 columns right and 16 rows down, and its upper right part from the
    # tile at (0, 24): IoU 0.42 with the whole, below NMS's 0.45, but wholly inside it, so it
    # goes as sliced prediction's merge drops another window's part of an object.
    found = [{"stem": f"{scene}@0_0", "class": 0, "box": [10, 10, 26, 26], "score": 0.9},
             {"stem": f"{scene}@16_0", "class": 0, "box": [10, 0, 26, 10], "score": 0.6},
             {"stem": f"{scene}@16_24", "class": 0, "box": [12, 4, 36, 28], "score": 0.8},
             {"stem": f"{scene}@0_24", "class": 0, "box": [12, 20, 32, 32], "score": 0.5}]
    merged = real_data.merge_tiles(found, {scene: (80, 48)})
    assert [(m["stem"], [round(v, 3) for v in m["box"]], round(m["score"], 3)) for m in merged] == [
        (scene, [10.0, 10.0, 26.0, 26.0], 0.9), (scene, [36.0, 20.0, 60.0, 44.0], 0.8)]
    truth = real_data.scene_ground_truth(tmp_path / "out" / "voc", tmp_path / "truth.json")
    scored = bench.score_whole_scenes(found, truth, tmp_path, "test")
    assert scored["ap50"] == pytest.approx(1.0) and scored["detections"] == 2


def test_scores_count_more_than_100_detections_when_asked(tmp_path: Path) -> None:
    """A scene of 150 crowns found exactly: COCO's 100 detections per image cap the recall,
    max_detections lifts the cap for AP50 and AP (0.50:0.95) alike."""
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    boxes = [[x * 20.0, y * 20.0, x * 20.0 + 16, y * 20.0 + 16] for x in range(15) for y in range(10)]
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "scene.jpg", "width": 300, "height": 200}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0} for i, (x1, y1, x2, y2) in enumerate(boxes)],
        "categories": [{"id": 1, "name": "Tree"}]}))
    found = [{"stem": "scene", "class": 0, "box": box, "score": 1.0 - i / 1000} for i, box in enumerate(boxes)]
    results = bench.coco_results(truth, found, tmp_path / "found.json")
    capped = bench.coco_scores(truth, results)
    assert capped["ap50"] == pytest.approx(100 / 150, abs=0.01) and capped["ap"] == pytest.approx(capped["ap50"])
    whole = bench.coco_scores(truth, results, max_detections=3000)
    assert whole["ap50"] == pytest.approx(1.0) and whole["ap"] == pytest.approx(1.0)


@pytest.mark.slow(seconds=45)
def test_voc_mode_scores_detplugs_sliced_prediction_of_the_whole_scenes(tmp_path: Path, wheel: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--data TILES --voc DEVKIT at a tiny size (1 epoch on 32 px tiles, widths 0.125, the eager
    trainer): beside the tile AP, detplug's ``run.py predict --tile`` on the whole val scene,
    cut on the grid of the devkit's summary.json, scored against the scene's crowns."""
    real_data = load(BENCHMARKS / "real_data.py", "real_data_benchmark")
    bench = load(BENCHMARKS / "peers" / "ultralytics.py", "peer_ultralytics_benchmark")
    real_data.build(tmp_path / "out", wheel, tile=32, overlap=0.25, min_area_ratio=0.5)
    voc = tmp_path / "out" / "voc"
    assert bench.scene_tiling(voc, 320) == (32, 0.25)
    sets = [item for value in ("model.backbone.width=0.125", "model.head.width=0.125", "train.trainer='eager'")
            for item in ("--detplug-set", value)]
    out = tmp_path / "bench"
    assert bench.main(["--data", str(tmp_path / "out" / "yolo"), "--voc", str(voc), "--out", str(out),
                       "--imgsz", "32", "--epochs", "1", "--batch", "4", "--models", *sets]) == 0
    (entry,) = json.loads((out / "results.json").read_text())["entries"]
    assert entry["coco_sliced_scenes"]["detections"] > 0 and 0 <= entry["coco_sliced_scenes"]["ap50"] <= 1
    sliced = json.loads((out / "detections_detplug_sliced_scenes.json").read_text())
    # The val scene is 80x48: boxes in its pixels, some past the first 32 px tile.
    assert all(x >= 0 and y >= 0 and x + w <= 80.01 and y + h <= 48.01 for x, y, w, h in (r["bbox"] for r in sliced))
    assert max(x + w for x, y, w, h in (r["bbox"] for r in sliced)) > 32
    assert "predicting 1 image sliced: 32 px tiles, overlap 0.25" in (out / "detplug" / "predict_scenes.log").read_text()
    assert "sliced AP50" in capsys.readouterr().out
