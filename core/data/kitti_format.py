"""KITTI's label and result files (the devkit's readme, "label_2"): the one reader and writer.

The kitti dataset reads labels with it, the evaluation side reads labels and
results (``--kitti-eval``, ``--evaluate``) and writes results (``--predict``),
and the synthetic sample writes its labels with it. Standard library and attrs
only: worker processes and ``--kitti-eval`` import it without TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

import attrs

from detplug.core.errors import DataError

#: Columns of a KITTI label line; a result line adds ``score``.
LABEL_COLUMNS = (
    "type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2",
    "height", "width", "length", "x", "y", "z", "rotation_y",
)  # fmt: skip
RESULT_COLUMNS = (*LABEL_COLUMNS, "score")
#: The classes the devkit evaluates.
KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
#: KITTI's own object types besides DontCare.
KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
#: The type of an ignore region.
DONT_CARE = "DontCare"


class _NotGiven(TypedDict):
    """The type of :data:`NOT_GIVEN`: one entry per column, each with its own type."""

    truncated: float
    occluded: int
    alpha: float
    dimensions: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float


#: The devkit's "not given" values of the columns a 2D label or result leaves out; they are
#: written as integers (alpha -10 tells the devkit not to compute orientation similarity).
NOT_GIVEN: _NotGiven = {"truncated": -1.0, "occluded": -1, "alpha": -10.0, "dimensions": (-1.0, -1.0, -1.0),
                        "location": (-1000.0, -1000.0, -1000.0), "rotation_y": -10.0}
_MARKERS = {-1.0, -10.0, -1000.0}
#: At most this many bad lines are quoted in one error.
MAX_QUOTED = 5


@attrs.frozen
class KittiObject:
    """One line of a label or result file: the type, truncation (0..1), occlusion (KITTI's 0
    visible, 1 partly, 2 largely, 3 unknown), the 2D box x1, y1, x2, y2 in pixels, the 3D
    columns and, in a result file, the score. ``line`` is its line number when read."""

    type: str
    truncated: float
    occluded: float
    box: tuple[float, float, float, float]
    line: int = 0
    alpha: float = attrs.field(default=NOT_GIVEN["alpha"], kw_only=True)
    dimensions: tuple[float, float, float] = attrs.field(default=NOT_GIVEN["dimensions"], kw_only=True)
    location: tuple[float, float, float] = attrs.field(default=NOT_GIVEN["location"], kw_only=True)
    rotation_y: float = attrs.field(default=NOT_GIVEN["rotation_y"], kw_only=True)
    score: float | None = attrs.field(default=None, kw_only=True)


def read_kitti_file(path: str | Path, *, scores: str = "never",
                    integer_occlusion: bool = False) -> tuple[list[KittiObject], list[tuple[int, str]]]:
    """The objects of one label or result file and, for every bad line, (line number, a
    sentence naming file and line); line 0 when the file itself cannot be read. An empty
    file has no objects.

    ``scores``: "never" (a label file: 15 columns), "ignored" (a label file that may carry a
    16th score column, which is dropped as the devkit's reader does) or "always" (a result
    file: 16 columns). ``integer_occlusion``: the devkit reads a label's occlusion with %d.
    """
    path = Path(path)
    counts = {"never": (15,), "ignored": (15, 16), "always": (16,)}[scores]
    described = {(15,): f"({' '.join(LABEL_COLUMNS)})", (15, 16): "(the label columns, then an optional score)",
                 (16,): "(the label columns and a score)"}[counts]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [(0, f"{path} is missing: every KITTI image needs its label file")]
    except (OSError, UnicodeDecodeError) as error:
        return [], [(0, f"{path}: cannot read the {'result' if scores == 'always' else 'label'} file ({error})")]
    objects, problems = [], []
    for line_number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{line_number}"
        if len(tokens) not in counts:
            expected = " or ".join(str(count) for count in counts)
            problems.append((line_number, f"{where}: expected {expected} columns {described}, found {len(tokens)}"))
            continue
        numbers, bad = [], []
        for column, token in zip(RESULT_COLUMNS[1:], tokens[1:]):
            try:
                value = float(token)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                bad.append((line_number, f"{where}: column '{column}' must be a number (got {token!r})"))
            numbers.append(value)
        if not bad and integer_occlusion and numbers[1] != int(numbers[1]):
            bad.append((line_number, f"{where}: column 'occluded' must be an integer (got {tokens[2]!r})"))
        if bad:
            problems += bad
            continue
        objects.append(KittiObject(
            tokens[0], numbers[0], numbers[1], (numbers[3], numbers[4], numbers[5], numbers[6]), line_number,
            alpha=numbers[2], dimensions=(numbers[7], numbers[8], numbers[9]),
            location=(numbers[10], numbers[11], numbers[12]), rotation_y=numbers[13],
            score=numbers[14] if scores == "always" else None,
        ))
    return objects, problems


def parse_kitti_file(path: str | Path, *, scores: str = "never", integer_occlusion: bool = False) -> list[KittiObject]:
    """As :func:`read_kitti_file`, raising one DataError naming file and line(s) on bad input."""
    objects, problems = read_kitti_file(path, scores=scores, integer_occlusion=integer_occlusion)
    raise_problems([message for _, message in problems])
    return objects


def raise_problems(problems: list[str]) -> None:
    """One DataError quoting the first few problems, if there are any."""
    if problems:
        more = f"; and {len(problems) - MAX_QUOTED} more bad lines" if len(problems) > MAX_QUOTED else ""
        raise DataError("; ".join(problems[:MAX_QUOTED]) + more)


def _number(value: float) -> str:
    return str(int(value)) if value in _MARKERS else f"{value:.2f}"


def format_kitti_line(item: KittiObject) -> str:
    """The object as one line (no newline): two decimals as the devkit writes them, the
    "not given" values as integers, the score (if any) with six."""
    if not item.type or any(character.isspace() for character in item.type):
        raise DataError(f"class name {item.type!r} cannot be written to a KITTI file (it must be one word)")
    occluded = int(item.occluded) if item.occluded == int(item.occluded) else item.occluded
    numbers = [item.alpha, *item.box, *item.dimensions, *item.location, item.rotation_y]
    line = f"{item.type} {_number(item.truncated)} {occluded} " + " ".join(_number(value) for value in numbers)
    return line if item.score is None else f"{line} {float(item.score):.6f}"


def write_kitti_file(path: str | Path, objects: Iterable[KittiObject]) -> Path:
    """One label or result file, a line per object (an empty file for none)."""
    path = Path(path)
    path.write_text("".join(format_kitti_line(item) + "\n" for item in objects), encoding="utf-8")
    return path
