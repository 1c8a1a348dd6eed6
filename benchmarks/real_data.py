"""Real labelled aerial scenes for the benchmarks: DeepForest's sample data, rebuilt from its wheel.

    python benchmarks/real_data.py [--wheel deepforest-2.1.0-py3-none-any.whl] [--out runs/real_data]
        [--tile 320] [--overlap 0.2] [--min-area-ratio 0.5]

The PyPI package ``deepforest`` (MIT licence) ships four RGB aerial scenes of NEON field
sites with their tree crowns labelled in Pascal VOC XML, inside its wheel
(``deepforest/data/``). Without ``--wheel`` the wheel is fetched with ``pip download
--no-deps deepforest==2.1.0`` into a temporary folder; nothing of deepforest is installed
or imported: the wheel is read as a zip. Two folders are written under ``--out``:

- ``voc/``: a Pascal VOC devkit of the whole scenes (``Annotations/``, ``JPEGImages/``,
  ``ImageSets/Main/{train,val}.txt``), one class ``Tree``: SOAP_061's ``Alive`` and
  ``Dead`` crowns are trees too (the other scenes label every crown ``Tree``; which crowns
  are dead is not what this benchmark asks). JPEG at quality 95, the VOC convention; the
  tiles are cut from the decoded JPEG, so both folders hold the same pixels.
- ``yolo/``: the same scenes cut into tiles by detplug's one grid
  (``detplug.core.data.tiles``: ``tile_grid``, ``clip_to_tile``), as a YOLO folder
  (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``) that detplug's
  ``yolo_txt`` dataset and Ultralytics both read. A tile is named ``SCENE@TOP_LEFT``
  (``Tile.name``), so its place in its scene can be read back. A crown with less than
  ``--min-area-ratio`` of its area inside a tile is an ignore region there: YOLO labels
  cannot say "ignore", so it is left out of ``labels/`` (it is unlabelled in both tools'
  training alike) and written to ``ignore/{train,val}/`` (same line format), which the peer
  benchmark's scorer turns into COCO crowd regions: a detection of a crown cut by the
  tile's edge is neither a hit nor a false positive.

The split is by scene, never by tile (tiles of one scene overlap, and neighbouring crowns
look alike): ``2019_YELL_2_541000_4977000_image_crop`` (1249x1035, 279 crowns, 20 tiles
of 320 at overlap 0.2) is held out. It is a different stretch of forest from the large
YELL scene, large enough for a stable AP, while the two small scenes of other sites (OSBS,
SOAP) add variety to the training tiles rather than giving a val set of 4 tiles each.

Whole scenes: :func:`scene_ground_truth` and :func:`merge_tiles` let the peer benchmark
(``--voc``) score tile detections against the whole val scenes, the tiles' detections
moved into their scene and merged as sliced prediction merges them.

Only the standard library, numpy, Pillow and ``detplug.core.data.tiles``; TensorFlow only
in :func:`merge_tiles` (sliced prediction's merge).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image

from detplug.core.data.tiles import clip_to_tile, tile_grid

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "deepforest==2.1.0"
MEMBER_DIR = "deepforest/data"
CLASS_NAME = "Tree"
#: The labels of the wheel's scenes that are tree crowns; all become CLASS_NAME.
TREE_LABELS = ("Tree", "Alive", "Dead")
JPEG_QUALITY = 95


@attrs.frozen
class Scene:
    """One labelled scene of the wheel: its file stem and the split it goes to."""

    stem: str
    split: str


SCENES = (
    Scene("2019_YELL_2_528000_4978000_image_crop2", "train"),
    Scene("2019_YELL_2_541000_4977000_image_crop", "val"),
    Scene("OSBS_029", "train"),
    Scene("SOAP_061", "train"),
)

Box = tuple[float, float, float, float]


def download_wheel(folder: Path) -> Path:
    """``pip download --no-deps deepforest==2.1.0`` into ``folder``; the wheel's path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", PACKAGE,
                    "-d", str(folder)], check=True)
    wheels = sorted(folder.glob("deepforest-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download {PACKAGE} left no wheel in {folder}")
    return wheels[0]


def read_voc_boxes(xml: bytes, where: str) -> list[Box]:
    """The boxes (xmin, ymin, xmax, ymax) of a VOC annotation's tree crowns; SystemExit naming
    ``where`` for a label that is not a crown."""
    boxes = []
    for item in ElementTree.fromstring(xml).iter("object"):
        name = (item.findtext("name") or "").strip()
        if name not in TREE_LABELS:
            raise SystemExit(f"{where}: object '{name}' is not one of the tree labels {', '.join(TREE_LABELS)}")
        bndbox = item.find("bndbox")
        if bndbox is None:
            raise SystemExit(f"{where}: object '{name}' has no <bndbox>")
        x1, y1, x2, y2 = (float(bndbox.findtext(key) or "nan") for key in ("xmin", "ymin", "xmax", "ymax"))
        if not (x2 > x1 and y2 > y1):
            raise SystemExit(f"{where}: object '{name}' has an empty box {x1, y1, x2, y2}")
        boxes.append((x1, y1, x2, y2))
    return boxes


def voc_annotation(stem: str, size: tuple[int, int], boxes: Sequence[Box]) -> str:
    """A Pascal VOC annotation of ``boxes`` (all ``Tree``) for ``JPEGImages/STEM.jpg``."""
    width, height = size
    objects = "".join(
        f"  <object>\n    <name>{CLASS_NAME}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
        f"    <difficult>0</difficult>\n    <bndbox>\n      <xmin>{x1:g}</xmin>\n      <ymin>{y1:g}</ymin>\n"
        f"      <xmax>{x2:g}</xmax>\n      <ymax>{y2:g}</ymax>\n    </bndbox>\n  </object>\n"
        for x1, y1, x2, y2 in boxes)
    return (f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{stem}.jpg</filename>\n"
            f"  <source><database>deepforest {PACKAGE.split('==')[1]} sample data (MIT)</database></source>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
            f"  <segmented>0</segmented>\n{objects}</annotation>\n")


def write_voc(wheel: Path, voc: Path, scenes: Sequence[Scene] = SCENES) -> dict[str, list[Box]]:
    """The VOC devkit of the wheel's scenes at ``voc`` (module docstring); each scene's boxes."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    boxes = {}
    with zipfile.ZipFile(wheel) as archive:
        for scene in scenes:
            image_member, xml_member = f"{MEMBER_DIR}/{scene.stem}.png", f"{MEMBER_DIR}/{scene.stem}.xml"
            try:
                xml, png = archive.read(xml_member), archive.read(image_member)
            except KeyError as error:
                raise SystemExit(f"{wheel} has no {error.args[0].split()[-1]}: is it the {PACKAGE} wheel?") from None
            with Image.open(BytesIO(png)) as image:
                rgb = image.convert("RGB")
            rgb.save(voc / "JPEGImages" / f"{scene.stem}.jpg", quality=JPEG_QUALITY)
            boxes[scene.stem] = read_voc_boxes(xml, f"{wheel.name}:{xml_member}")
            (voc / "Annotations" / f"{scene.stem}.xml").write_text(
                voc_annotation(scene.stem, rgb.size, boxes[scene.stem]))
    for split in ("train", "val"):
        stems = [scene.stem for scene in scenes if scene.split == split]
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems))
    return boxes


def yolo_line(box: Box, tile_size: tuple[int, int]) -> str:
    """``0 cx cy w h`` of a box in a tile's pixels, normalised to the tile (width, height)."""
    x1, y1, x2, y2 = box
    width, height = tile_size
    return (f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n")


def write_yolo_tiles(voc: Path, yolo: Path, boxes: dict[str, list[Box]], *, tile: int, overlap: float,
                     min_area_ratio: float, scenes: Sequence[Scene] = SCENES) -> dict[str, Any]:
    """Each scene of the devkit cut into tiles (module docstring) at ``yolo``; the counts."""
    counts: dict[str, Any] = {split: {"scenes": 0, "tiles": 0, "boxes": 0, "ignored": 0} for split in ("train", "val")}
    for scene in scenes:
        for folder in ("images", "labels", "ignore"):
            (yolo / folder / scene.split).mkdir(parents=True, exist_ok=True)
        with Image.open(voc / "JPEGImages" / f"{scene.stem}.jpg") as image:
            pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        count = counts[scene.split]
        count["scenes"] += 1
        for window in tile_grid(height, width, tile, overlap):
            name = f"{scene.stem}{window.name()}"
            crop = pixels[window.top:window.bottom, window.left:window.right]
            Image.fromarray(crop).save(yolo / "images" / scene.split / f"{name}.png", compress_level=1)
            clipped = clip_to_tile(boxes[scene.stem], window, min_area_ratio)
            size = (window.width, window.height)
            kept = "".join(yolo_line(c.box, size) for c in clipped if c.kept)
            ignored = "".join(yolo_line(c.box, size) for c in clipped if not c.kept)
            (yolo / "labels" / scene.split / f"{name}.txt").write_text(kept)
            (yolo / "ignore" / scene.split / f"{name}.txt").write_text(ignored)
            count["tiles"] += 1
            count["boxes"] += kept.count("\n")
            count["ignored"] += ignored.count("\n")
    (yolo / "data.yaml").write_text(f"path: {yolo.absolute()}\ntrain: images/train\nval: images/val\n"
                                    f"names:\n  0: {CLASS_NAME}\n")
    return counts


def build(out: Path, wheel: Path, *, tile: int = 320, overlap: float = 0.2, min_area_ratio: float = 0.5,
          scenes: Sequence[Scene] = SCENES) -> dict[str, Any]:
    """Both folders (``out/voc``, ``out/yolo``) from ``wheel``; the summary, also written to
    ``out/summary.json``."""
    out = out.absolute()
    boxes = write_voc(wheel, out / "voc", scenes)
    tiles = write_yolo_tiles(out / "voc", out / "yolo", boxes, tile=tile, overlap=overlap,
                             min_area_ratio=min_area_ratio, scenes=scenes)
    summary = {"source": f"{PACKAGE} wheel, {MEMBER_DIR}/ (MIT licence)", "wheel": wheel.name,
               "classes": [CLASS_NAME], "scenes": {s.stem: {"split": s.split, "boxes": len(boxes[s.stem])}
                                                   for s in scenes},
               "tile": {"size": tile, "overlap": overlap, "min_area_ratio": min_area_ratio}, "tiles": tiles,
               "voc": str(out / "voc"), "yolo": str(out / "yolo")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# --------------------------------------------------------------------------- whole scenes


def scene_ground_truth(voc: Path, out: Path, split: str = "val") -> Path:
    """A COCO instances JSON of a split's whole scenes (the devkit's annotations), image ids 1,
    2, ... in the order of ``ImageSets/Main/SPLIT.txt``, category 1 ``Tree``."""
    images, annotations = [], []
    stems = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    for image_id, stem in enumerate(stems, start=1):
        path = voc / "Annotations" / f"{stem}.xml"
        root = ElementTree.parse(path).getroot()
        width, height = (int(root.findtext(f"size/{key}") or 0) for key in ("width", "height"))
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": width, "height": height})
        for x1, y1, x2, y2 in read_voc_boxes(path.read_bytes(), str(path)):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    out.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": CLASS_NAME}]}))
    return out


def tile_origin(stem: str) -> tuple[str, int, int]:
    """``SCENE@TOP_LEFT`` (Tile.name) -> (scene, top, left); ValueError for another name."""
    scene, _, place = stem.rpartition("@")
    top, _, left = place.partition("_")
    if not scene or not top.isdigit() or not left.isdigit():
        raise ValueError(f"'{stem}' is not a tile's name (SCENE@TOP_LEFT)")
    return scene, int(top), int(left)


def merge_tiles(detections: Sequence[dict[str, Any]], scene_sizes: dict[str, tuple[int, int]], *,
                iou_threshold: float = 0.45) -> list[dict[str, Any]]:
    """Tile detections ``{stem, class, box [x1, y1, x2, y2] tile pixels, score}`` moved into their
    scenes (``scene_sizes``: stem -> (width, height)) and merged per scene as sliced prediction
    merges the windows of one image (core.model.sliced.merge_detections: class-wise NMS, IoU
    within a tile, intersection over the smaller box across tiles): the same detections,
    scored against the whole scenes. Every detection may stay (no cap per scene)."""
    from detplug.core.model.sliced import merge_detections

    by_scene: dict[str, list[tuple[list[float], int, float, str]]] = {}
    for found in detections:
        scene, top, left = tile_origin(found["stem"])
        x1, y1, x2, y2 = found["box"]
        by_scene.setdefault(scene, []).append(([x1 + left, y1 + top, x2 + left, y2 + top], int(found["class"]),
                                               float(found["score"]), found["stem"]))
    merged = []
    for scene, rows in sorted(by_scene.items()):
        width, height = scene_sizes[scene]
        window = {stem: index for index, stem in enumerate(sorted({stem for *_, stem in rows}))}
        boxes = np.clip(np.array([box for box, *_ in rows], np.float32), 0, [width, height, width, height])
        kept = merge_detections(boxes, np.array([score for _, _, score, _ in rows], np.float32),
                                np.array([label for _, label, _, _ in rows], np.int32),
                                np.array([window[stem] for *_, stem in rows], np.int32),
                                iou_threshold=iou_threshold, max_detections=len(rows))
        for box, score, label in zip(kept["boxes"].tolist(), kept["scores"].tolist(), kept["classes"].tolist()):
            merged.append({"stem": scene, "class": int(label), "score": float(score), "box": box})
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"the {PACKAGE} wheel (default: pip download it)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real_data")
    parser.add_argument("--tile", type=int, default=320, help="tile side in pixels")
    parser.add_argument("--overlap", type=float, default=0.2, help="share of a tile its neighbour overlaps")
    parser.add_argument("--min-area-ratio", type=float, default=0.5,
                        help="share of a crown's area a tile must hold to label it; less is an ignore region")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        wheel = args.wheel or download_wheel(Path(temporary))
        if not wheel.is_file():
            parser.error(f"--wheel {wheel}: no such file")
        summary = build(args.out, wheel, tile=args.tile, overlap=args.overlap, min_area_ratio=args.min_area_ratio)
    for split in ("train", "val"):
        t = summary["tiles"][split]
        print(f"{split}: {t['scenes']} scenes, {t['tiles']} tiles of {args.tile}, {t['boxes']} crowns "
              f"(+{t['ignored']} ignore regions)")
    print(f"VOC devkit: {summary['voc']}\nYOLO tiles: {summary['yolo']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
