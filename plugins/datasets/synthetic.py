"""A generated sample in KITTI's own layout, so the real converter is what reads it.

A leaf: the ``kitti`` dataset module draws the sample with it (its ``synthetic``
factory and its fallback when no KITTI is found); nothing here imports it back.

Cars, pedestrians and cyclists are drawn as distinct shapes and colours on a
noisy road scene, with boxes from ~16 to ~120 px so every stride of the
coco_yolov3 anchors gets objects at a 192x640 input; some images carry
KITTI "DontCare" regions drawn as flat grey clutter. Same arguments, same
bytes: every image draws from its own generator seeded by (seed, index).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from detplug.core.data.kitti_format import DONT_CARE, KittiObject, format_kitti_line
from detplug.core.data.staging import staging
from detplug.core.disk import writing
from detplug.core.errors import DataError

DRAWABLE_CLASSES = ("Car", "Pedestrian", "Cyclist")

#: Written last: a folder without it is a half-written sample and is redrawn.
MARKER = ".complete"

#: Bump when the drawing changes, so cached samples are redrawn.
GENERATOR_VERSION = 1

#: Sizes below are in pixels of KITTI-like images this tall/wide (half KITTI's 375x1242);
#: other source sizes scale them.
REFERENCE_SIZE = (188, 621)

#: KITTI's focal length (px) at its full 1242 px width, for plausible 3D columns.
KITTI_FOCAL = 721.5377

# Real-world (height, width, length) in metres, for the 3D columns.
_DIMENSIONS = {"Car": (1.52, 1.63, 3.88), "Pedestrian": (1.76, 0.66, 0.84), "Cyclist": (1.74, 0.60, 1.76)}


def sample_folder(
    cache_dir: str | Path, *, images: int, source_size: Sequence[int], seed: int, classes: Sequence[str]
) -> Path:
    """``cache_dir/synthetic/<hash>``: one folder per distinct set of generation arguments."""
    key = json.dumps(
        {
            "images": images,
            "source_size": list(source_size),
            "seed": seed,
            "classes": list(classes),
            "version": GENERATOR_VERSION,
        },
        sort_keys=True,
    )
    return Path(cache_dir).absolute() / "synthetic" / hashlib.sha256(key.encode()).hexdigest()[:16]


# -- drawing ------------------------------------------------------------------------


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    horizon = rng.uniform(0.3, 0.5)
    sky = rng.uniform(140, 190, 3)
    road = rng.uniform(70, 110, 3)
    rows = np.arange(height)[:, None, None] / height
    base = np.where(rows < horizon, sky, road) + np.zeros((1, width, 1))
    # A few faint blocks (buildings, shadows) so the background is not plain noise.
    for _ in range(rng.integers(3, 8)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(height // 8, height // 2), rng.integers(width // 20, width // 5)
        base[y : y + h, x : x + w] += rng.uniform(-25, 25)  # grey, so no block looks like a class colour
    # Luminance noise, like a camera's: the same on every channel, which also
    # halves the PNG encoding time of the sample and of its conversion.
    pixels = base + rng.normal(0, 12, (height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 20) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _draw_car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x1: int, y1: int, x2: int, y2: int) -> None:
    w, h = x2 - x1, y2 - y1
    body = _jitter(rng, (200, 35, 35))
    draw.polygon(
        [(x1 + 0.22 * w, y1), (x2 - 0.22 * w, y1), (x2 - 0.08 * w, y1 + 0.4 * h), (x1 + 0.08 * w, y1 + 0.4 * h)],
        fill=body,
    )
    draw.rectangle([x1 + 0.28 * w, y1 + 0.08 * h, x2 - 0.28 * w, y1 + 0.34 * h], fill=(170, 210, 235))
    draw.rectangle([x1, y1 + 0.38 * h, x2, y2 - 0.14 * h], fill=body)
    radius = min(0.2 * h, 0.12 * w)
    for cx in (x1 + 0.22 * w, x2 - 0.22 * w):
        draw.ellipse([cx - radius, y2 - 2 * radius, cx + radius, y2], fill=(20, 20, 20))


def _draw_pedestrian(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x1: int, y1: int, x2: int, y2: int) -> None:
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    head = min(0.9 * w, 0.17 * h)
    draw.ellipse([cx - head / 2, y1, cx + head / 2, y1 + head], fill=(235, 195, 160))
    draw.rectangle([x1, y1 + head, x2, y1 + 0.58 * h], fill=_jitter(rng, (40, 170, 60)))
    leg = max(1.0, 0.35 * w)
    draw.rectangle([x1 + 0.05 * w, y1 + 0.58 * h, x1 + 0.05 * w + leg, y2], fill=(35, 40, 120))
    draw.rectangle([x2 - 0.05 * w - leg, y1 + 0.58 * h, x2 - 0.05 * w, y2], fill=(35, 40, 120))


def _draw_cyclist(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x1: int, y1: int, x2: int, y2: int) -> None:
    w, h = x2 - x1, y2 - y1
    radius = min(0.2 * h, 0.26 * w)
    line = max(1, round(radius / 3))
    for cx in (x1 + radius, x2 - radius):
        draw.ellipse([cx - radius, y2 - 2 * radius, cx + radius, y2], outline=(15, 15, 15), width=line)
    draw.line(
        [(x1 + radius, y2 - radius), ((x1 + x2) / 2, y2 - 1.6 * radius), (x2 - radius, y2 - radius)],
        fill=(15, 15, 15),
        width=line,
    )
    cx = (x1 + x2) / 2
    head = min(0.3 * w, 0.16 * h)
    draw.ellipse([cx - head / 2, y1, cx + head / 2, y1 + head], fill=(235, 195, 160))
    draw.rectangle([cx - 0.14 * w, y1 + head, cx + 0.14 * w, y2 - 1.5 * radius], fill=_jitter(rng, (245, 190, 20)))


_DRAW = {"Car": _draw_car, "Pedestrian": _draw_pedestrian, "Cyclist": _draw_cyclist}


def _draw_dont_care(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x1: int, y1: int, x2: int, y2: int) -> None:
    draw.rectangle([x1, y1, x2, y2], fill=(int(rng.integers(115, 145)),) * 3)
    for _ in range(rng.integers(2, 6)):
        bx, by = rng.uniform(x1, x2), rng.uniform(y1, y2)
        bw, bh = rng.uniform(0.1, 0.4) * (x2 - x1), rng.uniform(0.1, 0.4) * (y2 - y1)
        draw.rectangle([bx, by, min(x2, bx + bw), min(y2, by + bh)], fill=(int(rng.integers(95, 165)),) * 3)


def _object_size(rng: np.random.Generator, kind: str, scale: float) -> tuple[float, float]:
    """(height, width) in pixels; log-uniform so small and large objects are both common."""
    log_uniform = lambda low, high: math.exp(rng.uniform(math.log(low), math.log(high)))  # noqa: E731
    if kind == "Car":
        width = log_uniform(22, 170) * scale
        return width * rng.uniform(0.5, 0.72), width
    if kind == "Pedestrian":
        height = log_uniform(18, 120) * scale
        return height, height * rng.uniform(0.3, 0.42)
    height = log_uniform(18, 110) * scale
    return height, height * rng.uniform(0.75, 1.0)


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over the smaller box: how much one hides the other."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1)


def _place(rng: np.random.Generator, size: tuple[float, float], image: tuple[int, int], taken: list, limit: float):
    height, width = min(size[0], image[0] - 2), min(size[1], image[1] - 2)
    for _ in range(30):
        x1 = int(rng.uniform(0, image[1] - width))
        y1 = int(rng.uniform(0, image[0] - height))
        box = (x1, y1, max(x1 + 2, int(x1 + width)), max(y1 + 2, int(y1 + height)))
        if all(_overlap(box, other) <= limit for other in taken):
            return box
    return None


def _label_line(
    kind: str, box: tuple[int, ...], occluded: int, rng: np.random.Generator, image: tuple[int, int]
) -> str:
    x1, y1, x2, y2 = box
    focal = KITTI_FOCAL * image[1] / 1242
    height_m, width_m, length_m = (d * rng.uniform(0.92, 1.08) for d in _DIMENSIONS[kind])
    z = focal * height_m / max(y2 - y1, 1)
    x = ((x1 + x2) / 2 - image[1] / 2) * z / focal
    y = (y2 - image[0] * 0.46) * z / focal
    rotation_y = rng.uniform(-math.pi, math.pi)
    alpha = (rotation_y - math.atan2(x, z) + math.pi) % (2 * math.pi) - math.pi
    return format_kitti_line(KittiObject(kind, 0.0, occluded, (x1, y1, x2, y2), alpha=alpha,
                                         dimensions=(height_m, width_m, length_m), location=(x, y, z),
                                         rotation_y=rotation_y))


def _draw_sample(
    rng: np.random.Generator, size: tuple[int, int], classes: Sequence[str]
) -> tuple[Image.Image, list[str]]:
    image = _background(rng, *size)
    draw = ImageDraw.Draw(image)
    scale = min(size[0] / REFERENCE_SIZE[0], size[1] / REFERENCE_SIZE[1])
    taken: list[tuple[int, ...]] = []

    dont_cares = []
    if rng.uniform() < 0.35:
        for _ in range(rng.integers(1, 3)):
            side = rng.uniform(20, 80) * scale
            box = _place(rng, (side * rng.uniform(0.6, 1.0), side), size, taken, 0.0)
            if box is not None:
                _draw_dont_care(draw, rng, *box)
                taken.append(box)
                dont_cares.append(box)

    objects: list[tuple[str, tuple[int, ...]]] = []
    for _ in range(rng.integers(1, 7)):
        kind = classes[int(rng.integers(len(classes)))]
        object_size = _object_size(rng, kind, scale)
        box = _place(rng, object_size, size, taken, 0.3)
        if box is None and not objects:
            box = _place(rng, object_size, size, taken, 1.0)  # every image holds at least one object
        if box is not None:
            taken.append(box)
            objects.append((kind, box))
    # Far (higher in the image) first, so nearer objects overlap farther ones as in a street.
    objects.sort(key=lambda item: item[1][3])
    lines = []
    for index, (kind, box) in enumerate(objects):
        _DRAW[kind](draw, rng, *box)
        occluded = int(any(_overlap(box, later) > 0 for _, later in objects[index + 1 :]))
        lines.append(_label_line(kind, box, occluded, rng, size))
    for x1, y1, x2, y2 in dont_cares:
        lines.append(format_kitti_line(KittiObject(DONT_CARE, -1.0, -1, (x1, y1, x2, y2))))
    return image, lines


def generate_kitti_sample(
    folder: str | Path,
    *,
    images: int,
    source_size: Sequence[int] = REFERENCE_SIZE,
    seed: int = 0,
    classes: Sequence[str] = DRAWABLE_CLASSES,
) -> Path:
    """Write ``folder/training/image_2/NNNNNN.png`` and ``folder/training/label_2/NNNNNN.txt``
    (KITTI's 15-column labels); a folder already complete is left as it is."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return folder
    unknown = [name for name in classes if name not in DRAWABLE_CLASSES]
    if unknown:
        raise DataError(
            f"the synthetic sample cannot draw class {', '.join(unknown)}; it draws {', '.join(DRAWABLE_CLASSES)}"
        )
    size = (int(source_size[0]), int(source_size[1]))
    if min(size) < 32:
        raise DataError(f"the synthetic sample needs source_size of at least 32x32 pixels (got {list(source_size)})")
    # Drawn aside and moved into place when complete: processes that share the cache (the
    # workers of a multi-worker run) never read a sample another one is still writing.
    with writing("the synthetic sample", folder.parent), staging(folder, done_marker=MARKER) as building:
        image_dir, label_dir = building / "training" / "image_2", building / "training" / "label_2"
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)

        def write_one(index: int) -> None:
            rng = np.random.default_rng([seed, index])
            image, lines = _draw_sample(rng, size, tuple(classes))
            image.save(image_dir / f"{index:06d}.png", format="PNG", compress_level=1)
            (label_dir / f"{index:06d}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")

        # Threads: PNG encoding (zlib) releases the GIL, about half the work. Each image has
        # its own generator, so the result does not depend on scheduling.
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for _ in pool.map(write_one, range(images)):
                pass
        (building / MARKER).write_text(json.dumps({"images": images, "version": GENERATOR_VERSION}) + "\n")
    return folder
