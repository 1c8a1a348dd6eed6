"""Folders of KITTI label and result files as the evaluators' truths and detections.

Each file is read and written by :mod:`detplug.core.data.kitti_format`; here a
folder becomes a list of :class:`ImageTruth` or :class:`ImageDetections`, one
per ``NNNNNN.txt`` (the image id is the file's stem). No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detplug.core.data.kitti_format import KittiObject, parse_kitti_file, write_kitti_file
from detplug.core.errors import DataError
from detplug.core.evaluate.contract import ImageDetections, ImageTruth


def _text_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give the folder of KITTI {what} files (NNNNNN.txt)")
    return sorted(folder.glob("*.txt"))


def read_kitti_labels(label_dir: str | Path) -> list[ImageTruth]:
    """Every ``*.txt`` label file of ``label_dir`` (KITTI's label_2), by file name. A 16th
    column (a score, as some tools write) is ignored, as the devkit's reader does;
    DataError naming file and line otherwise."""
    files = _text_files(Path(label_dir), "label")
    if not files:
        raise DataError(f"{label_dir} holds no label files (*.txt); give KITTI's training/label_2 or a copy")
    truths = []
    for path in files:
        objects = parse_kitti_file(path, scores="ignored", integer_occlusion=True)
        truths.append(ImageTruth(
            path.stem,
            [item.box for item in objects],
            [item.type for item in objects],
            truncated=[item.truncated for item in objects],
            occluded=[int(item.occluded) for item in objects],
        ))
    return truths


def result_folder(result_dir: str | Path) -> Path:
    """The folder holding the result files: ``result_dir`` itself, or its ``data/`` when it
    has no ``*.txt`` of its own (the devkit's ``results/<method>/data/`` layout)."""
    folder = Path(result_dir)
    if folder.is_dir() and not any(folder.glob("*.txt")) and (folder / "data").is_dir():
        return folder / "data"
    return folder


def read_kitti_results(result_dir: str | Path) -> list[ImageDetections]:
    """Every ``*.txt`` result file of ``result_dir`` (or its ``data/``), by file name: KITTI
    label columns plus the score last (16 columns); DataError naming file and line."""
    detections = []
    for path in _text_files(result_folder(result_dir), "result"):
        objects = parse_kitti_file(path, scores="always")
        detections.append(ImageDetections(
            path.stem,
            [item.box for item in objects],
            [item.type for item in objects],
            [item.score for item in objects],
        ))
    return detections


def write_kitti_results(path: str | Path, detections: Sequence[ImageDetections]) -> list[Path]:
    """One KITTI result file per image in folder ``path`` (created; an image without
    detections gets an empty file, so the folder lists every image evaluated).
    The 3D columns hold the devkit's "not given" values. Returns the files written."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image in detections:
        objects = []
        for name, box, score in zip(image.names, image.boxes, image.scores):
            x1, y1, x2, y2 = (float(value) for value in box)
            objects.append(KittiObject(name, -1.0, -1, (x1, y1, x2, y2), score=float(score)))
        try:  # every line is formatted before the file is written
            written.append(write_kitti_file(folder / f"{image.image_id}.txt", objects))
        except DataError as error:
            raise DataError(f"image '{image.image_id}': {error}") from None
    return written
