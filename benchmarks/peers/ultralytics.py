"""detplug against Ultralytics, side by side, on one YOLO dataset: synthetic, or a folder of one's own.

    python benchmarks/peers/ultralytics.py [--ultralytics-python /tmp/ultra/bin/python]
        [--train 240] [--val 80] [--source-size 384 288] [--imgsz 256] [--epochs 10] [--batch 16]
        [--models yolov8n.yaml yolov3-tinyu.yaml] [--out runs/peer_ultralytics] [--json FILE]
    python benchmarks/peers/ultralytics.py --data runs/real_data/yolo [--voc runs/real_data/voc]
        [--detplug-model small] [--imgsz 320] [--epochs 30] [--batch 8] ...

With ``--data FOLDER`` (a YOLO folder with ``images/{train,val}``, ``labels/`` and
``data.yaml``, e.g. the real aerial tiles benchmarks/real_data.py writes) step 1 is skipped:
both tools read that folder, detplug's plan is the one ``run.py train --data FOLDER --model
TEMPLATE`` writes (``--detplug-model``, default ``small``; anchors fitted as below), and
boxes in ``ignore/{split}/`` (same format) are COCO crowd regions for the scorer. With
``--voc DEVKIT`` (the devkit the tiles were cut from) each tool's tile detections are also
moved into their val scenes, merged as sliced prediction merges windows, and scored against
the whole scenes ("scene AP"); and detplug predicts the whole val scenes as a user deploys
it, ``run.py predict --tile`` on the scene images ("sliced AP").

1. Data: a seeded generator (numpy + Pillow) draws shapes of four classes (disc, square,
   triangle, cross; any colour, rotated) on textured backgrounds with distracting strokes,
   and writes them in the standard YOLO layout, ``images/{train,val}``,
   ``labels/{train,val}`` (``class cx cy w h``, normalised) and ``data.yaml`` (path, train,
   val, names). Each box is the exact pixel extent of its shape's mask. Both tools read
   this one folder: detplug through its ``yolo_txt`` dataset, Ultralytics through data.yaml.
2. Training, one after the other in this one run, the 1-minute load average sampled
   beside each: detplug's small YOLOv3 (kitti_simple's model, darknet53 width 0.25 depth
   0.34 + yolov3_fpn width 0.25, and its [train] recipe; anchors fitted by k-means to the
   training boxes, as ``run.py --anchors --write`` would; loss gains YOLOv5's for this
   input size and class count), then each Ultralytics model from its yaml (random init,
   ``pretrained=False``, ``amp=False``). Same images, input size, batch and epochs.
3. Detections on the val images at their original size: detplug's ``run.py --predict``
   (KITTI-format result files, at ``[evaluation] score_threshold`` = 0.001, which the plan
   sets), Ultralytics' ``model.predict(conf=0.001)``. Both become COCO results JSON and are
   scored against one COCO ground-truth JSON (written from the YOLO val labels) by the same
   pycocotools code, in this process.
4. A table and a JSON: parameters, GFLOPs per image at the input size, train images/s,
   training wall time and CPU time, COCO AP50 and AP, and AP50 per training wall minute
   ("per CPU-minute" on this machine's cores) and per minute of CPU time used.

Each half runs in its own interpreter: detplug's as subprocesses of this script's own
(``run.py`` trains; this file's ``--worker detplug-predict`` runs ``run.py --predict`` and
counts parameters and GFLOPs), Ultralytics' as this file's ``--worker ultralytics-*``
under ``--ultralytics-python``, a separate venv (``python3 -m venv /tmp/ultra &&
/tmp/ultra/bin/pip install ultralytics pycocotools``). Without that option, or where that
interpreter cannot import ultralytics, the Ultralytics half is skipped with a message.
Nothing is installed or downloaded: Ultralytics runs with ``YOLO_OFFLINE=1``, its settings
(``sync`` off) in a config folder under ``--out``, ``plots=False`` (no Arial.ttf) and
``amp=False`` (no AMP check model); the run checks afterwards that no ``.pt`` or font
appeared that it did not write.

Counting. Parameters: trainable ones (the Keras model's trainable weights; torch's
``parameters()``, which hold no batch-norm statistics either). GFLOPs: one image's forward
pass at the input size, a multiply-add counted as 2: detplug by TensorFlow's profiler on
the graph of a concrete function of the model (as benchmarks/run.py counts it),
Ultralytics by its own ``model.info(imgsz=...)`` (thop, x2). Train images/s: the images of
the training epochs over their seconds, validation excluded (detplug's history.csv;
Ultralytics from on_train_epoch_start/end callbacks); all epochs (detplug's first holds
tracing the step), and ``steady``: the median epoch after the first. Training wall time:
anchor fitting (detplug) and the whole training process, import to exit, with everything
each tool does around the epochs (detplug: conversion to TFRecords, tracing, a val-loss
pass per epoch, a COCO evaluation after the last; Ultralytics: label caching, validation
after the last epoch and of best.pt). Threads: both get every core; Ultralytics on a CPU would otherwise set torch to
cores - 1 (one thread on 2 cores): ``--ultralytics-threads`` changes it. On a machine that
other jobs load past its cores, give torch one thread: its OpenMP threads wait for each
other by spinning, and two of them on 2 busy cores took 5 minutes for an epoch that one
thread took in 53 s (98 tiles of 320, batch 8, 1-minute load 11-12).

This file is named for its peer, so it takes its own folder off ``sys.path``: run as a
script, ``import ultralytics`` must find the package, not this file. It imports only the
standard library at module level, as the Ultralytics venv has no detplug; the test
(tests/test_peer_benchmark.py) loads it by path.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

REPO = HERE.parents[1]
RUN_PY = REPO / "run.py"
CLASS_NAMES = ("disc", "square", "triangle", "cross")
DEFAULT_MODELS = ("yolov8n.yaml", "yolov3-tinyu.yaml")
#: Scores down to this reach the COCO scorer from both tools: AP needs the whole curve.
SCORE_THRESHOLD = 0.001


# --------------------------------------------------------------------------- the data


def _texture(rng: Any, width: int, height: int) -> Any:
    """A background: low-frequency colour blotches, grain and a few strokes in random colours."""
    import numpy as np
    from PIL import Image, ImageDraw

    base = rng.uniform(50, 205, 3)
    coarse = np.clip(base + rng.normal(0, 40, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)), 0, 255)
    image = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(3, 14), (height, width, 1))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 8))):
        points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(int(rng.integers(2, 5)))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line(points, fill=colour, width=int(rng.integers(1, max(2, min(width, height) // 40))))
    return image


def _outline(kind: int, rng: Any, size: float) -> list[tuple[float, float]] | None:
    """The polygon of shape ``kind`` about (0, 0), ``size`` across, rotated; None for the disc."""
    import numpy as np

    if kind == 0:
        return None
    if kind == 1:  # a square or a not-too-long rectangle
        aspect = rng.uniform(0.7, 1.4)
        half_w, half_h = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
        points = np.array([(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)])
    elif kind == 2:  # a triangle, roughly equilateral
        angles = np.array([90.0, 210.0, 330.0]) + rng.uniform(-12, 12, 3)
        points = np.stack([np.cos(np.radians(angles)), np.sin(np.radians(angles))], 1) * size / 2
    else:  # a plus sign
        a, b = size / 2, size / 2 * rng.uniform(0.28, 0.4)
        points = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
                           (-a, b), (-a, -b), (-b, -b)])
    angle = math.radians(rng.uniform(0, 360))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [(float(x), float(y)) for x, y in points @ rotation.T]


def draw_shape(image: Any, rng: Any, kind: int, centre: tuple[float, float], size: float
                 ) -> tuple[int, int, int, int] | None:
    """Draw one shape; its exact box (x1, y1, x2, y2), pixel edges, from the mask of pixels it covers."""
    import colorsys

    import numpy as np
    from PIL import Image, ImageDraw

    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = centre
    outline = _outline(kind, rng, size)
    if outline is None:
        aspect = rng.uniform(0.65, 1.5)
        half_w, half_h = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
        draw.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=255)
    else:
        draw.polygon([(cx + x, cy + y) for x, y in outline], fill=255)
    box = mask.getbbox()
    if box is None:
        return None
    red, green, blue = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0))
    shade = np.asarray([red, green, blue], np.float32) * 255 + rng.normal(0, 10, (image.size[1], image.size[0], 1))
    image.paste(Image.fromarray(np.clip(shade, 0, 255).astype(np.uint8)), (0, 0), mask)
    return box


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def write_dataset(root: str | Path, *, train: int = 240, val: int = 80, source_size: tuple[int, int] = (384, 288),
                  seed: int = 0, max_objects: int = 6, object_scale: tuple[float, float] = (0.08, 0.4)
                  ) -> dict[str, Any]:
    """The synthetic YOLO folder (module docstring) at ``root``: ``train`` and ``val`` JPEG
    images of ``source_size`` (width, height) with one to ``max_objects`` shapes each, their
    sides ``object_scale`` of the image's short side. Deterministic for a seed. Returns
    its summary (counts, paths)."""
    import numpy as np

    root = Path(root).absolute()
    width, height = source_size
    rng = np.random.default_rng(seed)
    counts = {"objects": 0, "per_class": [0] * len(CLASS_NAMES)}
    for split, images in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(images):
            image = _texture(rng, width, height)
            boxes: list[tuple[int, int, int, int]] = []
            lines = []
            for _ in range(int(rng.integers(1, max_objects + 1))):
                for _attempt in range(20):  # a place where it hides no other shape
                    size = rng.uniform(*object_scale) * min(width, height)
                    centre = (rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2))
                    guess = (centre[0] - size / 2, centre[1] - size / 2, centre[0] + size / 2, centre[1] + size / 2)
                    if all(_iou(guess, other) < 0.05 for other in boxes):
                        break
                else:
                    continue
                kind = int(rng.integers(len(CLASS_NAMES)))
                box = draw_shape(image, rng, kind, centre, size)
                if box is None:
                    continue
                boxes.append(box)
                x1, y1, x2, y2 = box
                lines.append(f"{kind} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                             f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
                counts["objects"] += 1
                counts["per_class"][kind] += 1
            image.save(root / "images" / split / f"{index:05d}.jpg", quality=92)
            (root / "labels" / split / f"{index:05d}.txt").write_text("".join(line + "\n" for line in lines))
    names = "".join(f"  {index}: {name}\n" for index, name in enumerate(CLASS_NAMES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return {"root": str(root), "train": train, "val": val, "source_size": [width, height], "seed": seed,
            "classes": list(CLASS_NAMES), **counts}


def _yolo_boxes(label: Path, width: int, height: int) -> list[list[float]]:
    boxes = []
    for line in label.read_text().splitlines() if label.is_file() else []:
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            # clipped: the labels' six decimals may put an edge a hair outside the image
            boxes.append([int(c), max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height),
                          min(width, (cx + w / 2) * width), min(height, (cy + h / 2) * height)])
    return boxes


def read_labels(root: str | Path, split: str) -> list[dict[str, Any]]:
    """Each image of a split: stem, file, (width, height), boxes [class, x1, y1, x2, y2] in pixels,
    and ``ignored``: the boxes of ``ignore/SPLIT/STEM.txt`` (same format), regions where a
    detection is neither a hit nor a false positive (benchmarks/real_data.py writes them for
    objects that a tile cuts), empty where there is no such file."""
    from PIL import Image

    root = Path(root)
    images = []
    for path in sorted((root / "images" / split).iterdir()):
        with Image.open(path) as image:
            width, height = image.size
        images.append({"stem": path.stem, "file": path.name, "size": (width, height),
                       "boxes": _yolo_boxes(root / "labels" / split / f"{path.stem}.txt", width, height),
                       "ignored": _yolo_boxes(root / "ignore" / split / f"{path.stem}.txt", width, height)})
    return images


def class_names(root: str | Path) -> tuple[str, ...]:
    """The class names of a YOLO folder's data.yaml (``names:`` as a list or as ``id: name`` lines)."""
    import yaml

    path = Path(root) / "data.yaml"
    if not path.is_file():
        raise SystemExit(f"--data {root}: no data.yaml (path, train, val, names) in the folder")
    names = (yaml.safe_load(path.read_text()) or {}).get("names")
    if isinstance(names, dict):
        names = [names[key] for key in sorted(names, key=int)]
    if not names or not all(isinstance(name, str) for name in names):
        raise SystemExit(f"{path}: 'names' must list the class names, as a list or as 'id: name' lines")
    return tuple(names)


def coco_ground_truth(root: str | Path, out: str | Path, split: str = "val",
                      names: Sequence[str] = CLASS_NAMES) -> Path:
    """A COCO instances JSON of a split's YOLO labels; image ids 1, 2, ... by file name,
    category ids 1 + class id. Ignore regions (read_labels) are crowd annotations, which
    pycocotools' matching ignores."""
    images, annotations = [], []
    for image_id, item in enumerate(read_labels(root, split), start=1):
        width, height = item["size"]
        images.append({"id": image_id, "file_name": item["file"], "width": width, "height": height})
        for crowd, boxes in ((0, item["boxes"]), (1, item["ignored"])):
            for c, x1, y1, x2, y2 in boxes:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": c + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": crowd})
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": i + 1, "name": name} for i, name in enumerate(names)]}
    path = Path(out)
    path.write_text(json.dumps(document))
    return path


def coco_results(ground_truth: str | Path, detections: list[dict[str, Any]], out: str | Path) -> Path:
    """Detections {stem, class, box [x1, y1, x2, y2] pixels, score} as a COCO results JSON."""
    ids = {Path(image["file_name"]).stem: image["id"]
           for image in json.loads(Path(ground_truth).read_text())["images"]}
    rows = [{"image_id": ids[d["stem"]], "category_id": int(d["class"]) + 1,
             "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]],
             "score": float(d["score"])} for d in detections]
    path = Path(out)
    path.write_text(json.dumps(rows))
    return path


def coco_scores(ground_truth: str | Path, results: str | Path, max_detections: int = 100) -> dict[str, float]:
    """COCO AP (0.50:0.95), AP50 and AP75 of a results JSON, by pycocotools, counting up to
    ``max_detections`` per image (COCO's 100; more for whole scenes of hundreds of objects)."""
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rows = json.loads(Path(results).read_text())
    if not rows:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "detections": 0}
    with redirect_stdout(io.StringIO()):
        truth = COCO(str(ground_truth))
        evaluation = COCOeval(truth, truth.loadRes(rows), "bbox")
        evaluation.params.maxDets = [1, 10, max_detections]
        evaluation.evaluate()
        evaluation.accumulate()
    # summarize()'s AP (0.50:0.95) is read at 100 detections whatever maxDets says, so the
    # three are read here as it reads them: precision [IoU, recall, class, area, maxDets],
    # area "all", the last maxDets, the mean of the defined entries (-1: no ground truth).
    precision = evaluation.eval["precision"][:, :, :, 0, -1]

    def mean_defined(values: Any) -> float:
        defined = values[values > -1]
        return max(0.0, float(defined.mean())) if defined.size else 0.0

    ap, ap50, ap75 = mean_defined(precision), mean_defined(precision[0]), mean_defined(precision[5])
    return {"ap": ap, "ap50": ap50, "ap75": ap75, "detections": len(rows)}


def folder_summary(root: Path) -> dict[str, Any]:
    """Counts of a YOLO folder given by --data: images and objects per split, its classes;
    SystemExit with one sentence where it is not the layout both tools read."""
    missing = [f"images/{split}" for split in ("train", "val") if not (root / "images" / split).is_dir()]
    if missing:
        raise SystemExit(f"--data {root}: no {' or '.join(missing)}; give a YOLO folder with images/train, "
                         f"images/val, labels/ and data.yaml (benchmarks/real_data.py writes one)")
    names = class_names(root)
    splits = {split: read_labels(root, split) for split in ("train", "val")}
    return {"root": str(root), "classes": list(names), "train": len(splits["train"]), "val": len(splits["val"]),
            "objects": sum(len(item["boxes"]) for items in splits.values() for item in items),
            "ignored": sum(len(item["ignored"]) for items in splits.values() for item in items)}


# --------------------------------------------------------------------------- timing


class LoadSampler:
    """The 1-minute load average at the start, every ``every`` seconds and at the end of a phase."""

    def __init__(self, every: float = 2.0) -> None:
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        return {"load_start": round(self.samples[0], 2), "load_mean": round(sum(self.samples) / len(self.samples), 2),
                "load_max": round(max(self.samples), 2), "load_end": round(self.samples[-1], 2)}


@contextmanager
def phase(record: dict[str, Any], name: str):
    """Times a phase of child processes: wall and children's CPU seconds, and the load beside it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with LoadSampler() as load:
        yield
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record[name] = {"wall_s": round(time.perf_counter() - started, 1),
                    "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
                    **load.summary()}


def run_logged(command: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float | None = None) -> None:
    """Run ``command`` with its output in ``log``; RuntimeError quoting the log's tail if it fails."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    with open(log, "w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                              timeout=timeout).returncode
    if code:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(map(str, command))} exited with {code}; the end of {log}:\n{tail}")


# --------------------------------------------------------------------------- detplug


def anchor_table(root: str | Path, image_size: int) -> dict[int, list[list[int]]]:
    """9 anchors, k-means (IoU distance) on the training boxes letterboxed to the input, as
    ``run.py --anchors`` fits them (detplug.core.data.kmeans_anchors; no TensorFlow), in whole
    pixels per stride."""
    import numpy as np

    from detplug.core.data.kmeans_anchors import group_by_stride, kmeans_anchors

    shapes = []
    for item in read_labels(root, "train"):
        scale = image_size / max(item["size"])
        shapes += [((x2 - x1) * scale, (y2 - y1) * scale) for _, x1, y1, x2, y2 in item["boxes"]]
    table = group_by_stride(kmeans_anchors(np.asarray(shapes), 9, seed=0))
    return {int(stride): [[max(1, round(w)), max(1, round(h))] for w, h in pairs] for stride, pairs in table.items()}


def fit_anchors(root: str | Path, image_size: int) -> str:
    """:func:`anchor_table` as a plan's ``model.anchors`` value."""
    from detplug.core.data.kmeans_anchors import anchor_table_toml

    return anchor_table_toml(anchor_table(root, image_size))


def detplug_template_plan(root: str | Path, *, template: str, image_size: int, batch: int, epochs: int,
                          anchors: dict[int, list[list[int]]]) -> str:
    """The plan ``run.py train --data ROOT --model TEMPLATE`` writes (the template's model and
    recipe, YOLOv5's gains scaled to the input and classes), with anchors fitted to the
    training boxes and COCO mAP after the last epoch only, as Ultralytics validates."""
    import tomli_w

    from detplug.core.data.layouts import detect_layout
    from detplug.core.plan.from_data import data_plan

    plan = data_plan(detect_layout(root), model=template, name=f"peer_{template}", epochs=epochs,
                     image_size=(image_size, image_size), batch=batch)
    plan["model"]["anchors"] = {str(stride): pairs for stride, pairs in sorted(anchors.items())}
    # --predict keeps detections down to SCORE_THRESHOLD: COCO AP needs the whole curve.
    plan["evaluation"].update(evaluator="coco_map", eval_every=0, score_threshold=SCORE_THRESHOLD)
    return (f"# Written by benchmarks/peers/ultralytics.py --data: template '{template}' for {root}, "
            f"as run.py train --data writes it, with k-means anchors.\n\n" + tomli_w.dumps(plan))


def detplug_plan(root: str | Path, *, image_size: int, batch: int, epochs: int, anchors: str,
                 width: float = 0.25, depth: float = 0.34, classes: Sequence[str] = CLASS_NAMES,
                 trainer: str = "graph") -> str:
    """kitti_simple's model and [train] recipe as a plan for the YOLO folder ``root`` (the
    test's tiny run takes the eager trainer: a step or two cost less than tracing one)."""
    objectness = image_size * image_size / 640**2  # YOLOv5: 1.0 x (input / 640)^2
    category = 0.5 * len(classes) / 80  # YOLOv5: 0.5 x classes / 80
    names = ", ".join(f'"{name}"' for name in classes)
    return f"""# Written by benchmarks/peers/ultralytics.py: kitti_simple's model and [train] recipe,
# on the benchmark's YOLO folder.
name = "peer_shapes"

[model]
backbone = {{ name = "darknet53", width = {width}, depth = {depth} }}
head = {{ name = "yolov3_fpn", width = {width} }}
decoder = {{ name = "yolov4", scale_xy = 2.0 }}
# k-means on the training boxes at the input size (run.py --anchors's fit).
anchors = {anchors}
assign = {{ anchor_ratio = 4.0, neighbours = true }}

[datasets.shapes]
name = "yolo_txt"
root = "{Path(root).absolute()}"
names = [{names}]
image_size = [{image_size}, {image_size}]

[loss_combos.standard]
# YOLOv5's gains for this input and class count: box 0.05, objectness (input / 640)^2, class 0.5 x classes / 80.
ciou = 0.05
objectness = {{ weight = {objectness:.4g}, iou_target = true }}
category = {category:.4g}

[train]
trainer = "{trainer}"
batch_size = {batch}
seed = 0
bn_momentum = 0.9
augment = true
schedule = "cosine"
warmup_epochs = 1

[evaluation]
# COCO mAP after the last epoch only, as Ultralytics (val=False) validates after its last.
evaluator = "coco_map"
eval_every = 0
# --predict keeps detections down to this score: COCO AP needs the whole curve (Ultralytics: conf=0.001).
score_threshold = {SCORE_THRESHOLD}

[[periods]]
dataset = "shapes"
epochs = {epochs}
learning_rate = 1e-3
losses = "standard"
save = true
"""


def read_history(path: Path, *, train_images: int, batch: int) -> dict[str, Any]:
    """Training seconds per epoch (validation excluded), and the last losses, from a history.csv.

    A row's ``seconds`` holds training and validation; its ``images_per_second`` is the
    training part's, over the full batches an epoch takes."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    seen = train_images // batch * batch
    last = rows[-1]
    return {"epoch_s": [round(seen / float(row["images_per_second"]), 2) for row in rows],
            "epoch_images": seen, "final_loss": float(last["total"]),
            "final_val_loss": float(last.get("val_total") or "nan"),
            "eval": {k: float(v) for k, v in last.items() if k in ("mAP", "AP50", "AP75") and v}}


def throughput(epoch_s: Sequence[float], epoch_images: int) -> dict[str, float]:
    """Images/s over all epochs (the first holds any tracing), and over the later ones (the median)."""
    overall = epoch_images * len(epoch_s) / sum(epoch_s)
    later = sorted(epoch_s[1:])
    steady = epoch_images / later[len(later) // 2] if later else overall
    return {"train_images_per_s": round(overall, 2), "steady_images_per_s": round(steady, 2),
            "train_epochs_s": round(sum(epoch_s), 1)}


def run_detplug(root: str | Path, work: str | Path, *, image_size: int, batch: int, epochs: int,
                width: float = 0.25, depth: float = 0.34, trainer: str = "graph", overrides: Sequence[str] = (),
                template: str | None = None, names: Sequence[str] = CLASS_NAMES, voc: Path | None = None,
                seed: int | None = None, python: str = sys.executable,
                timeout: float | None = None) -> dict[str, Any]:
    """detplug's half: plan, training (timed), --predict on the val images at their original
    size, parameters and GFLOPs. The plan is ``template``'s (detplug_template_plan) when one is
    given, else kitti_simple's (detplug_plan, of ``width``, ``depth`` and ``trainer``).
    ``overrides`` (KEY=VALUE) go to run.py as --set, and so does ``seed`` as train.seed (the
    model's name leaves it out: runs of one model at several seeds). Returns its figures and
    the detections [{stem, class, box, score}]; with ``voc``, also ``scene_detections``: the whole val scenes
    through ``run.py predict --tile`` (:func:`detplug_predict_scenes`)."""
    root, work = Path(root).absolute(), Path(work).absolute()
    shutil.rmtree(work, ignore_errors=True)  # a fresh run and fresh records: no resume, no cached conversion
    work.mkdir(parents=True)
    timing: dict[str, Any] = {}
    seeded = [*overrides, *([f"train.seed={seed}"] if seed is not None else [])]
    sets = [item for override in seeded for item in ("--set", override)]
    with phase(timing, "train"):
        plan = work / "plan.toml"
        if template:
            plan.write_text(detplug_template_plan(root, template=template, image_size=image_size, batch=batch,
                                                  epochs=epochs, anchors=anchor_table(root, image_size)))
        else:
            plan.write_text(detplug_plan(root, image_size=image_size, batch=batch, epochs=epochs,
                                         anchors=fit_anchors(root, image_size), width=width, depth=depth,
                                         trainer=trainer))
        run_logged([python, str(RUN_PY), "--plan", str(plan), *sets, "--workdir", str(work / "run"),
                    "--cache-dir", str(work / "cache")], work / "train.log", timeout=timeout)
    train_images = sum(1 for _ in (root / "images" / "train").iterdir())
    history = read_history(work / "run" / "history.csv", train_images=train_images, batch=batch)
    predictions, info_file = work / "predictions", work / "predict.json"
    with phase(timing, "predict"):
        run_logged([python, str(Path(__file__).resolve()), "--worker", "detplug-predict", "--config", str(plan),
                    "--result", str(info_file), "--", "--plan", str(plan), *sets, "--workdir", str(work / "run"),
                    "--cache-dir", str(work / "cache"), "--predict", str(root / "images" / "val"),
                    "--out", str(predictions)], work / "predict.log", timeout=timeout)
    info = json.loads(info_file.read_text())
    detections = read_detections(predictions, names)
    timing["predict"]["predict_s"] = info["predict_s"]
    scene_detections = None
    if voc is not None:
        with phase(timing, "predict_scenes"):
            scene_detections = detplug_predict_scenes(voc, work, [str(RUN_PY), "--plan", str(plan), *sets,
                                                                  "--workdir", str(work / "run"), "--cache-dir",
                                                                  str(work / "cache")], image_size=image_size,
                                                      names=names, python=python, timeout=timeout)
    model = (f"template {template}" if template else f"darknet53 w{width} d{depth} + yolov3_fpn w{width}") + "".join(
        f", {o}" for o in overrides)
    return {"name": "detplug", "tool": "detplug", "model": model, "overrides": list(overrides),
            "params": info["params"], "gflops": info["gflops"], "threads": info["threads"],
            "versions": info["versions"], "epochs": len(history["epoch_s"]), "train_images": train_images,
            **throughput(history["epoch_s"], history["epoch_images"]), "epoch_s": history["epoch_s"],
            "train_wall_s": timing["train"]["wall_s"], "timing": timing, "final_train_loss": history["final_loss"],
            "final_val_loss": history["final_val_loss"], "own_eval_after_training": history["eval"],
            "detections": detections, **({"scene_detections": scene_detections} if voc is not None else {})}


def scene_tiling(voc: Path, default_size: int) -> tuple[int, float]:
    """The tile size and overlap the devkit's scenes were cut with: real_data.py's summary.json
    beside the devkit, else ``default_size`` at overlap 0.2 (detplug's default)."""
    summary = voc.parent / "summary.json"
    if summary.is_file():
        tile = json.loads(summary.read_text()).get("tile") or {}
        return int(tile.get("size", default_size)), float(tile.get("overlap", 0.2))
    return default_size, 0.2


def detplug_predict_scenes(voc: Path, work: Path, run_args: Sequence[str], *, image_size: int,
                           names: Sequence[str], python: str = sys.executable,
                           timeout: float | None = None) -> list[dict[str, Any]]:
    """The whole val scenes of the devkit ``voc`` (``ImageSets/Main/val.txt``) through detplug's
    sliced prediction, as a user deploys it: ``run.py predict --tile SIZE --overlap R`` on the
    scene images, cut on the grid the tiles were cut on (:func:`scene_tiling`). Detections
    [{stem, class, box, score}] in scene pixels."""
    tile, overlap = scene_tiling(voc, image_size)
    scenes, out = work / "val_scenes", work / "scene_predictions"
    shutil.rmtree(scenes, ignore_errors=True)
    scenes.mkdir()
    for stem in (voc / "ImageSets" / "Main" / "val.txt").read_text().split():
        image = next((voc / "JPEGImages").glob(f"{stem}.*"))
        (scenes / image.name).symlink_to(image.absolute())
    run_logged([python, *run_args[:1], "predict", *run_args[1:], "--tile", str(tile), "--overlap", str(overlap),
                str(scenes), "--out", str(out)], work / "predict_scenes.log", timeout=timeout)
    return read_detections(out, names)


def read_detections(folder: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    """detplug's KITTI result files in ``folder`` as [{stem, class, box, score}], the class an
    index into ``names``."""
    from detplug.core.evaluate.kitti_files import read_kitti_results

    index = {name: i for i, name in enumerate(names)}
    return [{"stem": image.image_id, "class": index[name], "box": [float(v) for v in box], "score": float(score)}
            for image in read_kitti_results(folder)
            for box, name, score in zip(image.boxes, image.names, image.scores)]


def _benchmarks_run() -> Any:
    """benchmarks/run.py, loaded by its path (this file's folder is off sys.path), for its
    forward_gflops_per_image: the same GFLOPs count as detplug's other benchmarks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("detplug_benchmarks_run", HERE.parent / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def detplug_predict(plan_path: str, result: str, run_args: Sequence[str]) -> None:
    """Worker (detplug's venv): ``run.py RUN_ARGS`` (--predict) in this process, then the
    trainable parameters and one image's forward GFLOPs of the plan's model: one TensorFlow
    start for both."""
    import keras
    import numpy as np
    import tensorflow as tf

    from detplug.core.model.assemble import build_model
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.registry import Registry
    from detplug.run import main as run_main

    started = time.perf_counter()
    if run_main(list(run_args)):
        raise SystemExit(f"run.py {' '.join(run_args)} failed")
    predict_s = time.perf_counter() - started
    plan = load_plan(Path(plan_path), [run_args[i + 1] for i, arg in enumerate(run_args) if arg == "--set"])
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    model = build_model(checked)
    gflops = _benchmarks_run().forward_gflops_per_image(model, checked.chain.image)
    Path(result).write_text(json.dumps({
        "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "params_all": int(model.count_params()),
        "gflops": round(gflops, 3),
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}, "predict_s": round(predict_s, 1),
    }))


# --------------------------------------------------------------------------- Ultralytics


def ultralytics_env(out: Path) -> dict[str, str]:
    """Ultralytics offline, its settings in a folder of this run (not the user's)."""
    return {"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(out / "ultralytics_config"), "YOLO_VERBOSE": "True"}


def ultralytics_available(python: str | None, out: Path) -> str | None:
    """The reason the Ultralytics half cannot run, or None if ``python`` imports ultralytics."""
    if not python:
        return ("no --ultralytics-python given: make a venv (python3 -m venv /tmp/ultra && /tmp/ultra/bin/pip "
                "install ultralytics pycocotools) and pass --ultralytics-python /tmp/ultra/bin/python")
    out.mkdir(parents=True, exist_ok=True)
    try:
        found = subprocess.run([python, "-c", "import ultralytics, torch; print(ultralytics.__version__)"],
                               capture_output=True, text=True, cwd=out, timeout=300,
                               env={**os.environ, **ultralytics_env(out)})
    except OSError as error:
        return f"--ultralytics-python {python}: cannot run it ({error})"
    if found.returncode:
        return f"--ultralytics-python {python} cannot import ultralytics: {found.stderr.strip().splitlines()[-1:]}"
    return None


def run_ultralytics(python: str, root: str | Path, work: str | Path, model: str, *, image_size: int, batch: int,
                    epochs: int, threads: int, seed: int = 0, timeout: float | None = None) -> dict[str, Any]:
    """Ultralytics' half for one model yaml: training (timed, from ``seed``) and predictions,
    each a worker process under ``python``."""
    root, work = Path(root).absolute(), Path(work).absolute()
    shutil.rmtree(work, ignore_errors=True)  # a fresh run
    work.mkdir(parents=True)
    for cache in (root / "labels").glob("*.cache"):  # each model reads the labels afresh, as detplug does
        cache.unlink()
    out = work.parent
    config = {"data": str(root / "data.yaml"), "model": model, "imgsz": image_size, "batch": batch, "epochs": epochs,
              "project": str(work), "threads": threads, "val_images": str(root / "images" / "val"),
              "conf": SCORE_THRESHOLD, "seed": seed}
    config_file = work / "config.json"
    config_file.write_text(json.dumps(config))
    timing: dict[str, Any] = {}
    script = str(Path(__file__).resolve())
    with phase(timing, "train"):
        run_logged([python, script, "--worker", "ultralytics-train", "--config", str(config_file),
                    "--result", str(work / "train.json")], work / "train.log", env=ultralytics_env(out), cwd=work,
                   timeout=timeout)
    with phase(timing, "predict"):
        run_logged([python, script, "--worker", "ultralytics-predict", "--config", str(config_file),
                    "--result", str(work / "predict.json")], work / "predict.log", env=ultralytics_env(out),
                   cwd=work, timeout=timeout)
    trained = json.loads((work / "train.json").read_text())
    predicted = json.loads((work / "predict.json").read_text())
    return {"name": f"ultralytics_{Path(model).stem}", "tool": "ultralytics", "model": model,
            "params": predicted["params"], "gflops": predicted["gflops"],
            "threads": trained["threads"], "versions": predicted["versions"], "epochs": trained["epochs"],
            "train_images": trained["train_images"],
            **throughput(trained["epoch_s"], trained["epoch_images"]), "epoch_s": trained["epoch_s"],
            "train_wall_s": timing["train"]["wall_s"], "timing": timing,
            "final_train_loss": trained["final_loss"], "own_eval_after_training": trained["metrics"],
            "detections": predicted["detections"]}


def _ultralytics_setup() -> Any:
    """Worker side: offline, no telemetry (the settings live in YOLO_CONFIG_DIR, this run's own)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    return YOLO


def ultralytics_train(config: dict[str, Any], result: str) -> None:
    """Worker (the Ultralytics venv): train the model yaml from random weights."""
    import torch

    YOLO = _ultralytics_setup()
    model = YOLO(config["model"])
    epoch_s: list[float] = []
    started: list[float] = []
    threads_seen: list[int] = []

    def epoch_start(trainer: Any) -> None:
        # select_device sets cores - 1 torch threads on a CPU; the validator sets them again
        torch.set_num_threads(config["threads"])
        threads_seen.append(torch.get_num_threads())
        started.append(time.perf_counter())

    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_epoch_end", lambda trainer: epoch_s.append(time.perf_counter() - started[-1]))
    model.add_callback("on_val_start", lambda validator: torch.set_num_threads(config["threads"]))
    model.train(data=config["data"], imgsz=config["imgsz"], epochs=config["epochs"], batch=config["batch"],
                device="cpu", amp=False, pretrained=False, plots=False, val=False, project=config["project"],
                name="train", exist_ok=True, seed=config.get("seed", 0), verbose=True)
    trainer = model.trainer
    Path(result).write_text(json.dumps({
        "epochs": len(epoch_s), "epoch_s": epoch_s, "train_images": len(trainer.train_loader.dataset),
        "epoch_images": len(trainer.train_loader.dataset) // config["batch"] * config["batch"]
        if getattr(trainer.train_loader, "drop_last", False) else len(trainer.train_loader.dataset),
        "threads": {"torch": min(threads_seen), "dataloader_workers": trainer.args.workers},
        "final_loss": {k: float(v) for k, v in (trainer.tloss or {}).items()},
        "metrics": {k: float(v) for k, v in (trainer.metrics or {}).items()},
    }))


def ultralytics_predict(config: dict[str, Any], result: str) -> None:
    """Worker (the Ultralytics venv): the last weights' detections on the val images at their
    original size, parameters and GFLOPs (its own model.info at the input size)."""
    import torch
    import ultralytics

    YOLO = _ultralytics_setup()
    model = YOLO(str(Path(config["project"]) / "train" / "weights" / "last.pt"))
    model.add_callback("on_predict_start", lambda predictor: torch.set_num_threads(config["threads"]))
    _, params, _, gflops = model.model.info(verbose=True, imgsz=config["imgsz"])
    detections = []
    for found in model.predict(source=config["val_images"], imgsz=config["imgsz"], conf=config["conf"], max_det=100,
                               device="cpu", stream=True, verbose=False, save=False):
        boxes = found.boxes
        for box, score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
            detections.append({"stem": Path(found.path).stem, "class": int(cls), "box": box, "score": score})
    Path(result).write_text(json.dumps({
        "params": int(params), "gflops": round(float(gflops), 3), "detections": detections,
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
    }))


def strays(out: Path, before: set[Path]) -> list[str]:
    """Files a download would have left: weights and fonts under ``out`` that were not there
    before and that no training wrote (its own weights/)."""
    found = {p for p in out.rglob("*") if p.suffix in (".pt", ".ttf", ".ttc") and p.is_file()}
    return sorted(str(p) for p in found - before if "weights" not in p.parts)


# --------------------------------------------------------------------------- the run


def _real_data() -> Any:
    """benchmarks/real_data.py, loaded by its path, for its whole-scene scoring."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("detplug_benchmarks_real_data", HERE.parent / "real_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Whole scenes hold hundreds of objects: COCO's 100 detections per image would cut the curve.
SCENE_MAX_DETECTIONS = 3000


def score_whole_scenes(detections: list[dict[str, Any]], truth: Path, work: Path, name: str) -> dict[str, Any]:
    """The tile detections moved into their val scenes (``truth``: scene_ground_truth's file)
    and merged as sliced prediction merges windows (real_data.merge_tiles), scored against
    the whole scenes' boxes."""
    sizes = {Path(image["file_name"]).stem: (image["width"], image["height"])
             for image in json.loads(truth.read_text())["images"]}
    merged = _real_data().merge_tiles(detections, sizes)
    return score_scenes(merged, truth, work / f"detections_{name}_whole_scenes.json")


def score_scenes(detections: list[dict[str, Any]], truth: Path, results: Path) -> dict[str, Any]:
    """Detections in scene pixels (merged tiles, or detplug_predict_scenes') scored against the
    whole scenes, with no cap of 100 per scene; their COCO results go to ``results``."""
    return coco_scores(truth, coco_results(truth, detections, results), max_detections=SCENE_MAX_DETECTIONS)


def score(entry: dict[str, Any], ground_truth: Path, work: Path, voc: Path | None = None) -> dict[str, Any]:
    detections = entry.pop("detections")
    results = coco_results(ground_truth, detections, work / f"detections_{entry['name']}.json")
    entry["coco"] = coco_scores(ground_truth, results)
    if voc is not None:
        truth = _real_data().scene_ground_truth(voc, work / "val_scenes_ground_truth.json")
        entry["coco_whole_scenes"] = score_whole_scenes(detections, truth, work, entry["name"])
        if "scene_detections" in entry:
            entry["coco_sliced_scenes"] = score_scenes(entry.pop("scene_detections"), truth,
                                                       work / f"detections_{entry['name']}_sliced_scenes.json")
    minutes = entry["train_wall_s"] / 60
    entry["ap50_per_train_minute"] = round(entry["coco"]["ap50"] / minutes, 4) if minutes else math.nan
    # The same per minute of CPU time the training used (user + system): steadier than wall
    # time on a machine that others load.
    cpu_minutes = entry["timing"]["train"]["cpu_s"] / 60
    entry["ap50_per_cpu_minute"] = round(entry["coco"]["ap50"] / cpu_minutes, 4) if cpu_minutes else math.nan
    return entry


def table(entries: list[dict[str, Any]]) -> str:
    """One row per tool and model; AP50/min: AP50 per minute of training wall time, and per
    minute of the CPU time it used; with --voc, AP50 and AP on the whole val scenes too: from
    the tile detections merged ("scene"), and from detplug's predict --tile ("sliced")."""
    scenes = any("coco_whole_scenes" in e for e in entries)
    sliced = any("coco_sliced_scenes" in e for e in entries)
    header = (f"{'tool':<12}{'model':<44}{'params':>8}{'GFLOPs':>7}{'img/s':>7}{'steady':>7}{'train s':>8}"
              f"{'cpu s':>7}{'load':>5}{'AP50':>7}{'AP':>7}{'AP50/min':>9}{'/cpu min':>9}"
              + (f"{'scene AP50':>11}{'scene AP':>9}" if scenes else "")
              + (f"{'sliced AP50':>12}{'sliced AP':>10}" if sliced else ""))
    lines = [header, "-" * len(header)]
    for e in entries:
        train = e["timing"]["train"]
        whole = e.get("coco_whole_scenes")
        lines.append(f"{e['tool']:<12}{e['model']:<44}{e['params'] / 1e6:>7.2f}M{e['gflops']:>7.2f}"
                     f"{e['train_images_per_s']:>7.1f}{e['steady_images_per_s']:>7.1f}{train['wall_s']:>8.0f}"
                     f"{train['cpu_s']:>7.0f}{train['load_mean']:>5.1f}{e['coco']['ap50']:>7.3f}{e['coco']['ap']:>7.3f}"
                     f"{e['ap50_per_train_minute']:>9.4f}{e['ap50_per_cpu_minute']:>9.4f}"
                     + (f"{whole['ap50']:>11.3f}{whole['ap']:>9.3f}" if whole else "")
                     + (f"{e['coco_sliced_scenes']['ap50']:>12.3f}{e['coco_sliced_scenes']['ap']:>10.3f}"
                        if "coco_sliced_scenes" in e else (f"{'':>22}" if sliced else "")))
    return "\n".join(lines)


def seed_means(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tool and model, the mean over its seeds of AP50, AP (tile, and the scene figures
    where given) and training wall seconds, with each seed's AP50."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault((entry["tool"], entry["model"]), []).append(entry)
    means = []
    for (tool, model), runs in groups.items():
        row: dict[str, Any] = {"tool": tool, "model": model, "seeds": [r["train_seed"] for r in runs],
                               "ap50_each": [round(r["coco"]["ap50"], 4) for r in runs]}
        for key, figures in (("coco", "tile"), ("coco_whole_scenes", "scene"), ("coco_sliced_scenes", "sliced")):
            if all(key in r for r in runs):
                for metric in ("ap50", "ap"):
                    row[f"{figures}_{metric}"] = round(sum(r[key][metric] for r in runs) / len(runs), 4)
        row["train_wall_s"] = round(sum(r["train_wall_s"] for r in runs) / len(runs), 1)
        means.append(row)
    return means


def means_table(means: list[dict[str, Any]]) -> str:
    """The mean over seeds, a row per tool and model."""
    header = f"{'mean over seeds':<28}{'model':<36}{'AP50':>7}{'AP':>7}{'train s':>8}{'scene AP50':>11}  AP50 each"
    lines = [header, "-" * len(header)]
    for row in means:
        lines.append(f"{row['tool']:<28}{row['model'][:35]:<36}{row['tile_ap50']:>7.3f}{row['tile_ap']:>7.3f}"
                     f"{row['train_wall_s']:>8.0f}{row.get('scene_ap50', float('nan')):>11.3f}  "
                     + " ".join(f"{v:.3f}" for v in row["ap50_each"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "peer_ultralytics")
    parser.add_argument("--json", type=Path, help="where the figures go (default: OUT/results.json)")
    parser.add_argument("--data", type=Path, help="a YOLO folder (images/{train,val}, labels/, data.yaml) to "
                        "train and score on instead of the synthetic shapes, e.g. benchmarks/real_data.py's tiles")
    parser.add_argument("--voc", type=Path, help="with --data: the VOC devkit its tiles were cut from "
                        "(real_data.py's voc/); adds AP on the whole val scenes: the tile detections merged, and "
                        "detplug's predict --tile on the scenes")
    parser.add_argument("--detplug-model", default="small",
                        help="with --data: the template detplug's plan comes from (run.py train --data --model)")
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--val", type=int, default=80)
    parser.add_argument("--source-size", type=int, nargs=2, default=(384, 288), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--imgsz", type=int, default=256, help="input size, both tools (square, a multiple of 32)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the synthetic shapes' seed")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0], metavar="SEED",
                        help="train each tool once per seed (detplug's [train] seed, Ultralytics' seed) and "
                        "give the mean of each too: from scratch on a hundred images, one seed's AP50 may be "
                        "0.05 from another's")
    parser.add_argument("--width", type=float, default=0.25, help="detplug's backbone and head width")
    parser.add_argument("--depth", type=float, default=0.34, help="detplug's backbone depth")
    parser.add_argument("--trainer", default="graph", help="detplug's trainer (kitti_simple's: graph)")
    parser.add_argument("--detplug-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of detplug's plan (run.py --set), e.g. train.augment=false")
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS), help="Ultralytics model yamls")
    parser.add_argument("--ultralytics-python", help="an interpreter that imports ultralytics (a separate venv)")
    parser.add_argument("--ultralytics-threads", type=int, default=os.cpu_count(),
                        help="torch threads (default: every core, as TensorFlow uses)")
    parser.add_argument("--skip-detplug", action="store_true")
    parser.add_argument("--worker", choices=("detplug-predict", "ultralytics-train", "ultralytics-predict"),
                        help=argparse.SUPPRESS)
    parser.add_argument("run_args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "detplug-predict":
        detplug_predict(args.config, args.result, args.run_args)
        return 0
    if args.worker:
        config = json.loads(Path(args.config).read_text())
        (ultralytics_train if args.worker == "ultralytics-train" else ultralytics_predict)(config, args.result)
        return 0

    if args.voc and not args.data:
        parser.error("--voc scores tiles on their whole scenes: give the tiles' folder with --data too")
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    before = {p for p in out.rglob("*") if p.suffix in (".pt", ".ttf", ".ttc")}
    if args.data:
        data = args.data.absolute()
        summary = folder_summary(data)
        names: tuple[str, ...] = tuple(summary["classes"])
        print(f"data: {summary['train']} train + {summary['val']} val images, {summary['objects']} objects "
              f"(+{summary['ignored']} ignore regions) of {len(names)} classes, in {data}", flush=True)
    else:
        data, names = out / "data", CLASS_NAMES
        if not (data / "data.yaml").is_file():
            summary = write_dataset(data, train=args.train, val=args.val, source_size=tuple(args.source_size),
                                    seed=args.seed)
            (out / "data_summary.json").write_text(json.dumps(summary))
        summary = json.loads((out / "data_summary.json").read_text())
        if (summary["train"], summary["val"], summary["source_size"], summary["seed"]) != (
                args.train, args.val, list(args.source_size), args.seed):
            parser.error(f"{data} holds another dataset ({summary}); give another --out")
        print(f"data: {summary['train']} train + {summary['val']} val images of {summary['source_size'][0]}x"
              f"{summary['source_size'][1]}, {summary['objects']} objects, in {data}", flush=True)
    ground_truth = coco_ground_truth(data, out / "val_ground_truth.json", names=names)

    skipped = ultralytics_available(args.ultralytics_python, out) if args.models else "no --models"
    if skipped:
        print(f"Ultralytics half skipped: {skipped}", flush=True)
    entries = []
    for seed in args.train_seeds:
        # One seed: the folders and names as ever; several: each run's gets _seedN.
        suffix = f"_seed{seed}" if len(args.train_seeds) > 1 else ""
        if not args.skip_detplug:
            print(f"detplug: training {args.epochs} epochs at {args.imgsz}x{args.imgsz}, batch {args.batch}, "
                  f"seed {seed} ...", flush=True)
            entries.append(run_detplug(data, out / f"detplug{suffix}", image_size=args.imgsz, batch=args.batch,
                                       epochs=args.epochs, width=args.width, depth=args.depth,
                                       trainer=args.trainer, overrides=args.detplug_set, seed=seed,
                                       template=args.detplug_model if args.data else None, names=names,
                                       voc=args.voc.absolute() if args.voc else None))
            entries[-1].update(name=f"detplug{suffix}", train_seed=seed)
            print(f"  {entries[-1]['train_wall_s']:.0f} s", flush=True)
        if not skipped:
            for model in args.models:
                print(f"ultralytics {model}: training {args.epochs} epochs, seed {seed} ...", flush=True)
                entries.append(run_ultralytics(args.ultralytics_python, data,
                                               out / f"ultralytics_{Path(model).stem}{suffix}", model,
                                               image_size=args.imgsz, batch=args.batch, epochs=args.epochs,
                                               threads=args.ultralytics_threads, seed=seed))
                entries[-1].update(name=entries[-1]["name"] + suffix, train_seed=seed)
                print(f"  {entries[-1]['train_wall_s']:.0f} s", flush=True)
    entries = [score(entry, ground_truth, out, args.voc.absolute() if args.voc else None) for entry in entries]
    downloaded = strays(out, before)
    report = {
        "settings": {"data": str(data) if args.data else None, "train": summary["train"], "val": summary["val"],
                     "source_size": None if args.data else list(args.source_size), "imgsz": args.imgsz,
                     "epochs": args.epochs, "batch": args.batch, "seed": args.seed,
                     "train_seeds": args.train_seeds,
                     "score_threshold": SCORE_THRESHOLD, "cpus": os.cpu_count()},
        "data": summary, "entries": entries, "ultralytics_skipped": skipped, "stray_downloads": downloaded,
        "note": "AP on the val images at their original size, scored by pycocotools from each tool's detections; "
                "ap50_per_train_minute = COCO AP50 / training wall minutes; ap50_per_cpu_minute = COCO AP50 / "
                "minutes of CPU time (user + system) the training process used",
    }
    path = args.json or out / "results.json"
    path.write_text(json.dumps(report, indent=2))
    print(table(entries))
    if len(args.train_seeds) > 1:
        report["means"] = seed_means(entries)
        path.write_text(json.dumps(report, indent=2))
        print(means_table(report["means"]))
    if downloaded:
        print(f"WARNING: files a download may have left: {', '.join(downloaded)}")
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
