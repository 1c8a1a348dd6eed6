"""Using a trained plan: --predict draws and writes KITTI results at the images' size,
--export writes a SavedModel that gives the same boxes without detplug, --evaluate and
--kitti-eval print AP tables and write JSON."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

pytestmark = pytest.mark.slow

#: Keep low-scoring boxes, so every image gives boxes to compare.
LOW_SCORES = ["--set", "evaluation.score_threshold=0.01"]


@pytest.fixture(scope="module")
def trained(learned, tmp_path_factory) -> dict[str, Path]:
    """The session's learned run (conftest.py), and two images of its synthetic sample
    resized to a wide and a tall shape, other than the model's input shape."""
    folder = tmp_path_factory.mktemp("use")
    images = folder / "images"
    images.mkdir()
    sample = sorted(next(learned["cache"].glob("synthetic/*/training/image_2")).glob("*.png"))[-2:]
    for path, (name, size) in zip(sample, (("wide", (90, 300)), ("tall", (120, 100)))):
        with Image.open(path) as image:
            image.convert("RGB").resize((size[1], size[0])).save(images / f"{name}.png")
    return {**learned, "images": images, "folder": folder}

def use(trained: dict[str, Path], *arguments: str) -> subprocess.CompletedProcess:
    return run_cli("--plan", str(trained["plan"]), "--workdir", str(trained["workdir"]), "--cache-dir",
                   str(trained["cache"]), *LOW_SCORES, *arguments)


def kitti_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_training_evaluates_at_the_end_and_draws_a_validation_grid(trained):
    header = (trained["workdir"] / "history.csv").read_text().splitlines()[0].split(",")
    assert any(name.endswith("AP40") for name in header)
    assert (trained["workdir"] / "predictions" / "ep06.png").is_file()


def test_predict_draws_boxes_at_original_size_and_writes_kitti_result_files(trained):
    out = trained["folder"] / "predicted"
    result = use(trained, "--predict", str(trained["images"]), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    for name, size in (("wide", (300, 90)), ("tall", (100, 120))):
        with Image.open(out / f"{name}.png") as drawn:
            assert drawn.size == size
        lines = kitti_lines(out / f"{name}.txt")
        assert lines and all(len(line) == 16 for line in lines)
        assert all(line[0] in ("Car", "Pedestrian", "Cyclist") for line in lines)
        boxes = np.array([[float(v) for v in line[4:8]] for line in lines])
        assert (boxes[:, [0, 2]] <= size[0]).all() and (boxes[:, [1, 3]] <= size[1]).all() and (boxes >= 0).all()


def test_exported_savedmodel_gives_the_predict_boxes_in_a_process_without_detplug(trained):
    export_dir, out = trained["folder"] / "exported", trained["folder"] / "predicted_for_export"
    assert use(trained, "--export", str(export_dir)).returncode == 0
    assert use(trained, "--predict", str(trained["images"] / "wide.png"), "--out", str(out)).returncode == 0
    code = (
        "import json, sys\n"
        "import numpy as np, tensorflow as tf\n"
        "from PIL import Image\n"
        f"served = tf.saved_model.load({str(export_dir)!r}).signatures['serving_default']\n"
        f"pixels = np.asarray(Image.open({str(trained['images'] / 'wide.png')!r}).convert('RGB'))\n"
        "found = served(images=tf.constant(pixels[None]))\n"
        "count = int(found['num_detections'][0])\n"
        "assert not any(name.startswith('detplug') for name in sys.modules)\n"
        "print(json.dumps({'boxes': found['boxes'][0][:count].numpy().tolist(),\n"
        "                  'scores': found['scores'][0][:count].numpy().tolist()}))\n"
    )
    # Run from an empty folder with the plain environment: the SavedModel alone, no detplug.
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=trained["folder"],
                            env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    served = json.loads(loaded.stdout.strip().splitlines()[-1])
    predicted = kitti_lines(out / "wide.txt")
    assert len(served["boxes"]) == len(predicted) > 0
    assert np.allclose(served["boxes"], [[float(v) for v in line[4:8]] for line in predicted], atol=0.01)
    assert np.allclose(served["scores"], [float(line[15]) for line in predicted], atol=1e-4)


def test_evaluate_prints_ap_per_class_and_difficulty_and_writes_json(trained):
    report = trained["folder"] / "evaluation.json"
    result = use(trained, "--evaluate", "--checkpoint", "ep06", "--json", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Car" in result.stdout and "moderate" in result.stdout
    metrics = json.loads(report.read_text())["metrics"]
    assert any(key.endswith("AP40") for key in metrics)
    assert all(value is None or 0 <= value <= 1 for value in metrics.values())  # None: no such truth
    # The PR picture goes beside the JSON, one line per class with a curve, drawn from the JSON's curves.
    picture = trained["folder"] / "pr_curve.png"
    assert f"wrote {picture}" in result.stdout
    with Image.open(picture) as drawn:
        assert drawn.format == "PNG" and drawn.size == (700, 500)
    curves = json.loads(report.read_text())["curves"]
    assert curves["Car"]["difficulty"] == "moderate" and curves["Car"]["ap"] == metrics["Car/moderate/AP40"]

    # What was scored is written as COCO JSON; scored again from those files, with no model,
    # it gives the same figures, which are the in-training evaluation's of epoch 6.
    predictions, truth = trained["folder"] / "coco_predictions.json", trained["folder"] / "coco_ground_truth.json"
    again = trained["folder"] / "again" / "evaluation.json"
    again.parent.mkdir()
    rescored = use(trained, "--evaluate", "--results", str(predictions), "--coco-gt", str(truth), "--json", str(again))
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    assert f"scored against {truth} (40 images), no model" in rescored.stdout
    assert json.loads(again.read_text())["metrics"] == pytest.approx(metrics, rel=1e-9, nan_ok=True)
    with open(trained["workdir"] / "history.csv", newline="") as handle:
        in_training = list(csv.DictReader(handle))[-1]
    assert float(in_training["mAP_moderate_AP40"]) == pytest.approx(metrics["mAP_moderate_AP40"], rel=1e-5)

    # --predict --format coco on two of those images, ids from that ground truth, at the
    # evaluation threshold: the same detections as the evaluation's for them.
    document = json.loads(truth.read_text())
    chosen = document["images"][:2]
    sample = next(trained["cache"].glob("synthetic/*/training/image_2"))
    for image in chosen:  # each image's original size, as COCO tools read it
        with Image.open(sample / image["file_name"]) as original:
            assert (image["width"], image["height"]) == original.size
    out = trained["folder"] / "coco"
    predicted = use(trained, "--predict", *(str(sample / image["file_name"]) for image in chosen),
                    "--format", "coco", "--coco-gt", str(truth), "--out", str(out))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    found = json.loads((out / "predictions.json").read_text())
    scored = [r for r in json.loads(predictions.read_text()) if r["image_id"] in {i["id"] for i in chosen}]
    assert {r["image_id"] for r in found} <= {i["id"] for i in chosen} and len(found) == len(scored) > 0
    assert sorted(r["score"] for r in found) == pytest.approx(sorted(r["score"] for r in scored), abs=0.02)


def test_evaluate_an_unknown_checkpoint_names_the_available_ones(trained):
    result = use(trained, "--evaluate", "--checkpoint", "ep99")
    assert result.returncode == 2 and "no checkpoint 'ep99'" in result.stderr and "ep05" in result.stderr


def test_predict_a_missing_image_is_one_clear_error(trained):
    result = use(trained, "--predict", str(trained["folder"] / "nope.png"))
    assert result.returncode == 2 and "no such image or folder" in result.stderr
