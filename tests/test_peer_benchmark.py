"""The side-by-side benchmark against Ultralytics (benchmarks/peers/ultralytics.py) stays
runnable without Ultralytics: its data generator, its COCO scoring and its detplug half,
on a tiny size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / "ultralytics.py"


def load_benchmark():
    """The script as a module: benchmarks/ is a folder of scripts, and this one's name is
    its peer's, so it is loaded by path under another name."""
    spec = importlib.util.spec_from_file_location("peer_ultralytics_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shapes_boxes_are_the_pixels_drawn() -> None:
    bench = load_benchmark()
    rng = np.random.default_rng(1)
    for kind in range(len(bench.CLASS_NAMES)):
        image = Image.new("RGB", (80, 60))
        box = bench.draw_shape(image, rng, kind, (40.0, 30.0), 30.0)
        rows, columns = np.nonzero(np.asarray(image).any(axis=-1))
        assert box == (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1), bench.CLASS_NAMES[kind]


def test_dataset_layout_and_scoring(tmp_path: Path) -> None:
    bench = load_benchmark()
    summary = bench.write_dataset(tmp_path / "a", train=6, val=3, source_size=(96, 64), seed=3)
    again = bench.write_dataset(tmp_path / "b", train=6, val=3, source_size=(96, 64), seed=3)
    assert summary["objects"] == again["objects"] > 9
    for split, count in (("train", 6), ("val", 3)):
        images = sorted((tmp_path / "a" / "images" / split).iterdir())
        labels = sorted((tmp_path / "a" / "labels" / split).iterdir())
        assert [p.stem for p in images] == [p.stem for p in labels] and len(images) == count
        assert [p.read_text() for p in labels] == [(tmp_path / "b" / "labels" / split / p.name).read_text()
                                                  for p in labels]
        with Image.open(images[0]) as image:
            assert image.size == (96, 64)
    data_yaml = (tmp_path / "a" / "data.yaml").read_text()
    assert f"path: {tmp_path / 'a'}\ntrain: images/train\nval: images/val\n" in data_yaml
    assert "  0: disc\n  1: square\n  2: triangle\n  3: cross\n" in data_yaml
    for item in bench.read_labels(tmp_path / "a", "train"):
        for _, x1, y1, x2, y2 in item["boxes"]:
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 64

    # The ground truth scored as detections is perfect; one box off by half its size is not.
    truth = bench.coco_ground_truth(tmp_path / "a", tmp_path / "gt.json")
    found = [{"stem": item["stem"], "class": c, "box": [x1, y1, x2, y2], "score": 1.0}
             for item in bench.read_labels(tmp_path / "a", "val") for c, x1, y1, x2, y2 in item["boxes"]]
    perfect = bench.coco_scores(truth, bench.coco_results(truth, found, tmp_path / "perfect.json"))
    assert perfect["ap"] == pytest.approx(1.0) and perfect["ap50"] == pytest.approx(1.0)
    x1, y1, x2, y2 = found[0]["box"]
    found[0]["box"] = [x1 + (x2 - x1) / 2, y1, x2 + (x2 - x1) / 2, y2]
    shifted = bench.coco_scores(truth, bench.coco_results(truth, found, tmp_path / "shifted.json"))
    assert shifted["ap50"] < 1.0
    empty = bench.coco_scores(truth, bench.coco_results(truth, [], tmp_path / "empty.json"))
    assert empty["ap50"] == 0.0


@pytest.mark.slow(seconds=55)
def test_detplug_half_runs_without_ultralytics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole script at a tiny size: 16 + 8 images of 96x64, 1 epoch at 64x64, widths
    0.125, the eager trainer (a step or two cost less than tracing one)."""
    bench = load_benchmark()
    out = tmp_path / "bench"
    assert bench.main(["--out", str(out), "--train", "16", "--val", "8", "--source-size", "96", "64",
                       "--imgsz", "64", "--epochs", "1", "--batch", "8", "--width", "0.125",
                       "--trainer", "eager"]) == 0
    printed = capsys.readouterr().out
    assert "Ultralytics half skipped: no --ultralytics-python given" in printed
    report = json.loads((out / "results.json").read_text())
    assert report["ultralytics_skipped"] and report["stray_downloads"] == []
    (entry,) = report["entries"]
    assert entry["tool"] == "detplug" and entry["epochs"] == 1 and entry["train_images"] == 16
    assert entry["params"] > 100_000 and 0 < entry["gflops"] < 1
    assert entry["train_images_per_s"] > 0 and entry["train_wall_s"] > 0
    assert entry["timing"]["train"]["load_mean"] >= 0
    assert 0 <= entry["coco"]["ap50"] <= 1 and entry["coco"]["detections"] > 0
    assert entry["ap50_per_train_minute"] == pytest.approx(entry["coco"]["ap50"] / (entry["train_wall_s"] / 60),
                                                           abs=1e-4)
    assert entry["own_eval_after_training"].keys() >= {"mAP", "AP50"}
    # Detections are in the original images' pixels (96x64), not the 64x64 input's.
    results = json.loads((out / "detections_detplug.json").read_text())
    assert all(0 <= x and 0 <= y and x + w <= 96.01 and y + h <= 64.01 for x, y, w, h in (r["bbox"] for r in results))
    assert max(x + w for x, y, w, h in (r["bbox"] for r in results)) > 64
    assert "detplug" in printed.splitlines()[-2]


def test_means_over_seeds_per_tool_and_model() -> None:
    bench = load_benchmark()

    def entry(tool: str, model: str, seed: int, ap50: float, ap: float, wall: float) -> dict:
        return {"tool": tool, "model": model, "train_seed": seed, "coco": {"ap50": ap50, "ap": ap},
                "train_wall_s": wall}

    means = bench.seed_means([entry("detplug", "template small", 0, 0.30, 0.08, 100),
                              entry("ultralytics", "yolov8n.yaml", 0, 0.16, 0.05, 300),
                              entry("detplug", "template small", 1, 0.26, 0.07, 110),
                              entry("ultralytics", "yolov8n.yaml", 1, 0.18, 0.04, 320)])
    assert [(m["tool"], m["model"], m["seeds"], m["ap50_each"]) for m in means] == [
        ("detplug", "template small", [0, 1], [0.30, 0.26]), ("ultralytics", "yolov8n.yaml", [0, 1], [0.16, 0.18])]
    assert means[0]["tile_ap50"] == pytest.approx(0.28) and means[0]["tile_ap"] == pytest.approx(0.075)
    assert means[1]["train_wall_s"] == pytest.approx(310) and "scene_ap50" not in means[1]
    assert "0.300 0.260" in bench.means_table(means)
