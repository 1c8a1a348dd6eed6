"""What every evaluator consumes and gives, KITTI's result files, and ``--kitti-eval``.

An evaluator (kind ``"evaluator"``, see registry.py) compares the detections of
a set of images with their ground truth::

    evaluator.evaluate(truths: list[ImageTruth], detections: list[ImageDetections]) -> EvaluationResult

Boxes are x1, y1, x2, y2 in the pixels of the original image, as KITTI's label
and result files give them; class names are strings as the label files spell
them ("Car", "Van", "DontCare"), so an evaluator sees the neighbouring classes
and ignore regions that training may have folded or dropped.

numpy and attrs only: ``run.py --kitti-eval`` never imports TensorFlow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import attrs
import numpy as np

from detplug.core.errors import DataError

#: Columns of a KITTI label line; a result line adds ``score`` (devkit readme, "label_2").
LABEL_COLUMNS = (
    "type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2",
    "height", "width", "length", "x", "y", "z", "rotation_y",
)  # fmt: skip
RESULT_COLUMNS = (*LABEL_COLUMNS, "score")
#: The 3D columns of a 2D-only result line: the devkit's "invalid" values (alpha -10
#: tells it not to compute orientation similarity).
_NO_3D = "-1 -1 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} -1 -1 -1 -1000 -1000 -1000 -10"
#: At most this many bad lines are quoted in one error.
_MAX_QUOTED = 5


# -- the data types ----------------------------------------------------------


def _boxes(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


def _vector(dtype: type):
    def convert(value: Any) -> np.ndarray | None:
        return None if value is None else np.asarray(value, dtype=dtype).reshape(-1)

    return convert


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(name) for name in value)


def _same_length(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and len(value) != len(instance.boxes):
        raise ValueError(f"image '{instance.image_id}': '{attribute.name}' has {len(value)} entries "
                         f"for {len(instance.boxes)} boxes")


@attrs.frozen(eq=False)
class ImageTruth:
    """The ground truth of one image: every labelled object, ignore regions (DontCare)
    and neighbouring classes (Van) included. ``truncated`` (0..1) and ``occluded``
    (KITTI's 0 visible, 1 partly, 2 largely, 3 unknown) default to 0 where the
    source has none."""

    image_id: str = attrs.field(converter=str)
    boxes: np.ndarray = attrs.field(converter=_boxes)
    names: tuple[str, ...] = attrs.field(converter=_names, validator=_same_length)
    truncated: np.ndarray = attrs.field(default=None, converter=_vector(np.float64), validator=_same_length)
    occluded: np.ndarray = attrs.field(default=None, converter=_vector(np.int64), validator=_same_length)

    def __attrs_post_init__(self) -> None:
        # Frozen: the defaults depend on the number of boxes, so they are filled in here.
        if self.truncated is None:
            object.__setattr__(self, "truncated", np.zeros(len(self.boxes)))
        if self.occluded is None:
            object.__setattr__(self, "occluded", np.zeros(len(self.boxes), dtype=np.int64))


@attrs.frozen(eq=False)
class ImageDetections:
    """The detections of one image: boxes, class names and scores (higher is surer)."""

    image_id: str = attrs.field(converter=str)
    boxes: np.ndarray = attrs.field(converter=_boxes)
    names: tuple[str, ...] = attrs.field(converter=_names, validator=_same_length)
    scores: np.ndarray = attrs.field(converter=_vector(np.float64), validator=_same_length)

    @classmethod
    def empty(cls, image_id: str) -> "ImageDetections":
        return cls(image_id, np.zeros((0, 4)), (), np.zeros(0))


Cell = str | int | float


@attrs.frozen(eq=False)
class EvaluationResult:
    """What an evaluator found.

    ``metrics`` are flat, fractions in [0, 1] (NaN where undefined, e.g. a class
    without ground truth): ``"Car/moderate/AP40"``, ``"mAP_moderate_AP40"``,
    ``"mAP"``, ``"AP/Car"``. ``headline`` is the key of the one figure to quote.
    ``columns`` and ``rows`` are the table :func:`format_table` prints: the first
    cell names the row, float cells are AP-like fractions, int cells counts.
    """

    evaluator: str
    metrics: Mapping[str, float]
    headline: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Cell, ...], ...] = ()

    @property
    def headline_value(self) -> float:
        return self.metrics[self.headline]

    def to_json(self) -> str:
        """The result as JSON; an undefined figure (NaN) is written as null."""
        document = {
            "evaluator": self.evaluator,
            "headline": self.headline,
            "metrics": {key: _finite_or_none(value) for key, value in self.metrics.items()},
            "columns": list(self.columns),
            "rows": [[_finite_or_none(cell) if isinstance(cell, float) else cell for cell in row]
                     for row in self.rows],
        }
        return json.dumps(document, indent=2)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class Evaluator(Protocol):
    """What an evaluator factory returns (registry.py states the factory's arguments)."""

    def evaluate(self, truths: Sequence[ImageTruth], detections: Sequence[ImageDetections]) -> EvaluationResult:
        ...


def format_table(result: EvaluationResult) -> str:
    """The result as a plain-text table: AP-like fractions as percentages with two
    decimals (KITTI's and COCO's own convention), '-' where undefined, then the headline."""

    def show(cell: Cell) -> str:
        if isinstance(cell, float):
            return "-" if math.isnan(cell) else f"{100 * cell:.2f}"
        return str(cell)

    lines = []
    if result.columns:
        cells = [list(result.columns)] + [[show(cell) for cell in row] for row in result.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
        for number, row in enumerate(cells):
            lines.append("  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                                   for i, cell in enumerate(row)).rstrip())
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
    lines.append(f"{result.evaluator} {result.headline}: {show(float(result.headline_value))}"
                 f" (AP in %)")
    return "\n".join(lines)


def pair_by_image(truths: Sequence[ImageTruth],
                  detections: Sequence[ImageDetections]) -> list[tuple[ImageTruth, ImageDetections]]:
    """Each image's truth with its detections, in the truths' order; an image without
    detections has none. DataError for a repeated image or detections of an image
    that has no ground truth (the two sets do not belong together)."""
    seen: set[str] = set()
    for truth in truths:
        if truth.image_id in seen:
            raise DataError(f"image '{truth.image_id}' has two ground truths; give each image once")
        seen.add(truth.image_id)
    by_image: dict[str, ImageDetections] = {}
    for found in detections:
        if found.image_id in by_image:
            raise DataError(f"image '{found.image_id}' has two sets of detections; give each image once")
        by_image[found.image_id] = found
    strangers = sorted(set(by_image) - seen)
    if strangers:
        shown = ", ".join(strangers[:_MAX_QUOTED]) + (f" and {len(strangers) - _MAX_QUOTED} more"
                                                      if len(strangers) > _MAX_QUOTED else "")
        raise DataError(f"detections for {len(strangers)} image(s) without ground truth ({shown}); "
                        f"are the results and the labels from the same split?")
    return [(truth, by_image.get(truth.image_id) or ImageDetections.empty(truth.image_id)) for truth in truths]


# -- KITTI files -------------------------------------------------------------


def _read_lines(path: Path, kinds: Mapping[int, str], what: str) -> list[tuple[str, list[float]]]:
    """(type, numbers) of every non-blank line of ``path``; ``kinds`` maps the allowed
    column counts to a description. DataError naming file and line."""
    # The devkit reads a label's occlusion with %d; a result's is never read.
    integer_occlusion = what == "label file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the {what} ({error})") from None
    rows, problems = [], []
    for line_number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{line_number}"
        if len(tokens) not in kinds:
            expected = " or ".join(f"{count} ({kinds[count]})" for count in sorted(kinds))
            problems.append(f"{where}: expected {expected} columns, found {len(tokens)}")
            continue
        numbers, bad = [], None
        for column, token in zip(RESULT_COLUMNS[1:], tokens[1:]):
            try:
                value = float(token)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) and bad is None:
                bad = f"{where}: column '{column}' must be a number (got {token!r})"
            numbers.append(value)
        if bad is None and integer_occlusion and numbers[1] != int(numbers[1]):
            bad = f"{where}: column 'occluded' must be an integer (got {tokens[2]!r})"
        if bad:
            problems.append(bad)
            continue
        rows.append((tokens[0], numbers))
    if problems:
        more = f"; and {len(problems) - _MAX_QUOTED} more bad lines" if len(problems) > _MAX_QUOTED else ""
        raise DataError("; ".join(problems[:_MAX_QUOTED]) + more)
    return rows


def _text_files(folder: Path, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give the folder of KITTI {what} files (NNNNNN.txt)")
    return sorted(folder.glob("*.txt"))


def read_kitti_labels(label_dir: str | Path) -> list[ImageTruth]:
    """Every ``*.txt`` label file of ``label_dir`` (KITTI's label_2), by file name; the
    image id is the file's stem. A 16th column (a score, as some tools write) is
    ignored, as the devkit's reader does; DataError naming file and line otherwise."""
    files = _text_files(Path(label_dir), "label")
    if not files:
        raise DataError(f"{label_dir} holds no label files (*.txt); give KITTI's training/label_2 or a copy")
    kinds = {15: "a label line", 16: "a label line with a score"}
    truths = []
    for path in files:
        rows = _read_lines(path, kinds, "label file")
        truths.append(ImageTruth(
            path.stem,
            [numbers[3:7] for _, numbers in rows],
            [name for name, _ in rows],
            truncated=[numbers[0] for _, numbers in rows],
            occluded=[int(numbers[1]) for _, numbers in rows],
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
    files = _text_files(result_folder(result_dir), "result")
    kinds = {16: "the label columns and a score"}
    detections = []
    for path in files:
        rows = _read_lines(path, kinds, "result file")
        detections.append(ImageDetections(
            path.stem,
            [numbers[3:7] for _, numbers in rows],
            [name for name, _ in rows],
            [numbers[14] for _, numbers in rows],
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
        lines = []
        for name, box, score in zip(image.names, image.boxes, image.scores):
            if not name or any(character.isspace() for character in name):
                raise DataError(f"image '{image.image_id}': class name {name!r} cannot be written to a "
                                f"KITTI result file (it must be one word)")
            x1, y1, x2, y2 = (float(value) for value in box)
            lines.append(f"{name} {_NO_3D.format(x1=x1, y1=y1, x2=x2, y2=y2)} {float(score):.6f}\n")
        target = folder / f"{image.image_id}.txt"
        target.write_text("".join(lines), encoding="utf-8")
        written.append(target)
    return written


# -- python run.py --kitti-eval ----------------------------------------------


def run_kitti_eval(label_dir: str | Path, result_dir: str | Path, *, json_path: str | Path | None = None,
                   classes: Sequence[str] | None = None) -> EvaluationResult:
    """Evaluate KITTI result files against KITTI label files as the devkit does, print
    the table and write the JSON to ``json_path`` if given.

    An image without a result file has no detections. ``classes`` defaults to the
    KITTI classes (Car, Pedestrian, Cyclist) that occur in the results, as the
    devkit evaluates only the classes a submission detects.
    """
    from detplug.plugins.evaluators import KITTI_CLASSES, KittiAPParams
    from detplug.plugins.evaluators.kitti_ap import kitti_ap_evaluator

    truths = read_kitti_labels(label_dir)
    detections = read_kitti_results(result_dir)
    if classes is None:
        detected = {name.lower() for image in detections for name in image.names}
        classes = tuple(name for name in KITTI_CLASSES if name.lower() in detected)
        if not classes:
            raise DataError(f"the results in {result_folder(result_dir)} detect none of "
                            f"{', '.join(KITTI_CLASSES)}, so there is nothing to evaluate")
    result = kitti_ap_evaluator(KittiAPParams(), classes=tuple(classes)).evaluate(truths, detections)
    print(format_table(result))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(result.to_json() + "\n", encoding="utf-8")
    return result
