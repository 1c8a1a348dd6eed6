"""KITTI 2D object detection (training/image_2 + training/label_2) to detplug records.

Images are letterboxed to the plan's image_size while converting, so the
records hold exactly what the model sees. The records folder is named by a
fingerprint of the source listing and the conversion params, so an unchanged
source is converted once and reused.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import io
import json
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import attrs
import numpy as np
from PIL import Image

from detplug.core.data import records
from detplug.core.data.letterbox import letterbox_image
from detplug.core.data.prepared import FORMAT_VERSION, MANIFEST_NAME, PreparedData, read_prepared
from detplug.core.errors import DataError
from detplug.plugins.datasets import KittiParams, RecordParams, SyntheticParams

COLUMNS = (
    "type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2",
    "height", "width", "length", "x", "y", "z", "rotation_y",
)  # fmt: skip
DONT_CARE = "DontCare"
IMAGE_DIR = Path("training") / "image_2"
LABEL_DIR = Path("training") / "label_2"

#: Print a progress line every this many images.
PROGRESS_EVERY = 500

#: Fast PNG compression: the records are a cache, and level 6 costs several
#: times the CPU for files only ~10% smaller.
PNG_COMPRESS_LEVEL = 1

#: Images converted ahead of the writer; bounds memory on large sources.
WINDOW = 64


@attrs.frozen
class KittiObject:
    """One label line: the class name, KITTI's truncation/occlusion and the pixel box."""

    type: str
    truncated: float
    occluded: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels


def parse_label_file(path: Path) -> list[KittiObject]:
    """The objects of one KITTI label file; DataError naming file and line on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the label file ({error})") from None
    objects = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != len(COLUMNS):
            raise DataError(
                f"{path}:{line_number}: expected {len(COLUMNS)} columns ({' '.join(COLUMNS)}), found {len(tokens)}"
            )
        numbers = []
        for column, token in zip(COLUMNS[1:], tokens[1:], strict=True):
            try:
                numbers.append(float(token))
            except ValueError:
                raise DataError(f"{path}:{line_number}: column '{column}' must be a number (got {token!r})") from None
        x1, y1, x2, y2 = numbers[3:7]
        if not (x2 >= x1 and y2 >= y1):
            raise DataError(f"{path}:{line_number}: the box must have x1 <= x2 and y1 <= y2 (got {x1} {y1} {x2} {y2})")
        objects.append(KittiObject(tokens[0], numbers[0], numbers[1], (x1, y1, x2, y2)))
    return objects


# -- finding the source ---------------------------------------------------------------


def _check_root(root: Path, origin: str) -> Path:
    expected = f"expected {root / IMAGE_DIR}/*.png and {root / LABEL_DIR}/*.txt (the KITTI 2D object layout)"
    if not root.exists():
        raise DataError(f"KITTI root {root} (from {origin}) does not exist; {expected}")
    if not root.is_dir():
        raise DataError(f"KITTI root {root} (from {origin}) is not a folder; {expected}")
    if not (root / IMAGE_DIR).is_dir() or not (root / LABEL_DIR).is_dir():
        hint = ""
        if (root / "image_2").is_dir() and root.name == "training":
            hint = f"; give its parent {root.parent} instead"
        raise DataError(
            f"KITTI root {root} (from {origin}) lacks training/image_2 and training/label_2; {expected}{hint}"
        )
    return root


def find_root(data_root: str | Path | None, params: KittiParams) -> Path | None:
    """The KITTI folder from --data-root, then params.root, then $KITTI_ROOT; None if none is given.
    A folder that is given but unusable is a DataError naming it and its origin."""
    for value, origin in (
        (data_root, "--data-root"),
        (params.root, "the dataset's 'root' param"),
        (os.environ.get("KITTI_ROOT"), "$KITTI_ROOT"),
    ):
        if value:
            return _check_root(Path(value).expanduser().absolute(), origin)
    return None


def _source_stems(root: Path) -> list[str]:
    """The image names (without .png), each checked to have its label file."""
    stems = sorted(path.stem for path in (root / IMAGE_DIR).glob("*.png"))
    if not stems:
        raise DataError(f"{root / IMAGE_DIR} holds no .png images")
    for stem in stems:
        label = root / LABEL_DIR / f"{stem}.txt"
        if not label.is_file():
            raise DataError(f"{label} is missing: every image of {root / IMAGE_DIR} needs its label file")
    return stems


def conversion_params(params: RecordParams) -> dict:
    """The params that change the records; any change gives a new records folder."""
    return {
        "format_version": FORMAT_VERSION,
        "image_size": list(params.image_size),
        "classes": list(params.classes),
        "max_boxes": params.max_boxes,
        "val_ratio": params.val_ratio,
        "split_seed": params.split_seed,
    }


def source_fingerprint(root: Path, stems: Sequence[str], params: RecordParams) -> str:
    """sha256 of every source file's name, size and mtime plus the conversion params:
    cheap to compute (stat only) and changes whenever a file or a param does."""
    digest = hashlib.sha256(json.dumps(conversion_params(params), sort_keys=True).encode())
    for stem in stems:
        for path in (root / IMAGE_DIR / f"{stem}.png", root / LABEL_DIR / f"{stem}.txt"):
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def split_stems(stems: Sequence[str], val_ratio: float, split_seed: int) -> tuple[list[str], list[str]]:
    """A seeded random train/val split; each keeps name order."""
    if len(stems) < 2:
        raise DataError(f"a train/val split needs at least 2 images (found {len(stems)})")
    shuffled = list(stems)
    random.Random(split_seed).shuffle(shuffled)
    val_count = min(len(stems) - 1, max(1, round(len(stems) * val_ratio)))
    return sorted(shuffled[val_count:]), sorted(shuffled[:val_count])


# -- converting -----------------------------------------------------------------------


@attrs.frozen
class _Converted:
    record: records.Record
    dropped_boxes: int  # beyond max_boxes


def _convert_one(root: Path, stem: str, params: RecordParams) -> _Converted:
    class_index = {name: index for index, name in enumerate(params.classes)}
    kept = []
    for kitti_object in parse_label_file(root / LABEL_DIR / f"{stem}.txt"):
        if kitti_object.type == DONT_CARE:
            kept.append((kitti_object, records.IGNORE_CLASS))
        elif kitti_object.type in class_index:
            kept.append((kitti_object, class_index[kitti_object.type]))
        # Other KITTI types (Van, Truck, Misc, ...) are not in the plan: dropped.
    dropped = max(0, len(kept) - params.max_boxes)
    kept = kept[: params.max_boxes]

    image_path = root / IMAGE_DIR / f"{stem}.png"
    try:
        with Image.open(image_path) as source:
            source.load()
            letterboxed, mapping = letterbox_image(source, tuple(params.image_size))
    except (OSError, ValueError) as error:
        raise DataError(f"{image_path} cannot be read as an image ({error})") from None
    png = io.BytesIO()
    letterboxed.save(png, format="PNG", compress_level=PNG_COMPRESS_LEVEL)

    boxes = mapping.boxes(np.array([o.box for o, _ in kept], np.float64).reshape(-1, 4))
    # A box clipped to nothing (outside the image) would read as padding; leave it out.
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    record = records.Record(
        png=png.getvalue(),
        filename=image_path.name,
        original_size=mapping.source,
        boxes=boxes[nonempty],
        classes=np.array([index for _, index in kept], np.int64).reshape(-1)[nonempty],
        truncated=np.array([o.truncated for o, _ in kept], np.float32).reshape(-1)[nonempty],
        occluded=np.array([o.occluded for o, _ in kept], np.float32).reshape(-1)[nonempty],
    )
    return _Converted(record, dropped)


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def _ordered_parallel(function: Callable[[_Item], _Result], items: Iterable[_Item]) -> Iterator[_Result]:
    """``map`` over a thread pool, in order, at most WINDOW ahead (Pillow's decode,
    resize and encode release the GIL, so threads use every core)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= WINDOW:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.dropped_boxes, self.start = total, 0, 0, time.perf_counter()

    def count(self, converted: Iterable[_Converted]) -> Iterator[records.Record]:
        for item in converted:
            self.done += 1
            self.dropped_boxes += item.dropped_boxes
            if self.done % PROGRESS_EVERY == 0 and self.done < self.total:
                print(f"  {self.done}/{self.total} images ({self.rate:.0f} images/s)", flush=True)
            yield item.record

    @property
    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)


def convert_kitti(root: Path, params: RecordParams, *, cache_dir: Path, dataset: str = "kitti") -> PreparedData:
    """Convert a KITTI folder into ``cache_dir/records/<dataset>-<fingerprint[:16]>``, or
    reuse that folder when the source and params are unchanged."""
    root = Path(root).absolute()
    if DONT_CARE in params.classes:
        raise DataError(f"'{DONT_CARE}' cannot be one of the classes: KITTI uses it to mark ignore regions")
    stems = _source_stems(root)
    fingerprint = source_fingerprint(root, stems, params)
    final = Path(cache_dir).absolute() / "records" / f"{dataset}-{fingerprint[:16]}"
    if (final / MANIFEST_NAME).is_file():
        prepared = read_prepared(final)
        print(f"{dataset}: source unchanged, reusing the records in {final}")
        return prepared

    train, val = split_stems(stems, params.val_ratio, params.split_seed)
    print(f"{dataset}: converting {len(stems)} images from {root} to {tuple(params.image_size)} records in {final}")
    progress = _Progress(len(stems))
    with records.staging(final) as folder:
        splits = {}
        for split, names in (("train", train), ("val", val)):
            converted = _ordered_parallel(lambda stem: _convert_one(root, stem, params), names)
            splits[split] = records.write_split(folder, split, progress.count(converted), len(names), params.classes)
        records.write_manifest(
            folder,
            {
                "format_version": FORMAT_VERSION,
                "dataset": dataset,
                "source": {"path": str(root), "fingerprint": fingerprint},
                "image_size": list(params.image_size),
                "size_policy": "letterbox",
                "classes": list(params.classes),
                "conversion": conversion_params(params),
                "splits": splits,
            },
        )
    seen = {name: sum(s["boxes_per_class"][name] for s in splits.values()) for name in params.classes}
    print(
        f"{dataset}: converted {progress.done} images ({progress.rate:.0f} images/s): "
        + ", ".join(f"{name} {count}" for name, count in seen.items())
        + f", {sum(s['ignore_regions'] for s in splits.values())} ignore regions"
    )
    if progress.dropped_boxes:
        print(f"{dataset}: {progress.dropped_boxes} boxes beyond max_boxes={params.max_boxes} were left out")
    missing = [name for name, count in seen.items() if count == 0]
    if missing:
        names = ", ".join(missing)
        print(f"{dataset}: warning: no boxes of class {names} in {root / LABEL_DIR}; check the plan's classes")
    return read_prepared(final)


def prepare_kitti(params: KittiParams, *, data_root: str | Path | None, cache_dir: str | Path) -> PreparedData:
    """The ``kitti`` dataset factory (registry.py's contract)."""
    from detplug.plugins.datasets.synthetic import DRAWABLE_CLASSES, generate_kitti_sample, sample_folder

    root = find_root(data_root, params)
    if root is None:
        if not params.synthetic_fallback:
            raise DataError(
                "no KITTI data: pass --data-root, set KITTI_ROOT or the dataset's 'root' param "
                "to a folder holding training/image_2 and training/label_2"
            )
        sample = SyntheticParams()
        settings = {
            "images": sample.images,
            "source_size": sample.source_size,
            "seed": sample.seed,
            "classes": DRAWABLE_CLASSES,
        }
        folder = sample_folder(cache_dir, **settings)
        print(f"no KITTI data (no --data-root, KITTI_ROOT unset): using the synthetic KITTI-format sample in {folder}")
        root = generate_kitti_sample(folder, **settings)
    return convert_kitti(root, params, cache_dir=Path(cache_dir))
