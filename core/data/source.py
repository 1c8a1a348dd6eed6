"""What a format reader hands the converter, and the work done per image (no TensorFlow).

Formats (KITTI, COCO, YOLO txt) differ only in how they list their images and
read one image's labels. Everything after that is common and lives here:
checking every box against the image, cutting it into tiles when the dataset
asks for them, letterboxing, PNG encoding. It runs in
worker processes, so neither this module nor a format's reader may import
TensorFlow: every worker would pay seconds and hundreds of MB for it.

A reader reports *all* problems of an image at once (each one sentence naming
the file and, where there is one, the line), so a user fixes a file in one go.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import attrs
import numpy as np
from PIL import Image

from detplug.core.data.images import read_rgb
from detplug.core.data.letterbox import letterbox_image
from detplug.core.data.tiles import Tile, TileSettings, clip_to_tile, tile_grid
from detplug.core.errors import DataError

#: The class index of an ignore region: no target, but it still masks objectness.
IGNORE_CLASS = -1

#: How far (px) a box may reach past the image border before it is an error:
#: annotation tools often write the last pixel's far edge, or round up.
BOX_TOLERANCE = 1.0

#: Fast PNG compression: the records are a cache, and level 6 costs several
#: times the CPU for files only ~10% smaller.
PNG_COMPRESS_LEVEL = 1


def dataset_root(data_root: str | Path | None, root_param: str, what: str) -> Path | None:
    """A dataset's folder: --data-root, then its ``root`` param; None if neither is given. A
    path that is not a folder is one sentence naming ``what`` (e.g. "COCO root") and where the
    path came from."""
    for value, origin in ((data_root, "--data-root"), (root_param, "the dataset's 'root' param")):
        if value:
            root = Path(value).expanduser().absolute()
            if not root.is_dir():
                raise DataError(f"{what} {root} (from {origin}) is not a folder")
            return root
    return None


@attrs.frozen
class SourceObject:
    """One labelled box as the source gives it."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    label: int  # class index, or IGNORE_CLASS for an ignore region
    truncated: float = 0.0
    occluded: float = 0.0
    where: str = ""  # "file:line" or "file annotation 17": where a message points


@attrs.frozen
class SourceItem:
    """One image to convert. ``key`` is unique within a dataset, orders the records
    and names the image in the manifest; it must not depend on the source's absolute path."""

    key: str
    image: str
    #: The label file, or (for formats whose annotations are read up front, like COCO)
    #: the annotation file the inline ``objects`` came from.
    label: str = ""
    objects: tuple[SourceObject, ...] = ()
    #: Problems already found while listing (inline annotations).
    problems: tuple[str, ...] = ()
    #: (height, width) the annotations claim, checked against the image.
    expected_size: tuple[int, int] | None = None


class LabelReader(Protocol):
    """How a format reads one image's labels (picklable: it travels to worker processes)."""

    def read(self, item: SourceItem, image_size: tuple[int, int] | None) -> tuple[list[SourceObject], list[str]]:
        """The item's objects and every problem found. ``image_size`` is the image's
        (height, width), or None when the image cannot be read."""
        ...


@attrs.frozen
class InlineReader:
    """For formats that read every annotation while listing: the objects travel in the item."""

    def read(self, item: SourceItem, image_size: tuple[int, int] | None) -> tuple[list[SourceObject], list[str]]:
        return list(item.objects), list(item.problems)


@attrs.frozen(eq=False)
class Record:
    """One image (or one tile of an image) and its boxes, ready to serialise (records.py)."""

    png: bytes
    #: The image's key, or for a tile the key and the tile's name (``key@top_left``).
    filename: str
    #: (height, width) of the image, or of the tile, before letterboxing.
    original_size: tuple[int, int]
    boxes: np.ndarray  # (N, 4) float32, y1 x1 y2 x2 in [0, 1] of the letterboxed image
    classes: np.ndarray  # (N,) int64, IGNORE_CLASS for ignore regions
    truncated: np.ndarray  # (N,) float32
    occluded: np.ndarray  # (N,) float32
    #: (N, 4) float32 x1 y1 x2 y2 in source pixels, as the labels give them: KITTI's
    #: easy/moderate/hard levels are defined on the original box height. For a tile, in the
    #: tile's pixels, clipped to it.
    source_boxes: np.ndarray = attrs.field(factory=lambda: np.zeros((0, 4), np.float32))
    #: The source image's key and where in it the record's pixels are: (top, left, height,
    #: width), the whole image unless it was cut into tiles.
    source_key: str = ""
    window: tuple[int, int, int, int] = (0, 0, 0, 0)


@attrs.frozen(eq=False)
class Converted:
    """One source image converted: its record, or one record per tile."""

    key: str
    records: tuple[Record, ...]
    beyond_max_boxes: int  # boxes left out because an image (or tile) had more than max_boxes
    empty_boxes: int  # boxes of zero size after clipping to the image, left out
    #: The source image's (height, width) and its boxes (x1 y1 x2 y2, source pixels) and
    #: classes as labelled: a tiled dataset's manifest keeps them for whole-image evaluation.
    size: tuple[int, int] = (0, 0)
    source_boxes: np.ndarray = attrs.field(factory=lambda: np.zeros((0, 4), np.float32))
    source_classes: np.ndarray = attrs.field(factory=lambda: np.zeros((0,), np.int64))


@attrs.frozen
class Failed:
    key: str
    image: str
    errors: tuple[str, ...]


def check_boxes(objects: Sequence[SourceObject], image_size: tuple[int, int]) -> list[str]:
    """A sentence for every box that is inverted or lies outside the image beyond BOX_TOLERANCE."""
    height, width = image_size
    problems = []
    for item in objects:
        x1, y1, x2, y2 = item.box
        shown = f"(x1 {x1:g}, y1 {y1:g}, x2 {x2:g}, y2 {y2:g})"
        if not all(math.isfinite(v) for v in item.box):
            problems.append(f"{item.where}: the box {shown} must be finite numbers")
        elif x2 < x1 or y2 < y1:
            problems.append(f"{item.where}: the box {shown} has right < left or bottom < top")
        elif x1 < -BOX_TOLERANCE or y1 < -BOX_TOLERANCE or x2 > width + BOX_TOLERANCE or y2 > height + BOX_TOLERANCE:
            problems.append(
                f"{item.where}: the box {shown} lies outside the {width}x{height} image "
                f"by more than {BOX_TOLERANCE:g} px"
            )
    return problems


def _open_image(path: Path) -> tuple[Image.Image | None, str | None]:
    try:
        return read_rgb(path), None
    except DataError as error:
        return None, str(error)
    except FileNotFoundError:
        return None, f"{path} is missing"
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        # UnidentifiedImageError and truncated data are OSErrors.
        return None, f"{path} cannot be read as an image ({error})"


def convert_item(
    reader: LabelReader, item: SourceItem, target: tuple[int, int], max_boxes: int, tile: TileSettings | None = None
) -> Converted | Failed:
    """Read, check, letterbox and PNG-encode one image, or each of its tiles when ``tile`` is
    given and the image is larger than a tile; every problem is collected, none raised."""
    path = Path(item.image)
    image, image_error = _open_image(path)
    errors = [image_error] if image_error else []
    size = (image.height, image.width) if image is not None else None
    objects, label_errors = reader.read(item, size)
    errors += label_errors
    if size is not None:
        if item.expected_size is not None and tuple(item.expected_size) != size:
            errors.append(
                f"{path} is {size[1]}x{size[0]} px but {item.label} gives it as "
                f"{item.expected_size[1]}x{item.expected_size[0]}"
            )
        errors += check_boxes(objects, size)
    if errors:
        return Failed(item.key, str(path), tuple(errors))
    # An image that cannot be read leaves an error: past the return above it was read.
    assert image is not None and size is not None

    windows = tile_grid(size[0], size[1], tile.size, tile.overlap) if tile is not None else []
    if tile is None or len(windows) == 1:  # not tiled, or no larger than a tile: the whole image, as it is
        pieces = [(Tile(0, 0, *size), image, list(objects), item.key)]
    else:
        pieces = [(window, image.crop((window.left, window.top, window.right, window.bottom)),
                   _objects_in(objects, window, tile.min_area_ratio), item.key + window.name())
                  for window in windows]
    records, beyond, empty = [], 0, 0
    for window, pixels, inside, filename in pieces:
        record, left_out, zero_size = _record(pixels, inside, target, max_boxes, filename)
        records.append(attrs.evolve(record, source_key=item.key, window=window.window()))
        beyond, empty = beyond + left_out, empty + zero_size
    return Converted(
        item.key, tuple(records), beyond, empty, size=size,
        source_boxes=np.array([o.box for o in objects], np.float32).reshape(-1, 4),
        source_classes=np.array([o.label for o in objects], np.int64),
    )


def _objects_in(objects: Sequence[SourceObject], window: Tile, min_area_ratio: float) -> list[SourceObject]:
    """The objects a tile holds, clipped to it and in its pixels: an object cut so that less
    than ``min_area_ratio`` of it is inside becomes an ignore region there, so that half an
    object is never trained as background (an ignore region stays one)."""
    clipped = clip_to_tile([o.box for o in objects], window, min_area_ratio)
    return [attrs.evolve(objects[part.index], box=part.box,
                         label=objects[part.index].label if part.kept else IGNORE_CLASS)
            for part in clipped]


def _record(image: Image.Image, objects: Sequence[SourceObject], target: tuple[int, int], max_boxes: int,
            filename: str) -> tuple[Record, int, int]:
    """One letterboxed, PNG-encoded record; how many boxes max_boxes left out and how many
    were of zero size."""
    letterboxed, mapping = letterbox_image(image, target)
    png = io.BytesIO()
    letterboxed.save(png, format="PNG", compress_level=PNG_COMPRESS_LEVEL)

    source_boxes = np.array([o.box for o in objects], np.float64).reshape(-1, 4)
    boxes = mapping.boxes(source_boxes)
    # A box clipped to nothing would read as padding downstream; leave it out.
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    kept = [i for i in range(len(objects)) if nonempty[i]]
    # Real objects before ignore regions, so max_boxes drops ignore regions first.
    kept.sort(key=lambda i: objects[i].label < 0)
    beyond = max(0, len(kept) - max_boxes)
    kept = kept[:max_boxes]
    record = Record(
        png=png.getvalue(),
        filename=filename,
        original_size=(image.height, image.width),
        boxes=boxes[kept].reshape(-1, 4),
        classes=np.array([objects[i].label for i in kept], np.int64),
        truncated=np.array([objects[i].truncated for i in kept], np.float32),
        occluded=np.array([objects[i].occluded for i in kept], np.float32),
        source_boxes=source_boxes[kept].astype(np.float32).reshape(-1, 4),
    )
    return record, beyond, int((~nonempty).sum())


def convert_chunk(
    reader: LabelReader, items: Sequence[SourceItem], target: tuple[int, int], max_boxes: int,
    tile: TileSettings | None = None,
) -> list[Converted | Failed]:
    """:func:`convert_item` over a few items: one task for a worker process, so the
    reader is pickled once per chunk rather than once per image."""
    return [convert_item(reader, item, target, max_boxes, tile) for item in items]
