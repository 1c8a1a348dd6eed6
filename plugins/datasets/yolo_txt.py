"""A folder of images with YOLO txt labels: the reader.

Each label line is ``class cx cy w h``, the box centre and size normalised
to the image. Class ids name ``names`` (the param, else ``data.yaml``'s
``names`` or ``classes.txt`` in the root); ``classes`` picks the ones to
train. An image without a label file is a background image, as in the
Ultralytics convention; an empty label file is one too.

Layouts: ``images/train`` + ``images/val`` (splits given), ``images/`` (split
by val_ratio), or images in the root; an image's labels are at the same path
with the last ``images`` folder replaced by ``labels`` and a ``.txt`` suffix,
or beside it when there is no ``images`` folder.

No TensorFlow at module level: worker processes import this module.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from detplug.core.data.class_names import NAME_FILES, source_names
from detplug.core.data.images import IMAGE_SUFFIXES, is_image_file
from detplug.core.data.prepared import PreparedData
from detplug.core.data.source import SourceItem, SourceObject, dataset_root
from detplug.core.errors import DataError
from detplug.plugins.datasets import YoloTxtParams

if TYPE_CHECKING:  # convert.py imports TensorFlow, which worker processes must not load
    from detplug.core.data.convert import Source

COLUMNS = ("class", "cx", "cy", "w", "h")


def find_root(data_root: str | Path | None, params: YoloTxtParams) -> Path | None:
    """The folder from --data-root, then params.root; None if neither is given."""
    return dataset_root(data_root, params.root, "YOLO dataset root")


def _names(params: YoloTxtParams, root: Path | None) -> tuple[str, ...]:
    names = params.names or (source_names(root) if root is not None else None) or params.classes
    if not names:
        where = f"{root}" if root is not None else "the dataset's root (none is known: no --data-root, 'root' empty)"
        raise DataError(f"no class names: set the dataset's 'names' or put one of {', '.join(NAME_FILES)} in {where}")
    return names


def class_names(params: YoloTxtParams, *, data_root: str | Path | None) -> tuple[str, ...]:
    """The classes the records will hold: ``params.classes``, or every name."""
    if params.classes:
        return params.classes
    return _names(params, find_root(data_root, params))


@attrs.frozen
class YoloReader:
    """Reads one label file; picklable, so it travels to the worker processes."""

    #: Class id -> class index, None for a name the plan does not train.
    class_of_id: tuple[int | None, ...]
    names: tuple[str, ...]

    def read(self, item: SourceItem, image_size: tuple[int, int] | None) -> tuple[list[SourceObject], list[str]]:
        path = Path(item.label)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []  # no label file: a background image
        except (OSError, UnicodeDecodeError) as error:
            return [], [f"{path}: cannot read the label file ({error})"]
        objects, problems = [], []
        for line_number, line in enumerate(text.splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            where = f"{path}:{line_number}"
            if len(tokens) != len(COLUMNS):
                problems.append(f"{where}: expected {len(COLUMNS)} columns ({' '.join(COLUMNS)}), found {len(tokens)}")
                continue
            values, bad = [], False
            for column, token in zip(COLUMNS, tokens, strict=True):
                try:
                    value = float(token)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value) or (column == "class" and value != int(value)):
                    kind = "a whole number" if column == "class" else "a number"
                    problems.append(f"{where}: column '{column}' must be {kind} (got {token!r})")
                    bad = True
                values.append(value)
            if bad:
                continue
            class_id, cx, cy, w, h = int(values[0]), *values[1:]
            if not 0 <= class_id < len(self.names):
                known = ", ".join(f"{i} {name}" for i, name in enumerate(self.names))
                problems.append(f"{where}: unknown class id {class_id}; the known classes are {known}")
                continue
            label = self.class_of_id[class_id]
            if label is None or image_size is None:
                continue  # a class the plan does not train; or no image to scale to (already an error)
            height, width = image_size
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            objects.append(SourceObject(box, label, where=where))
        return objects, problems


def label_path(image: Path, root: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder (below ``root``) becomes ``labels``;
    else the label file is beside the image."""
    parts = list(image.relative_to(root).parts)
    if "images" in parts[:-1]:
        last = len(parts) - 2 - parts[-2::-1].index("images")
        parts[last] = "labels"
        return (root / Path(*parts)).with_suffix(".txt")
    return image.with_suffix(".txt")


def _images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_file(p) and p.is_file())


def _items(images: list[Path], root: Path) -> list[SourceItem]:
    return [SourceItem(key=p.relative_to(root).as_posix(), image=str(p), label=str(label_path(p, root)))
            for p in images]


def yolo_source(root: Path, params: YoloTxtParams) -> Source:
    """List the folder's images in one of the three layouts (module docstring)."""
    from detplug.core.data.convert import Source

    root = Path(root).absolute()
    names = _names(params, root)
    classes = params.classes or names
    unknown = [name for name in classes if name not in names]
    if unknown:
        raise DataError(f"classes {', '.join(unknown)} are not among the names of {root}: {', '.join(names)}")
    split_dirs = {split: root / "images" / split for split in ("train", "val")}
    if all(folder.is_dir() for folder in split_dirs.values()):
        splits = {split: _items(_images(folder, True), root) for split, folder in split_dirs.items()}
        layout: dict[str, Any] = {"splits": splits, "split_origin": "images/train, images/val"}
        items = splits["train"] + splits["val"]
    else:
        folder, recursive = (root / "images", True) if (root / "images").is_dir() else (root, False)
        items = _items(_images(folder, recursive), root)
        layout = {"items": items}
    if not items:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}) in images/ or at its top level")
    unlabelled = sum(not Path(item.label).is_file() for item in items)
    expected = {Path(item.label) for item in items}
    labels = root / "labels"
    candidates = labels.rglob("*.txt") if labels.is_dir() else ()
    unmatched = sorted(p.relative_to(root).as_posix() for p in candidates if p not in expected)
    return Source(
        format="yolo_txt",
        root=root,
        classes=classes,
        label_map={str(i): classes.index(name) for i, name in enumerate(names) if name in classes},
        reader=YoloReader(tuple(classes.index(n) if n in classes else None for n in names), tuple(names)),
        fingerprint_files=[p for item in items for p in (Path(item.image), Path(item.label))],
        notes={"names": list(names), "images_without_labels": unlabelled},
        unmatched_labels=unmatched,
        **layout,
    )


def prepare_yolo_txt(params: YoloTxtParams, *, data_root: str | Path | None, cache_dir: str | Path,
                     skip_bad: bool = False, force: bool = False) -> PreparedData:
    """The ``yolo_txt`` dataset factory (core/build.py's contract)."""
    from detplug.core.data.convert import convert_source

    root = find_root(data_root, params)
    if root is None:
        raise DataError("no YOLO txt data: pass --data-root or set the dataset's 'root' param to the images folder")
    return convert_source(yolo_source(root, params), params, cache_dir=cache_dir, dataset="yolo_txt",
                          skip_bad=skip_bad, force=force)
