"""What sliced prediction and whole-image evaluation need from the data side (no TensorFlow).

- :class:`Slicing`: how an image is cut for prediction -- the tile grid of core/data/tiles.py,
  and whether the whole image, shrunk to the model input, is looked at too.
- :func:`dataset_slicing`: a dataset's tiling as its params give it (``tile = { size,
  overlap, min_area_ratio }``), the default of ``predict --tile``.
- :func:`prepared_slicing` and :func:`source_images`: a converted dataset's tiling and the whole
  source images behind a tiled split, with their ground truth in source pixels, as the
  manifest lists them. Both are None for a dataset converted without tiles, whose records
  already are whole images.

What they read is what a tiling conversion writes (core/data/prepared.py's docstring): the
manifest's ``tiles`` (``size``, ``overlap``, ``min_area_ratio``; absent: untiled) and its
``tiles.images.<split>``, one entry a source image: ``key``, ``image`` (its path, absolute or
relative to ``source.path``), ``size`` ([height, width]), and for the val split ``boxes``
(x1, y1, x2, y2 in source pixels) and ``classes`` (-1 marks an ignore region); ``truncated``
and ``occluded`` are 0 where an entry has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from detplug.core.data.prepared import MANIFEST_NAME, PreparedData
from detplug.core.data.tiles import DEFAULT_OVERLAP, Tile, tile_grid
from detplug.core.errors import DataError


def _tile_size(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"tile size must be a whole number of pixels >= 1 (got {value!r})")


def _overlap(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1): a share of the tile size (got {value!r})")


@attrs.frozen
class Slicing:
    """Cut an image into ``size``-pixel tiles overlapping by ``overlap`` of a tile (the grid
    training's tiles were cut on), and with ``full_image_pass`` also look at the whole image
    shrunk to the model input, for objects larger than a tile."""

    size: int = attrs.field(validator=_tile_size)
    overlap: float = attrs.field(default=DEFAULT_OVERLAP, converter=float, validator=_overlap)
    full_image_pass: bool = False

    def tiles(self, height: int, width: int) -> list[Tile]:
        return tile_grid(height, width, self.size, self.overlap)

    def describe(self) -> str:
        """``sliced: 320 px tiles, overlap 0.2`` (``, and the whole image`` with the full pass)."""
        return (f"sliced: {self.size} px tiles, overlap {self.overlap:g}"
                + (", and the whole image" if self.full_image_pass else ""))


def dataset_slicing(params: Any) -> Slicing | None:
    """The tiling a dataset's params ask for (``tile = { size, overlap, ... }``, a table or an
    attrs object), None when they ask for none (no ``tile``, or a size of 0)."""
    tile = getattr(params, "tile", None)
    return _slicing(tile) if tile is not None else None


def prepared_slicing(prepared: PreparedData) -> Slicing | None:
    """The tiling a converted dataset was cut with (its manifest's ``tiles``); None if untiled."""
    tile = prepared.tile
    try:
        return _slicing(tile) if tile is not None else None
    except (TypeError, ValueError, KeyError) as error:
        raise DataError(f"{prepared.directory / MANIFEST_NAME}: 'tiles' is not a valid tiling ({error}); delete "
                        f"{prepared.directory} and convert again") from None


def _slicing(tile: Any) -> Slicing | None:
    size = tile.get("size", 0) if isinstance(tile, Mapping) else getattr(tile, "size", 0)
    overlap = tile.get("overlap", DEFAULT_OVERLAP) if isinstance(tile, Mapping) else \
        getattr(tile, "overlap", DEFAULT_OVERLAP)
    return Slicing(int(size), overlap) if size else None


@attrs.frozen(eq=False)
class SourceImage:
    """One whole image of a tiled split: its file, its (height, width), and its ground truth
    in its own pixels: boxes x1 y1 x2 y2, class indices (-1 marks an ignore region),
    truncation and occlusion as the source gives them (0 where it has none)."""

    key: str
    path: Path
    size: tuple[int, int]
    boxes: np.ndarray
    classes: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray


def source_images(prepared: PreparedData, split: str) -> list[SourceImage] | None:
    """The whole source images of ``split`` of a tiled dataset, as its manifest lists them;
    None when the dataset was converted without tiles (its records are the whole images).
    A DataError names the manifest when a tiled split lists none, and an image file that is
    gone: whole-image evaluation reads the source images, which the records do not hold."""
    if prepared_slicing(prepared) is None:
        return None
    manifest_path = prepared.directory / MANIFEST_NAME
    listed = prepared.source_images(split)
    if not listed:
        raise DataError(f"{manifest_path} is tiled but lists no source_images of its {split} split; convert again "
                        f"(--prepare --force), or set [evaluation] on = \"tiles\" to score the tiles")
    root = Path(prepared.manifest["source"]["path"])
    images = []
    for entry in listed:
        try:
            images.append(_source_image(entry, root))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{manifest_path}: a {split} source image entry is not valid ({error!r}); delete "
                            f"{prepared.directory} and convert again") from None
    missing = [image.path for image in images if not image.path.is_file()]
    if missing:
        raise DataError(f"whole-image evaluation reads the source images of {prepared.dataset}'s {split} split, "
                        f"but {missing[0]} is gone ({len(missing)} of {len(images)} missing); put the source "
                        f"back at {root}, or set [evaluation] on = \"tiles\" to score the tiles")
    return images


def _source_image(entry: Mapping[str, Any], root: Path) -> SourceImage:
    boxes = np.asarray(entry.get("boxes", []), np.float64).reshape(-1, 4)
    count = len(boxes)

    def column(name: str, dtype: type) -> np.ndarray:
        # Classes go with boxes; truncation and occlusion are 0 where the source has none.
        given = entry[name] if name == "classes" else entry.get(name, np.zeros(count))
        values: np.ndarray = np.asarray(given, dtype).reshape(-1)
        if len(values) != count:
            raise ValueError(f"'{name}' has {len(values)} entries for {count} boxes")
        return values

    height, width = entry["size"]
    return SourceImage(key=str(entry["key"]), path=root / entry["image"], size=(int(height), int(width)),
                       boxes=boxes, classes=column("classes", np.int64), truncated=column("truncated", np.float64),
                       occluded=column("occluded", np.int64))
