"""Where a dataset's converted records are, read from its ``manifest.json``.

This is what a dataset factory returns (core/build.py). No TensorFlow here:
run.py can report what a dataset holds without starting TensorFlow.

A tiled dataset (its ``tile`` param set) writes one record per tile, so a split's
``images`` counts tiles; the manifest then also holds:

- ``splits.<split>.source_images``: how many source images the split's tiles come from;
- ``tiles``: ``size``, ``overlap`` and ``min_area_ratio`` as converted, and ``images``:
  for each split, the source images in record order, each with ``key`` (the records'
  ``image/source_key``), ``image`` (its path), ``size`` ([height, width]) and ``tiles``
  (one [top, left, height, width] per record, in record order; one covering the whole
  image when it is no larger than a tile). A ``val`` image also has ``boxes`` (x1, y1,
  x2, y2 in its pixels, as labelled) and ``classes`` (class indices, -1 for an ignore
  region): the full-size ground truth that whole-image evaluation by sliced prediction
  needs. The split is by source image: no key is in both splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from detplug.core.errors import DataError

MANIFEST_NAME = "manifest.json"

#: Bump when the record features or the manifest layout change; a cache folder
#: written with another version is rebuilt rather than misread.
FORMAT_VERSION = 3

SPLITS = ("train", "val")

_REQUIRED_KEYS = ("format_version", "dataset", "source", "image_size", "size_policy", "classes", "splits")


@attrs.frozen(eq=False)
class PreparedData:
    """A folder of TFRecord shards plus the manifest that lists them."""

    directory: Path = attrs.field(converter=Path)
    manifest: dict[str, Any]

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.manifest["image_size"]
        return int(height), int(width)

    def files(self, split: str) -> list[Path]:
        """The absolute paths of a split's shards, in manifest order."""
        return [self.directory / shard["file"] for shard in self._split(split)["shards"]]

    @property
    def train_files(self) -> list[Path]:
        return self.files("train")

    @property
    def val_files(self) -> list[Path]:
        return self.files("val")

    def images(self, split: str) -> int:
        return int(self._split(split)["images"])

    def shard_records(self, split: str) -> list[int]:
        """How many records each of a split's shards holds, in manifest order."""
        return [int(shard["records"]) for shard in self._split(split)["shards"]]

    @property
    def tile(self) -> dict[str, Any] | None:
        """How the records were tiled (``size``, ``overlap``, ``min_area_ratio``), or None."""
        tiles = self.manifest.get("tiles")
        return None if tiles is None else {key: value for key, value in tiles.items() if key != "images"}

    def source_images(self, split: str) -> list[dict[str, Any]]:
        """A tiled split's source images, each with its key, image path, size and tiles (and
        for ``val`` its boxes and classes; see the module docstring); empty when not tiled."""
        self._split(split)
        return list(self.manifest.get("tiles", {}).get("images", {}).get(split, []))

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """The bad images left out by a ``skip_bad`` conversion: image, split and reasons."""
        return list(self.manifest.get("skipped", []))

    def _split(self, split: str) -> dict[str, Any]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
        return self.manifest["splits"][split]


def read_prepared(directory: str | Path) -> PreparedData:
    """Read ``directory/manifest.json``; DataError naming the file if it is missing,
    unreadable, of another format version or lists a shard that is not there."""
    directory = Path(directory).absolute()
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path} is missing: {directory} is not a finished conversion; delete the folder and run again"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path} cannot be read ({error}); delete {directory} and run again") from None
    if not isinstance(manifest, dict) or any(key not in manifest for key in _REQUIRED_KEYS):
        missing = [key for key in _REQUIRED_KEYS if not isinstance(manifest, dict) or key not in manifest]
        raise DataError(f"{path} lacks the keys {', '.join(missing)}; delete {directory} and run again")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DataError(
            f"{path} has format_version {manifest['format_version']!r} but this detplug reads "
            f"{FORMAT_VERSION}; delete {directory} and run again"
        )
    for split in SPLITS:
        entry = manifest["splits"].get(split) if isinstance(manifest["splits"], dict) else None
        if not isinstance(entry, dict) or "images" not in entry or "shards" not in entry:
            raise DataError(f"{path} has no valid '{split}' split; delete {directory} and run again")
        for shard in entry["shards"]:
            shard_path = directory / shard["file"]
            if not shard_path.is_file():
                raise DataError(
                    f"{path} lists shard {shard['file']}, which is missing from {directory}; "
                    f"delete the folder and run again"
                )
            # A shard changed after conversion (truncated by a full disk, a copy cut short) is
            # caught by its size and its count of records when the records are opened;
            # --verify checks every byte.
            redo = (f"it changed after conversion; delete {directory} and run again (or convert it again with "
                    f"`run.py prepare --plan PLAN --force`)")
            if "bytes" in shard and shard_path.stat().st_size != shard["bytes"]:
                raise DataError(f"shard {shard_path} is {shard_path.stat().st_size:,} bytes but {path} says "
                                f"{shard['bytes']:,}: {redo}")
            count = count_records(shard_path)
            if count != shard["records"]:
                found = ("is not a whole TFRecord file" if count is None
                         else f"holds {count:,} record{'' if count == 1 else 's'}")
                raise DataError(f"shard {shard_path} {found} but {path} lists {shard['records']:,}: {redo}")
    return PreparedData(directory, manifest)


#: A TFRecord is framed as: length (uint64, little-endian), the length's CRC (4 bytes), the
#: data, the data's CRC (4 bytes).
_LENGTH_BYTES, _CRC_BYTES = 8, 4


def count_records(path: Path) -> int | None:
    """How many records the uncompressed TFRecord file ``path`` holds, from its framing alone
    (a seek per record, none of the data read); None when the framing does not end exactly at
    the end of the file. The CRCs are not checked: ``--verify`` reads every record."""
    size = path.stat().st_size
    count, offset = 0, 0
    with open(path, "rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(_LENGTH_BYTES)
            if len(header) < _LENGTH_BYTES:
                return None
            offset += _LENGTH_BYTES + _CRC_BYTES + int.from_bytes(header, "little") + _CRC_BYTES
            count += 1
    return count if offset == size else None
