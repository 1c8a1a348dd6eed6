"""Which dataset a folder (or file) holds, from its layout alone (``run.py train --data PATH``).

Recognised, in this order:

- a YOLO ``data.yaml`` (or ``dataset.yaml``) file, or a folder holding one;
- a COCO instances JSON file (``images``, ``annotations`` and ``categories``), or a folder
  holding ``annotations/instances_*.json``;
- a KITTI root: ``training/image_2`` and ``training/label_2``;
- a Pascal VOC devkit folder: ``Annotations/`` and ``JPEGImages/``;
- a YOLO folder without a yaml: ``images/`` with ``labels/`` beside it, or images with their
  ``.txt`` labels beside them, and the class names in ``classes.txt`` or ``obj.names``;
- a folder of images with VOC XML files beside them (LabelImg's habit).

The answer is a dataset component's name and its params (for the plan's [datasets] table)
and the class names when the layout declares them. No TensorFlow, and nothing is converted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detplug.core.data.class_names import names_from_yaml, source_names
from detplug.core.data.images import is_image_file
from detplug.core.data.voc_format import IMAGES, annotation_files, has_labelimg_files, is_devkit, object_names
from detplug.core.errors import DataError
from detplug.core.plan.from_data import DataLayout

#: What :func:`detect_layout` recognises, for the error that lists it.
RECOGNISED = (
    "a YOLO data.yaml, or a folder holding one",
    "a COCO instances JSON file, or a folder holding annotations/instances_*.json",
    "a KITTI root holding training/image_2 and training/label_2",
    "a Pascal VOC devkit folder holding Annotations/ and JPEGImages/",
    "a YOLO folder: images/ and labels/ (or images with .txt labels beside them) and classes.txt",
    "a folder of images with VOC XML files beside them (LabelImg)",
)
YAML_NAMES = ("data.yaml", "dataset.yaml")
NAME_LISTS = ("classes.txt", "obj.names")


def detect_layout(path: str | Path) -> DataLayout:
    """The dataset at ``path``; a DataError listing the recognised layouts when none fits."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return _yolo_from_yaml(path)
        if path.suffix == ".json":
            return _coco_from_json(path)
    else:
        for name in YAML_NAMES:
            if (path / name).is_file():
                return _yolo_from_yaml(path / name)
        annotations = sorted((path / "annotations").glob("instances_*.json"))
        if annotations:
            return _coco_from_folder(path, annotations)
        if (path / "training" / "image_2").is_dir() and (path / "training" / "label_2").is_dir():
            return DataLayout("kitti", {"root": str(path), "synthetic_fallback": False},
                              ("Car", "Pedestrian", "Cyclist"), f"KITTI root {path}", path / "training" / "image_2")
        if is_devkit(path):
            return _voc_folder(path, f"VOC devkit {path}", path / IMAGES)
        if _looks_like_yolo(path):
            return _yolo_folder(path)
        if has_labelimg_files(path):
            return _voc_folder(path, f"VOC folder {path} (XML beside the images)", path)
    raise DataError(f"--data {path}: not a dataset layout detplug recognises; give "
                    + "; or ".join(RECOGNISED))


def _yolo_from_yaml(path: Path) -> DataLayout:
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"--data {path}: cannot read it as YAML ({error})") from None
    if not isinstance(document, dict) or "names" not in document:
        raise DataError(f"--data {path}: a YOLO data.yaml needs 'names' (the class names); this one has "
                        f"{sorted(document) if isinstance(document, dict) else 'no keys'}")
    # Ultralytics' 'path' is the dataset root, relative to the yaml's folder; without it the
    # yaml's folder is the root.
    root = path.parent
    if document.get("path"):
        root = (path.parent / str(document["path"])).resolve()
    if not root.is_dir():
        raise DataError(f"--data {path}: its 'path' {document['path']!r} is not a folder ({root})")
    names = names_from_yaml(path)
    return DataLayout("yolo_txt", {"root": str(root), "names": list(names)}, tuple(names),
                      f"YOLO dataset {root} ({path.name}: {len(names)} classes)", root)


def _looks_like_yolo(folder: Path) -> bool:
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return True
    return any(is_image_file(item) and item.with_suffix(".txt").is_file() for item in folder.iterdir())


def _yolo_folder(folder: Path) -> DataLayout:
    names = source_names(folder)
    if names is None:
        raise DataError(f"--data {folder}: a YOLO folder, but its class names are missing; write them in "
                        f"{folder / 'data.yaml'} (names: [a, b, ...]) or {folder / 'classes.txt'} (one per line)")
    return DataLayout("yolo_txt", {"root": str(folder)}, names, f"YOLO folder {folder} ({len(names)} classes)",
                      folder)


def _voc_folder(folder: Path, description: str, images: Path) -> DataLayout:
    files = annotation_files(folder)
    names = object_names(files)
    if not names:
        raise DataError(f"--data {folder}: a VOC folder, but none of its {len(files)} XML files names an object; "
                        f"annotate some images first")
    return DataLayout("voc", {"root": str(folder)}, names, f"{description} ({len(files)} XML files: "
                      f"{len(names)} classes)", images)


def _coco_categories(path: Path) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"--data {path}: cannot read it as JSON ({error})") from None
    if not isinstance(document, dict) or not {"images", "annotations", "categories"} <= set(document):
        raise DataError(f"--data {path}: not a COCO instances file (it needs 'images', 'annotations' and "
                        f"'categories')")
    categories = sorted(document["categories"], key=lambda category: category["id"])
    return tuple(str(category["name"]) for category in categories)


def _images_beside(annotations: Path, root: Path) -> Path:
    """The image folder of ``instances_NAME.json``: ``NAME/`` in the root, else ``images/``,
    else the root itself."""
    stem = annotations.stem.removeprefix("instances_")
    for candidate in (root / stem, root / "images" / stem, root / "images"):
        if candidate.is_dir():
            return candidate
    return root


def _coco_from_json(path: Path) -> DataLayout:
    classes = _coco_categories(path)
    root = path.parent.parent if path.parent.name == "annotations" else path.parent
    images = _images_beside(path, root)
    params = {"root": str(root), "annotations": str(path), "images": str(images), "classes": list(classes)}
    return DataLayout("coco", params, classes, f"COCO annotations {path} ({len(classes)} categories)", images)


def _coco_from_folder(root: Path, annotations: list[Path]) -> DataLayout:
    train = next((path for path in annotations if "train" in path.stem), annotations[0])
    val = next((path for path in annotations if "val" in path.stem and path != train), None)
    classes = _coco_categories(train)
    params: dict[str, Any] = {"root": str(root), "annotations": str(train),
                              "images": str(_images_beside(train, root)), "classes": list(classes)}
    if val is not None:
        params.update(val_annotations=str(val), val_images=str(_images_beside(val, root)))
    described = f"{train.name}" + (f" and {val.name}" if val is not None else "")
    return DataLayout("coco", params, classes, f"COCO folder {root} ({described}: {len(classes)} categories)",
                      Path(params["images"]))


#: How many images :func:`typical_aspect` opens (evenly spread over the sorted file names).
ASPECT_SAMPLE = 64


def _header_sizes(layout: DataLayout) -> list[tuple[int, int]]:
    """(width, height) of up to ASPECT_SAMPLE of the layout's images, evenly spread over the
    sorted file names, from their headers alone; empty when it has no image folder or image."""
    from PIL import Image, UnidentifiedImageError

    if layout.images is None or not layout.images.is_dir():
        return []
    files = sorted(path for path in layout.images.rglob("*") if is_image_file(path))
    step = max(1, len(files) // ASPECT_SAMPLE)
    sizes = []
    for path in files[::step][:ASPECT_SAMPLE]:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError):
            continue  # conversion names a bad image; this is only an estimate
        if width > 0 and height > 0:
            sizes.append((width, height))
    return sizes


def _median(values: list[float]) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def typical_aspect(layout: DataLayout) -> tuple[float, int] | None:
    """The median width / height of the layout's images and how many were read (only their
    headers, up to ASPECT_SAMPLE of them); None when it has no image folder or no image."""
    sizes = _header_sizes(layout)
    return (_median([width / height for width, height in sizes]), len(sizes)) if sizes else None


def typical_long_side(layout: DataLayout) -> tuple[float, int] | None:
    """The median long side (pixels) of the layout's images and how many were read, as
    :func:`typical_aspect` reads them; None when there is no image to read."""
    sizes = _header_sizes(layout)
    return (_median([max(size) for size in sizes]), len(sizes)) if sizes else None
