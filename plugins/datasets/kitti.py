"""KITTI 2D object detection (training/image_2 + training/label_2): the reader.

Each label line is ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry``.
Types map to the plan's classes (``class_map`` folds e.g. Van into Car);
DontCare lines become ignore regions; KITTI's other own types are dropped;
any other type is an error. The split is seeded by ``val_ratio`` or read from
an ImageSets folder's train.txt / val.txt.

No TensorFlow at module level: worker processes import this module to unpickle the reader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import attrs

from detplug.core.data.images import IMAGE_SUFFIXES, is_image_file
from detplug.core.data.kitti_format import DONT_CARE, KITTI_TYPES, read_kitti_file
from detplug.core.data.prepared import PreparedData
from detplug.core.data.source import IGNORE_CLASS, SourceItem, SourceObject
from detplug.core.errors import DataError
from detplug.plugins.datasets import KittiParams, RecordParams, SyntheticParams
from detplug.plugins.datasets.synthetic import DRAWABLE_CLASSES, MARKER, generate_kitti_sample, sample_folder

if TYPE_CHECKING:  # convert.py imports TensorFlow, which worker processes must not load
    from detplug.core.data.convert import Source

log = logging.getLogger(__name__)

IMAGE_DIR = Path("training") / "image_2"
LABEL_DIR = Path("training") / "label_2"


def type_index(classes: tuple[str, ...], class_map: Mapping[str, str]) -> dict[str, int]:
    """KITTI type -> class index: the classes themselves, then ``class_map``, then DontCare."""
    index = {name: position for position, name in enumerate(classes)}
    for kitti_type, name in class_map.items():
        index[kitti_type] = classes.index(name)
    index[DONT_CARE] = IGNORE_CLASS
    return index


@attrs.frozen
class KittiReader:
    """Reads one label file; picklable, so it travels to the worker processes."""

    type_index: Mapping[str, int]
    classes: tuple[str, ...]

    def read(self, item: SourceItem, image_size: tuple[int, int] | None) -> tuple[list[SourceObject], list[str]]:
        kitti_objects, problems = read_kitti_file(Path(item.label))
        objects = []
        for kitti_object in kitti_objects:
            where = f"{item.label}:{kitti_object.line}"
            label = self.type_index.get(kitti_object.type)
            if label is None:
                if kitti_object.type not in KITTI_TYPES:
                    problems.append((kitti_object.line,
                        f"{where}: unknown class '{kitti_object.type}'; the known classes are "
                        f"{', '.join(self.classes)}, {DONT_CARE} and KITTI's own types "
                        f"{', '.join(KITTI_TYPES)} (dropped unless class_map maps them)"
                    ))
                continue  # one of KITTI's types the plan does not train: dropped
            objects.append(
                SourceObject(kitti_object.box, label, kitti_object.truncated, kitti_object.occluded, where)
            )
        # In line order, so a user reads the file top to bottom (box checks follow, also in order).
        return objects, [message for _, message in sorted(problems, key=lambda problem: problem[0])]


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


def _read_split_file(path: Path, items: Mapping[str, SourceItem], image_dir: Path) -> list[SourceItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read the split file ({error})") from None
    listed = []
    for line_number, line in enumerate(lines, start=1):
        stem = line.strip()
        if not stem:
            continue
        if stem not in items:
            raise DataError(f"{path}:{line_number}: image '{stem}' is not in {image_dir} (no {stem}.png)")
        listed.append(items[stem])
    return listed


def _given_splits(root: Path, split_files: str, items: Mapping[str, SourceItem]) -> tuple[dict, list[Path]]:
    """train/val from ``split_files/{train,val}.txt`` (one image stem a line, as in KITTI's
    ImageSets); the folder is taken relative to the KITTI root unless absolute."""
    folder = Path(split_files).expanduser()
    folder = folder if folder.is_absolute() else root / folder
    splits, files = {}, []
    for split in ("train", "val"):
        path = folder / f"{split}.txt"
        if not path.is_file():
            raise DataError(f"{path} is missing: split_files = {split_files!r} must hold train.txt and val.txt")
        splits[split] = _read_split_file(path, items, root / IMAGE_DIR)
        files.append(path)
    both = {i.key for i in splits["train"]} & {i.key for i in splits["val"]}
    if both:
        raise DataError(f"{folder}: images {', '.join(sorted(both)[:5])} are in both train.txt and val.txt")
    return splits, files


def kitti_source(root: Path, params: RecordParams, *, class_map: Mapping[str, str] | None = None,
                 split_files: str = "") -> Source:
    """List a KITTI folder: one item per image in training/image_2 (.png, or any image suffix in
    any case), its label file beside."""
    from detplug.core.data.convert import Source

    root = Path(root).absolute()
    class_map = dict(class_map or {})
    if DONT_CARE in params.classes or DONT_CARE in class_map:
        raise DataError(f"'{DONT_CARE}' cannot be a class or be mapped: KITTI uses it to mark ignore regions")
    folder = root / IMAGE_DIR
    images = sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []
    if not images:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}, in any case)")
    by_stem = {
        path.stem: SourceItem(key=path.name, image=str(path), label=str(root / LABEL_DIR / f"{path.stem}.txt"))
        for path in images
    }
    labels = root / LABEL_DIR
    unmatched = sorted(p.name for p in labels.glob("*.txt") if p.stem not in by_stem) if labels.is_dir() else []
    index = type_index(tuple(params.classes), class_map)
    fingerprint_files = [p for item in by_stem.values() for p in (Path(item.image), Path(item.label))]
    reader = KittiReader(index, tuple(params.classes))
    if not split_files:
        return Source(format="kitti", root=root, classes=params.classes, label_map=index, reader=reader,
                      items=list(by_stem.values()), fingerprint_files=fingerprint_files, unmatched_labels=unmatched)
    splits, lists = _given_splits(root, split_files, by_stem)
    unlisted = len(by_stem) - len(splits["train"]) - len(splits["val"])
    return Source(format="kitti", root=root, classes=params.classes, label_map=index, reader=reader,
                  splits=splits, split_origin=", ".join(map(str, lists)),
                  fingerprint_files=fingerprint_files + lists, notes={"unlisted_images": unlisted},
                  unmatched_labels=unmatched)


def convert_kitti(root: Path, params: RecordParams, *, cache_dir: Path, dataset: str = "kitti",
                  class_map: Mapping[str, str] | None = None, split_files: str = "", skip_bad: bool = False,
                  force: bool = False, workers: int | None = None) -> PreparedData:
    """Convert a KITTI folder into ``cache_dir/records/<dataset>-<fingerprint[:16]>``, or
    reuse that folder when the source and params are unchanged."""
    from detplug.core.data.convert import convert_source

    source = kitti_source(root, params, class_map=class_map, split_files=split_files)
    return convert_source(source, params, cache_dir=cache_dir, dataset=dataset, skip_bad=skip_bad, force=force,
                          workers=workers)


class _SampleSettings(TypedDict):
    """The arguments that pick and draw a synthetic sample (sample_folder, generate_kitti_sample)."""

    images: int
    source_size: Sequence[int]
    seed: int
    classes: Sequence[str]


def prepare_kitti(params: KittiParams, *, data_root: str | Path | None, cache_dir: str | Path,
                  skip_bad: bool = False, force: bool = False) -> PreparedData:
    """The ``kitti`` dataset factory (core/build.py's contract)."""
    root = find_root(data_root, params)
    split_files = params.split_files
    if root is None:
        if not params.synthetic_fallback:
            raise DataError(
                "no KITTI data: pass --data-root, set KITTI_ROOT or the dataset's 'root' param "
                "to a folder holding training/image_2 and training/label_2"
            )
        sample = SyntheticParams()
        settings: _SampleSettings = {
            "images": params.synthetic_images,
            "source_size": sample.source_size,
            "seed": sample.seed,
            "classes": DRAWABLE_CLASSES,
        }
        folder = sample_folder(cache_dir, **settings)
        log.info(f"no KITTI data (no --data-root, KITTI_ROOT unset): using the synthetic KITTI-format sample in "
                 f"{folder}")
        root = generate_kitti_sample(folder, **settings)
        split_files = ""  # the sample has no ImageSets: split it by val_ratio
    return convert_kitti(root, params, cache_dir=Path(cache_dir), class_map=params.class_map,
                         split_files=split_files, skip_bad=skip_bad, force=force)


def prepare_synthetic(params: SyntheticParams, *, data_root: str | Path | None, cache_dir: str | Path,
                      skip_bad: bool = False, force: bool = False) -> PreparedData:
    """The ``synthetic`` dataset factory: draw the sample (once) then convert it as KITTI.
    ``data_root`` is not used: the sample lives in the cache."""
    settings: _SampleSettings = {
        "images": params.images,
        "source_size": params.source_size,
        "seed": params.seed,
        "classes": params.classes,
    }
    folder = sample_folder(cache_dir, **settings)
    if not (folder / MARKER).is_file():
        log.info(f"synthetic: drawing {params.images} KITTI-format images into {folder}")
    root = generate_kitti_sample(folder, **settings)
    return convert_kitti(root, params, cache_dir=Path(cache_dir), dataset="synthetic", skip_bad=skip_bad, force=force)
