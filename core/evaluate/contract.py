"""What every evaluator consumes and gives.

An evaluator (kind ``"evaluator"``, see core/build.py) compares the detections of
a set of images with their ground truth::

    evaluator.evaluate(truths: list[ImageTruth], detections: list[ImageDetections]) -> EvaluationResult

Boxes are x1, y1, x2, y2 in the pixels of the original image, as KITTI's label
and result files give them; class names are strings as the label files spell
them ("Car", "Van", "DontCare"), so an evaluator sees the neighbouring classes
and ignore regions that training may have folded or dropped.

numpy and attrs only: ``run.py kitti-eval`` never imports TensorFlow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from detplug.core.errors import DataError

#: At most this many image names are quoted in one error.
_MAX_QUOTED = 5


# -- the data types ----------------------------------------------------------


def _boxes(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


def _vector(value: Any, dtype: type) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=dtype).reshape(-1)


# attrs converters are named functions, one per dtype, so mypy's attrs plugin reads them.
def _float_vector(value: Any) -> np.ndarray | None:
    return _vector(value, np.float64)


def _int_vector(value: Any) -> np.ndarray | None:
    return _vector(value, np.int64)


def _size(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


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
    truncated: np.ndarray = attrs.field(default=None, converter=_float_vector, validator=_same_length)
    occluded: np.ndarray = attrs.field(default=None, converter=_int_vector, validator=_same_length)
    #: The original image's (height, width) in pixels, where the source gives it.
    size: tuple[int, int] | None = attrs.field(default=None, converter=_size)

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
    scores: np.ndarray = attrs.field(converter=_float_vector, validator=_same_length)

    @classmethod
    def empty(cls, image_id: str) -> ImageDetections:
        return cls(image_id, np.zeros((0, 4)), (), np.zeros(0))


Cell = str | int | float


def _same_length_as_recall(instance: Any, attribute: attrs.Attribute, value: np.ndarray) -> None:
    if len(value) != len(instance.recall):
        raise ValueError(f"'{attribute.name}' has {len(value)} points for {len(instance.recall)} recall points")


@attrs.frozen(eq=False)
class PrecisionRecall:
    """One class's precision-recall curve, as the evaluator computed its AP from it.

    ``recall`` and ``precision`` are the points the AP is a mean or an area of (the
    KITTI devkit's 41 samples, COCO's 101), so a picture shows what the figure means
    rather than a curve recomputed by other rules. ``ap`` is that curve's AP as a
    fraction (NaN for a class without ground truth); ``iou`` the minimum overlap of a
    hit; ``difficulty`` the subset of ground truth (KITTI's "moderate"), None where
    the evaluator has no such notion.
    """

    recall: np.ndarray = attrs.field(converter=_float_vector)
    precision: np.ndarray = attrs.field(converter=_float_vector, validator=_same_length_as_recall)
    ap: float = attrs.field(converter=float)
    iou: float = attrs.field(converter=float)
    difficulty: str | None = None

    def to_document(self) -> dict[str, Any]:
        """The curve as JSON-ready values; NaN as None."""
        return {
            "iou": self.iou,
            "difficulty": self.difficulty,
            "ap": _finite_or_none(self.ap),
            "recall": [_finite_or_none(float(value)) for value in self.recall],
            "precision": [_finite_or_none(float(value)) for value in self.precision],
        }


@attrs.frozen(eq=False)
class EvaluationResult:
    """What an evaluator found.

    ``metrics`` are flat, fractions in [0, 1] (NaN where undefined, e.g. a class
    without ground truth): ``"Car/moderate/AP40"``, ``"mAP_moderate_AP40"``,
    ``"mAP"``, ``"AP/Car"``. ``headline`` is the key of the one figure to quote.
    ``columns`` and ``rows`` are the table :func:`format_table` prints: the first
    cell names the row, float cells are AP-like fractions, int cells counts.
    ``curves``, optional, holds each class's precision-recall curve at the evaluator's
    main operating point, keyed by class name, for the PR picture of ``--evaluate``;
    an evaluator that gives none leaves it empty and only the picture is missing.
    """

    evaluator: str
    metrics: Mapping[str, float]
    headline: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Cell, ...], ...] = ()
    #: Sentences about how far to trust the figures (e.g. too few objects), printed under the table.
    notes: tuple[str, ...] = ()
    curves: Mapping[str, PrecisionRecall] = attrs.field(factory=dict)

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
            # Added after the keys above, which keep their meaning: readers of older files ignore it.
            "curves": {name: curve.to_document() for name, curve in self.curves.items()},
        }
        return json.dumps(document, indent=2)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class Evaluator(Protocol):
    """What an evaluator factory returns (core/build.py states the factory's arguments)."""

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
    lines += [f"note: {note}" for note in result.notes]
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
