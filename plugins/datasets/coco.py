"""COCO (an instances JSON + its image folder): the reader.

Category names come from the JSON; ``classes`` picks and orders them (empty:
all, in category id order). Boxes of other categories are dropped. Crowd
annotations (``iscrowd`` 1) of a trained category become ignore regions:
they mark many objects at once, so predictions there are neither rewarded
nor punished. The JSON is read up front (one file), so its objects travel
with each item to the workers; problems are named by file and annotation id.

No TensorFlow at module level: worker processes import this module.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detplug.core.data.prepared import PreparedData
from detplug.core.data.source import IGNORE_CLASS, InlineReader, SourceItem, SourceObject, dataset_root
from detplug.core.errors import DataError
from detplug.plugins.datasets import CocoParams

if TYPE_CHECKING:  # convert.py imports TensorFlow, which worker processes must not load
    from detplug.core.data.convert import Source


def find_root(data_root: str | Path | None, params: CocoParams) -> Path | None:
    """The COCO folder from --data-root, then params.root; None if neither is given."""
    return dataset_root(data_root, params.root, "COCO root")


def _under(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


@functools.lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    # Keyed by size and mtime: the spec (for the class names) and the factory read the
    # same file once, and a file changed in between is read again.
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the annotation file ({error})") from None
    if not isinstance(document, dict) or any(not isinstance(document.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{path} is not a COCO instances file: it needs 'images' and 'categories' lists")
    if not isinstance(document.get("annotations", []), list):
        raise DataError(f"{path}: 'annotations' must be a list")
    return document


def load_annotations(path: Path) -> dict[str, Any]:
    """The parsed JSON; DataError naming the file (and line) when it is missing or malformed."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise DataError(f"{path} is missing: expected a COCO instances JSON") from None
    return _load(str(path), stat.st_size, stat.st_mtime_ns)


def categories(document: Mapping[str, Any], path: Path) -> dict[int, str]:
    """Category id -> name, in id order."""
    found: dict[int, str] = {}
    for position, entry in enumerate(document["categories"]):
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("name"), str)):
            raise DataError(f"{path}: categories[{position}] needs an integer 'id' and a string 'name' (got {entry!r})")
        found[entry["id"]] = entry["name"]
    names = list(found.values())
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DataError(f"{path}: category names {', '.join(twice)} are given to more than one id")
    return dict(sorted(found.items()))


def class_names(params: CocoParams, *, data_root: str | Path | None) -> tuple[str, ...]:
    """The classes the records will hold: ``params.classes``, or every category of the train JSON."""
    if params.classes:
        return params.classes
    root = find_root(data_root, params)
    if root is None:
        raise DataError("no COCO root is known (no --data-root, 'root' param empty)")
    path = _under(root, params.annotations)
    return tuple(categories(load_annotations(path), path).values())


def _image_items(path: Path, images_dir: Path, root: Path, classes: tuple[str, ...]) -> list[SourceItem]:
    document = load_annotations(path)
    names = categories(document, path)
    unknown = [name for name in classes if name not in names.values()]
    if unknown:
        raise DataError(
            f"{path} has no category {', '.join(unknown)}; its categories are: {', '.join(names.values())}"
        )
    index = {category: classes.index(name) for category, name in names.items() if name in classes}
    images: dict[Any, dict] = {}
    for position, entry in enumerate(document["images"]):
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise DataError(f"{path}: images[{position}] needs an 'id' and a string 'file_name' (got {entry!r})")
        if entry["id"] in images:
            raise DataError(f"{path}: image id {entry['id']} is listed twice in 'images'")
        images[entry["id"]] = entry
    objects: dict[Any, list[SourceObject]] = {image_id: [] for image_id in images}
    problems: dict[Any, list[str]] = {image_id: [] for image_id in images}
    for position, annotation in enumerate(document.get("annotations", [])):
        annotation_id = annotation.get("id", f"#{position}") if isinstance(annotation, dict) else f"#{position}"
        where = f"{path} annotation {annotation_id}"
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in images:
            raise DataError(f"{where}: its image_id {image_id!r} is not one of the file's images")
        category = annotation.get("category_id")
        if category not in names:
            problems[image_id].append(
                f"{where}: unknown category_id {category!r}; the known categories are "
                + ", ".join(f"{i} {n}" for i, n in names.items())
            )
            continue
        bbox = annotation.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        ):
            problems[image_id].append(f"{where}: 'bbox' must be 4 numbers [x, y, width, height] (got {bbox!r})")
            continue
        if category not in index:
            continue  # a category the plan does not train
        x, y, width, height = (float(v) for v in bbox)
        label = IGNORE_CLASS if annotation.get("iscrowd") else index[category]
        objects[image_id].append(SourceObject((x, y, x + width, y + height), label, where=where))
    items = []
    for image_id, entry in images.items():
        image_path = images_dir / entry["file_name"]
        size = (entry["height"], entry["width"]) if isinstance(entry.get("height"), int) and isinstance(
            entry.get("width"), int) else None
        items.append(SourceItem(
            key=_key(image_path, root),
            image=str(image_path),
            label=str(path),
            objects=tuple(objects[image_id]),
            problems=tuple(problems[image_id]),
            expected_size=size,
        ))
    return items


def _key(image: Path, root: Path) -> str:
    try:
        return image.relative_to(root).as_posix()
    except ValueError:
        return image.as_posix()


def coco_source(root: Path, params: CocoParams) -> Source:
    """List the images of the train JSON (and of val_annotations when given)."""
    from detplug.core.data.convert import Source

    root = Path(root).absolute()
    classes = class_names(params, data_root=root)
    train_json, train_images = _under(root, params.annotations), _under(root, params.images)
    items = _image_items(train_json, train_images, root, classes)
    files = [train_json] + [Path(item.image) for item in items]
    label_map = {name: index for index, name in enumerate(classes)}
    reader = InlineReader()
    notes = {"annotations": str(train_json), "crowd": "ignore region"}
    if not params.val_annotations:
        return Source(format="coco", root=root, classes=classes, label_map=label_map, reader=reader, notes=notes,
                      items=items, fingerprint_files=files)
    val_json = _under(root, params.val_annotations)
    val_items = _image_items(val_json, _under(root, params.val_images or params.images), root, classes)
    files += [val_json] + [Path(item.image) for item in val_items]
    return Source(format="coco", root=root, classes=classes, label_map=label_map, reader=reader, notes=notes,
                  splits={"train": items, "val": val_items}, fingerprint_files=files,
                  split_origin=f"{train_json}, {val_json}")


def prepare_coco(params: CocoParams, *, data_root: str | Path | None, cache_dir: str | Path,
                 skip_bad: bool = False, force: bool = False) -> PreparedData:
    """The ``coco`` dataset factory (core/build.py's contract)."""
    from detplug.core.data.convert import convert_source

    root = find_root(data_root, params)
    if root is None:
        raise DataError(
            "no COCO data: pass --data-root or set the dataset's 'root' param to the folder holding "
            f"{params.annotations} and {params.images}/"
        )
    return convert_source(coco_source(root, params), params, cache_dir=cache_dir, dataset="coco",
                          skip_bad=skip_bad, force=force)
