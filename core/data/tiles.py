"""Cutting a large image into tiles, and a box into the part of it a tile holds (no TensorFlow).

Training (tiles written at conversion) and sliced prediction (tiles cut at run time) use
this one grid, so a model is asked at prediction time about exactly the windows it was
trained on. The grid follows SAHI's slicing: windows of ``size`` pixels stepping by
``size * (1 - overlap)``, the last row and column shifted back to end at the image's edge
(never padded: padding would be a kind of image the model never sees whole).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import attrs

#: The overlap of neighbouring tiles when neither the command nor the dataset gives one:
#: SAHI's default ratio.
DEFAULT_OVERLAP = 0.2


class TileSettings(Protocol):
    """How a dataset asks to be tiled (the built-in datasets' ``tile`` param, TileParams, is one):
    tiles of ``size`` pixels overlapping by ``overlap``; a cut box keeps its label where at least
    ``min_area_ratio`` of its area is inside the tile."""

    @property
    def size(self) -> int: ...

    @property
    def overlap(self) -> float: ...

    @property
    def min_area_ratio(self) -> float: ...


@attrs.frozen
class Tile:
    """A window of an image, in the image's pixels: rows ``top`` to ``top + height``,
    columns ``left`` to ``left + width`` (end excluded)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def name(self) -> str:
        """The suffix that tells a tile's record from its source image's: ``@y0_x0``."""
        return f"@{self.top}_{self.left}"

    def window(self) -> tuple[int, int, int, int]:
        """(top, left, height, width): how records and the manifest store a tile."""
        return (self.top, self.left, self.height, self.width)


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Where the windows along one side of ``length`` pixels start: one window at 0 when the
    side fits in ``size``, else steps of ``size * (1 - overlap)`` (at least one pixel), the last
    start moved back to ``length - size`` so the last window ends at the edge."""
    if length <= size:
        return [0]
    stride = max(1, int(round(size * (1.0 - overlap))))
    last = length - size
    starts = list(range(0, last, stride))
    starts.append(last)
    return starts


def tile_grid(height: int, width: int, size: int, overlap: float) -> list[Tile]:
    """The windows that cover an image of ``height`` x ``width``, row by row. An image no larger
    than ``size`` either way is one tile, the whole image; a side shorter than ``size`` is not
    cut (its tiles are as high, or as wide, as the image)."""
    if size <= 0:
        raise ValueError(f"tile size must be > 0 (got {size})")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1) (got {overlap})")
    tile_height, tile_width = min(size, height), min(size, width)
    return [
        Tile(top, left, tile_height, tile_width)
        for top in tile_starts(height, size, overlap)
        for left in tile_starts(width, size, overlap)
    ]


@attrs.frozen
class ClippedBox:
    """A box as one tile holds it: ``box`` (x1, y1, x2, y2) in the tile's pixels, ``index`` of the
    source box, and whether enough of it is inside to train on (``kept``) or it is only a part of
    an object, to be an ignore region there (so that half an object is never a negative)."""

    index: int
    box: tuple[float, float, float, float]
    kept: bool


def clip_to_tile(
    boxes: Sequence[tuple[float, float, float, float]], tile: Tile, min_area_ratio: float
) -> list[ClippedBox]:
    """Each box (x1, y1, x2, y2, image pixels) that overlaps ``tile``, clipped to it and moved to
    its pixels. A box keeps its label when at least ``min_area_ratio`` of its area is inside the
    tile, and is an ignore region there otherwise; a box that does not reach into the tile, or
    only along an edge, is left out."""
    clipped = []
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        left, top = max(x1, tile.left), max(y1, tile.top)
        right, bottom = min(x2, tile.right), min(y2, tile.bottom)
        if right <= left or bottom <= top:
            continue
        area = (x2 - x1) * (y2 - y1)
        inside = (right - left) * (bottom - top)
        kept = inside >= min_area_ratio * area * (1.0 - 1e-9)  # a ratio of exactly min_area_ratio keeps it
        box = (left - tile.left, top - tile.top, right - tile.left, bottom - tile.top)
        clipped.append(ClippedBox(index=index, box=box, kept=kept))
    return clipped


def tiles_needed(height: int, width: int, size: int, overlap: float) -> int:
    """How many tiles ``tile_grid`` cuts an image into, without listing them."""
    def count(length: int) -> int:
        if length <= size:
            return 1
        stride = max(1, int(round(size * (1.0 - overlap))))
        return math.ceil((length - size) / stride) + 1

    return count(height) * count(width)
