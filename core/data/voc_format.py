"""Pascal VOC's annotation files (one XML per image): the one reader, and where they are.

A VOC devkit folder holds ``Annotations/*.xml``, ``JPEGImages/`` and, optionally,
``ImageSets/Main/{train,val,trainval,test}.txt``; LabelImg (and tools like it) write
the same XML beside each image instead. The voc dataset reads the files with this
module, and ``train --data`` recognises the folders with it. Standard library and
attrs only: worker processes and the layout check import it without TensorFlow.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path

import attrs

from detplug.core.data.images import is_image_file

ANNOTATIONS = "Annotations"
IMAGES = "JPEGImages"
IMAGE_SETS = "ImageSets/Main"
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


@attrs.frozen
class VocObject:
    """One ``<object>``: its name, its box in 0-based pixel edges, and its difficult flag."""

    name: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    difficult: bool
    where: str  # "file object 3": ElementTree gives no line numbers for elements


@attrs.frozen
class VocAnnotation:
    """What one XML file says about its image."""

    #: ``<filename>``, or "" when the file has none.
    filename: str
    #: (height, width) from ``<size>``, or None when the file has no ``<size>``.
    size: tuple[int, int] | None
    objects: tuple[VocObject, ...]


def is_devkit(root: Path) -> bool:
    """A devkit folder: ``Annotations/`` beside ``JPEGImages/``."""
    return (root / ANNOTATIONS).is_dir() and (root / IMAGES).is_dir()


def annotation_files(root: Path) -> list[Path]:
    """The XML files of ``root``: ``Annotations/*.xml`` of a devkit; else every ``*.xml``
    under it (LabelImg saves each beside its image, in any subfolder)."""
    found = (root / ANNOTATIONS).iterdir() if is_devkit(root) else root.rglob("*")
    return sorted(path for path in found if path.suffix.lower() == ".xml" and path.is_file())


def has_labelimg_files(root: Path) -> bool:
    """Any XML file under ``root`` with an image of its stem beside it (LabelImg's habit)."""
    xml_stems: set[tuple[Path, str]] = set()
    image_stems: set[tuple[Path, str]] = set()
    for path in root.rglob("*"):
        if path.suffix.lower() == ".xml":
            xml_stems.add((path.parent, path.stem))
        elif is_image_file(path):
            image_stems.add((path.parent, path.stem))
    return not xml_stems.isdisjoint(image_stems)


def _number(text: str | None) -> float:
    try:
        return float(text.strip()) if text is not None else math.nan
    except ValueError:
        return math.nan


def _size(element: ElementTree.Element, path: Path) -> tuple[tuple[int, int] | None, list[str]]:
    size = element.find("size")
    if size is None:
        return None, []
    width, height = (_number(size.findtext(key)) for key in ("width", "height"))
    if not all(math.isfinite(v) and v == int(v) and v >= 0 for v in (width, height)):
        shown = f"width {size.findtext('width')!r}, height {size.findtext('height')!r}"
        return None, [f"{path}: <size> needs whole-number <width> and <height> ({shown})"]
    return (int(height), int(width)), []


def _object(element: ElementTree.Element, where: str) -> tuple[VocObject | None, list[str]]:
    name = (element.findtext("name") or "").strip()
    if not name:
        return None, [f"{where}: it has no <name>"]
    where = f"{where} ('{name}')"
    problems = []
    box = element.find("bndbox")
    if box is None:
        return None, [f"{where}: it has no <bndbox>"]
    values = []
    for key in BOX_KEYS:
        text = box.findtext(key)
        value = _number(text)
        if text is None:
            problems.append(f"{where}: <bndbox> has no <{key}>")
        elif not math.isfinite(value):
            problems.append(f"{where}: <bndbox> <{key}> must be a number (got {text!r})")
        values.append(value)
    flag = (element.findtext("difficult") or "0").strip()  # LabelImg and CVAT may leave it out
    if flag not in ("0", "1"):
        problems.append(f"{where}: <difficult> must be 0 or 1 (got {flag!r})")
    if problems:
        return None, problems
    x1, y1, x2, y2 = values
    # The devkit's boxes are 1-based pixel indices, both ends inclusive: (1, W) covers the
    # whole image, which is the edge span (0, W). Like detectron2's pascal_voc.py, subtract 1
    # from xmin and ymin only. LabelImg imitates the devkit (it writes no xmin below 1), so
    # the same rule holds for its files; floats (LabelImg, CVAT) are taken as they are.
    return VocObject(name, (x1 - 1, y1 - 1, x2, y2), flag == "1", where), []


def read_annotation(path: Path) -> tuple[VocAnnotation | None, list[str]]:
    """The file's annotation and every problem in it (each a sentence naming the file);
    None when the file cannot be read or parsed, or is not a VOC annotation."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        line, column = error.position
        reason = str(error).rsplit(": line", 1)[0]
        # expat counts columns from 0, editors from 1.
        return None, [f"{path}:{line}: malformed XML at column {column + 1} ({reason})"]
    except OSError as error:
        return None, [f"{path}: cannot read the annotation file ({error})"]
    if root.tag != "annotation":
        return None, [f"{path}: not a VOC annotation (its root element is <{root.tag}>, expected <annotation>)"]
    size, problems = _size(root, path)
    objects = []
    for number, element in enumerate(root.findall("object"), start=1):
        found, object_problems = _object(element, f"{path} object {number}")
        problems += object_problems
        if found is not None:
            objects.append(found)
    filename = (root.findtext("filename") or "").strip()
    return VocAnnotation(filename, size, tuple(objects)), problems


def object_names(files: Iterable[Path]) -> tuple[str, ...]:
    """Every object name in ``files``, sorted; files that cannot be read are passed over
    (converting them names their problem)."""
    names: set[str] = set()
    for path in files:
        annotation, _ = read_annotation(path)
        if annotation is not None:
            names.update(item.name for item in annotation.objects)
    return tuple(sorted(names))
