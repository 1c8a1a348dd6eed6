"""Pascal VOC (one XML file per image): the reader.

Layouts: a devkit folder (``Annotations/*.xml``, the images in ``JPEGImages/``, split
lists in ``ImageSets/Main``), or, for any other folder, every XML file under it with its
image beside it (LabelImg's habit). An XML's image is the one image file of its stem;
when there is none, or several (``a.jpg`` and ``a.png``), the file its ``<filename>``
names. An image without an XML file is not converted (nothing says it was annotated);
an XML without objects is a background image.

Classes: ``classes``, or every object name of the XML files, sorted; ``class_map`` trains
other names as one of them, and objects of any other name are dropped. A difficult object
(``<difficult>1</difficult>``) of a trained class becomes an ignore region, as KITTI's
DontCare: the devkit's own scoring neither rewards nor punishes detections of it.

Splits, from the lists in ``image_sets`` (one image stem a line): train is ``train.txt``,
else ``trainval.txt``; val is ``val.txt`` beside a ``train.txt``, else ``test.txt`` (VOC's
val images are part of trainval). A train list without a val list is split by
``val_ratio``; without a train list every annotated image is.

The XML files are read up front (an image is found through its XML, the classes come
from all of them), so each image's objects and problems travel with it to the workers,
as COCO's do. No TensorFlow at module level: worker processes import this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

from detplug.core.data.images import is_image_file
from detplug.core.data.prepared import PreparedData
from detplug.core.data.source import IGNORE_CLASS, InlineReader, SourceItem, SourceObject, dataset_root
from detplug.core.data.voc_format import (
    ANNOTATIONS,
    IMAGES,
    VocAnnotation,
    annotation_files,
    is_devkit,
    object_names,
    read_annotation,
)
from detplug.core.errors import DataError
from detplug.plugins.datasets import VocParams

if TYPE_CHECKING:  # convert.py imports TensorFlow, which worker processes must not load
    from detplug.core.data.convert import Source

#: The split lists, in the order they are looked for: the first train list found, then the
#: first val list that may go with it.
TRAIN_LISTS = ("train.txt", "trainval.txt")
VAL_LISTS = {"train.txt": ("val.txt", "test.txt"), "trainval.txt": ("test.txt",)}
DEFAULT_IMAGE_SETS = VocParams().image_sets


def find_root(data_root: str | Path | None, params: VocParams) -> Path | None:
    """The VOC folder from --data-root, then params.root; None if neither is given."""
    return dataset_root(data_root, params.root, "VOC root")


def _xml_files(root: Path) -> list[Path]:
    files = annotation_files(root)
    if not files:
        raise DataError(f"{root} holds no VOC annotations: expected {ANNOTATIONS}/*.xml beside {IMAGES}/ (a devkit) "
                        f"or XML files beside their images (LabelImg)")
    return files


def _trained_names(names: Sequence[str], class_map: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted({class_map.get(name, name) for name in names}))


def class_names(params: VocParams, *, data_root: str | Path | None) -> tuple[str, ...]:
    """The classes the records will hold: ``params.classes``, or every object name of the XML
    files (after ``class_map``), sorted."""
    if params.classes:
        return params.classes
    root = find_root(data_root, params)
    if root is None:
        raise DataError("no VOC root is known (no --data-root, 'root' param empty)")
    names = _trained_names(object_names(_xml_files(root)), params.class_map)
    if not names:
        raise DataError(f"the XML files of {root} name no objects, so there are no classes to train")
    return names


# -- an XML's image ------------------------------------------------------------------------


class _ImageFolders:
    """The image files of each folder, by stem, each folder listed once."""

    def __init__(self) -> None:
        self._by_stem: dict[Path, dict[str, list[Path]]] = {}

    def by_stem(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._by_stem:
            found: dict[str, list[Path]] = {}
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                if is_image_file(path) and path.is_file():
                    found.setdefault(path.stem, []).append(path)
            self._by_stem[folder] = found
        return self._by_stem[folder]

    def image_of(self, xml: Path, annotation: VocAnnotation | None, folder: Path) -> tuple[Path | None, list[str]]:
        """The XML's image (see the module docstring) and a problem when it is ambiguous;
        None when there is no image."""
        candidates = self.by_stem(folder).get(xml.stem, [])
        if len(candidates) == 1:
            return candidates[0], []
        if annotation is not None and annotation.filename:
            # The name only: tools write a bare name, some a path (with either separator)
            # from the machine that made the file.
            named = folder / PureWindowsPath(annotation.filename).name
            if named.is_file():
                return named, []
        if not candidates:
            return None, []
        shown = ", ".join(path.name for path in candidates)
        return candidates[0], [f"{xml}: several images have its stem ({shown}) and its <filename> names none of "
                               f"them; set <filename> or keep one image"]


# -- listing ---------------------------------------------------------------------------------


def _objects(annotation: VocAnnotation | None, index: Mapping[str, int]) -> tuple[SourceObject, ...]:
    if annotation is None:
        return ()
    return tuple(
        SourceObject(item.box, IGNORE_CLASS if item.difficult else index[item.name], where=item.where)
        for item in annotation.objects
        if item.name in index  # a name the plan does not train: dropped
    )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _stems(items: Sequence[SourceItem]) -> dict[str, SourceItem | None]:
    """XML stem -> its item, as the split lists name them; None for a stem of several XML files."""
    by_stem: dict[str, SourceItem | None] = {}
    for item in items:
        stem = Path(item.label).stem
        by_stem[stem] = None if stem in by_stem else item
    return by_stem


def _read_list(path: Path, by_stem: Mapping[str, SourceItem | None], root: Path) -> list[SourceItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the split list ({error})") from None
    listed = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        stem = line.split()[0]
        if stem not in by_stem:
            raise DataError(f"{path}:{line_number}: image '{stem}' is not an annotated image of {root} (it needs "
                            f"{stem}.xml and its image)")
        item = by_stem[stem]
        if item is None:
            raise DataError(f"{path}:{line_number}: image '{stem}' names more than one XML file under {root}; "
                            f"give the files distinct names to list them")
        listed.append(item)
    return listed


def _given_lists(root: Path, image_sets: str) -> tuple[Path | None, Path | None]:
    """The train list and its val list (module docstring); None for a list that is not there."""
    if not image_sets:
        return None, None
    folder = Path(image_sets).expanduser()
    folder = folder if folder.is_absolute() else root / folder
    if not folder.is_dir() and image_sets != DEFAULT_IMAGE_SETS:
        raise DataError(f"image_sets = {image_sets!r}: {folder} is not a folder; give the folder of train.txt and "
                        f"val.txt, or \"\" to split by val_ratio")
    train = next((folder / name for name in TRAIN_LISTS if (folder / name).is_file()), None)
    if train is None:
        return None, None
    val = next((folder / name for name in VAL_LISTS[train.name] if (folder / name).is_file()), None)
    return train, val


def _annotated_items(root: Path, annotations: Mapping[Path, tuple[VocAnnotation | None, list[str]]],
                     index: Mapping[str, int]) -> tuple[list[SourceItem], list[str]]:
    """One item per XML file whose image is found, and the XML files (relative) whose image is not."""
    devkit = is_devkit(root)
    folders = _ImageFolders()
    items, unmatched = [], []
    for xml, (annotation, problems) in annotations.items():
        image, image_problems = folders.image_of(xml, annotation, root / IMAGES if devkit else xml.parent)
        if image is None:
            unmatched.append(_relative(xml, root))
            continue
        items.append(SourceItem(key=_relative(image, root), image=str(image), label=str(xml),
                                objects=_objects(annotation, index), problems=tuple(problems + image_problems),
                                expected_size=annotation.size if annotation is not None else None))
    if not items:
        raise DataError(f"none of the {len(annotations)} XML files of {root} has its image (an image file of the "
                        f"XML's stem or its <filename>, in {IMAGES}/ of a devkit or beside the XML)")
    return items, unmatched


def voc_source(root: Path, params: VocParams) -> Source:
    """List a devkit or LabelImg folder (module docstring) and read its XML files."""
    from detplug.core.data.convert import Source

    root = Path(root).absolute()
    annotations = {xml: read_annotation(xml) for xml in _xml_files(root)}
    names = [item.name for found, _ in annotations.values() if found is not None for item in found.objects]
    classes = params.classes or _trained_names(names, params.class_map)
    if not classes:
        raise DataError(f"the XML files of {root} name no objects, so there are no classes to train")
    index = {name: position for position, name in enumerate(classes)}
    index.update({name: index[target] for name, target in params.class_map.items()})
    items, unmatched = _annotated_items(root, annotations, index)
    devkit = is_devkit(root)
    used = {Path(item.image) for item in items}
    image_tree = (root / IMAGES).iterdir() if devkit else root.rglob("*")
    notes: dict[str, Any] = {
        "layout": "devkit" if devkit else "xml beside images",
        "difficult": "ignore region",
        "boxes": "xmin and ymin are 1-based: 1 subtracted",
        "images_without_annotations": sum(is_image_file(path) and path not in used for path in image_tree),
    }
    common: dict[str, Any] = {"format": "voc", "root": root, "classes": classes, "label_map": index,
                              "reader": InlineReader(), "notes": notes, "unmatched_labels": unmatched}
    image_and_xml = [path for item in items for path in (Path(item.image), Path(item.label))]
    train_list, val_list = _given_lists(root, params.image_sets)
    if train_list is None:
        return Source(items=items, fingerprint_files=image_and_xml, **common)
    by_stem = _stems(items)
    train = _read_list(train_list, by_stem, root)
    notes["unlisted_images"] = len(items) - len(train)
    if val_list is None:
        notes["train_list"] = str(train_list)
        return Source(items=train, fingerprint_files=image_and_xml + [train_list], **common)
    val = _read_list(val_list, by_stem, root)
    notes["unlisted_images"] -= len(val)
    both = sorted({item.key for item in train} & {item.key for item in val})
    if both:
        raise DataError(f"{train_list} and {val_list} both list {len(both)} images ({', '.join(both[:5])}); an "
                        f"image is trained on or held out, not both")
    return Source(splits={"train": train, "val": val}, split_origin=f"{train_list}, {val_list}",
                  fingerprint_files=image_and_xml + [train_list, val_list], **common)


def prepare_voc(params: VocParams, *, data_root: str | Path | None, cache_dir: str | Path,
                skip_bad: bool = False, force: bool = False) -> PreparedData:
    """The ``voc`` dataset factory (core/build.py's contract)."""
    from detplug.core.data.convert import convert_source

    root = find_root(data_root, params)
    if root is None:
        raise DataError("no VOC data: pass --data-root or set the dataset's 'root' param to the devkit folder "
                        f"(holding {ANNOTATIONS}/ and {IMAGES}/) or the folder of images and their XML files")
    return convert_source(voc_source(root, params), params, cache_dir=cache_dir, dataset="voc",
                          skip_bad=skip_bad, force=force)
