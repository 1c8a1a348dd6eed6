"""The training data as the trainer sees it (``run.py --show-data``).

``train_batch<k>.png`` draws the images of one training batch after letterboxing and
augmentation, each box in its class's colour with its name and the anchors the targets
give it, by stride: ``Car 8:2 16:01`` is anchor 2 of stride 8 and anchors 0 and 1 of
stride 16. Each of those anchors is drawn thin, at its size, centred on the box's own
cell; every cell a box trains (its own, and the neighbours YOLOv5's assignment adds)
has a dot on its centre. Ignore regions are shaded grey. ``labels.png`` sums up the boxes of the training
records: how many per class, their widths and heights in pixels at the input size with
the anchors over them, and where their centres fall.

Everything here is numpy, Pillow and matplotlib: the batches come in as numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
from PIL import Image, ImageDraw

from detplug.core.evaluate.drawing import PALETTE, grid
from detplug.core.pictures import figure, save_png

#: (h, w) ratios of the image, per stride.
Anchors = Mapping[int, Sequence[tuple[float, float]]]
IGNORE_FILL = (128, 128, 128, 110)
#: Images drawn per batch picture (the rest of a larger batch is left out).
BATCH_IMAGES = 16
#: Images smaller than this (their longer side, in pixels) are enlarged by a whole factor
#: so that labels stay readable.
READABLE_SIDE = 640


@attrs.frozen(order=True)
class Positive:
    """One target a box trains: at ``stride``, ``anchor`` (its index at that stride), cell (row, col)."""

    stride: int
    anchor: int
    row: int
    col: int



def places(positives: Sequence[Positive]) -> str:
    """``8:2 16:01``: the anchors of each stride a box trains (any of its cells)."""
    by_stride: dict[int, set[int]] = {}
    for positive in positives:
        by_stride.setdefault(positive.stride, set()).add(positive.anchor)
    return " ".join(f"{stride}:{''.join(map(str, sorted(anchors)))}" for stride, anchors in sorted(by_stride.items()))


def positives_per_box(targets: Mapping[str, np.ndarray], boxes_yxhw: np.ndarray) -> list[list[Positive]]:
    """For one image: the positives of each of its boxes (``targets`` as the pipeline gives
    them, one image's slice). A positive's target holds its box's yxhw, which names the box."""
    found: list[list[Positive]] = [[] for _ in range(len(boxes_yxhw))]
    for key, target in targets.items():
        if not key.isdigit():
            continue
        for row, col, anchor in zip(*np.nonzero(target[..., 4] > 0)):
            distance = np.abs(boxes_yxhw - target[row, col, anchor, :4]).max(axis=1)
            found[int(np.argmin(distance))].append(Positive(int(key), int(anchor), int(row), int(col)))
    return [sorted(positives) for positives in found]


def scale_for(height: int, width: int) -> int:
    """The whole factor by which an image of this size is enlarged to be read."""
    return max(1, READABLE_SIDE // max(height, width))


def draw_training_image(pixels: np.ndarray, boxes_yxhw: np.ndarray, classes: np.ndarray,
                        targets: Mapping[str, np.ndarray], anchors: Anchors,
                        class_names: Sequence[str]) -> Image.Image:
    """One training image (``pixels`` (H, W, 3) in [0, 1]) with its boxes, their positives
    and its ignore regions; ``anchors`` are (h, w) ratios of the image per stride.

    Box outlines are 2 pixels wide, drawn inside the box's own pixels: a box from
    x1 to x2 (pixels at the input size, times the enlargement ``scale_for``) covers
    columns x1 to x2 - 1."""
    height, width = pixels.shape[:2]
    scale = scale_for(height, width)
    image = Image.fromarray(np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8))
    if scale > 1:
        image = image.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    shade = ImageDraw.Draw(overlay)
    real = (boxes_yxhw[:, 2] > 0) & (boxes_yxhw[:, 3] > 0)
    corners = _corners(boxes_yxhw, height * scale, width * scale)
    for index in np.nonzero(real & (classes < 0))[0]:
        shade.rectangle(corners[index], fill=IGNORE_FILL)
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(image)
    positives = positives_per_box(targets, boxes_yxhw)
    for index in np.nonzero(real & (classes >= 0))[0]:
        colour = PALETTE[int(classes[index]) % len(PALETTE)]
        y, x = boxes_yxhw[index, :2]
        for positive in positives[index]:
            own_cell = (positive.row, positive.col) == (int(y * height) // positive.stride,
                                                        int(x * width) // positive.stride)
            _draw_anchor(draw, positive, anchors, scale, height * scale, width * scale, colour, shape=own_cell)
    for index in np.nonzero(real)[0]:
        if classes[index] < 0:
            _label(draw, corners[index], "ignore", IGNORE_FILL[:3])
            continue
        colour = PALETTE[int(classes[index]) % len(PALETTE)]
        draw.rectangle(corners[index], outline=colour, width=2)
        where = places(positives[index]) or "no target"
        _label(draw, corners[index], f"{class_names[int(classes[index])]} {where}", colour)
    return image


def _corners(boxes_yxhw: np.ndarray, height: int, width: int) -> list[list[int]]:
    """[x1, y1, x2 - 1, y2 - 1] in whole pixels: the first and last pixel a box covers."""
    y, x, h, w = (boxes_yxhw[:, index] for index in range(4))
    x1, x2 = np.round((x - w / 2) * width), np.round((x + w / 2) * width)
    y1, y2 = np.round((y - h / 2) * height), np.round((y + h / 2) * height)
    return [[int(a), int(b), int(max(a, c - 1)), int(max(b, d - 1))] for a, b, c, d in zip(x1, y1, x2, y2)]


def _draw_anchor(draw: ImageDraw.ImageDraw, positive: Positive, anchors: Anchors, scale: int, height: int,
                 width: int, colour: tuple[int, int, int], *, shape: bool) -> None:
    """A dot on the centre of the positive's cell and, with ``shape``, its anchor around it."""
    centre_x = (positive.col + 0.5) * positive.stride * scale
    centre_y = (positive.row + 0.5) * positive.stride * scale
    if shape:
        anchor_h, anchor_w = anchors[positive.stride][positive.anchor]
        half_w, half_h = anchor_w * width / 2, anchor_h * height / 2
        draw.rectangle([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h],
                       outline=tuple(c // 2 + 64 for c in colour), width=1)
    draw.ellipse([centre_x - 2, centre_y - 2, centre_x + 2, centre_y + 2], fill=colour)


def _label(draw: ImageDraw.ImageDraw, corner: Sequence[int], text: str, colour: tuple[int, ...]) -> None:
    x1, y1 = corner[0], corner[1]
    left, top, right, bottom = draw.textbbox((0, 0), text)
    lift = bottom - top + 2
    y = y1 - lift if y1 >= lift else y1
    draw.rectangle([x1, y, x1 + right - left + 4, y + lift], fill=tuple(colour[:3]))
    draw.text((x1 + 2, y - top + 1), text, fill=(255, 255, 255))


def sheet_columns(count: int, width: int, height: int) -> int:
    """Images per line of a batch's sheet: about 16:9 over all, 4 at most."""
    return max(1, min(4, count, round(math.sqrt(count * height / width * 16 / 9))))


def draw_batch(images: np.ndarray, targets: Mapping[str, np.ndarray], anchors: Anchors, class_names: Sequence[str],
               out: Path) -> Path:
    """One batch (``images`` (B, H, W, 3), its targets) as a grid of up to BATCH_IMAGES images."""
    count = min(len(images), BATCH_IMAGES)
    drawn = [draw_training_image(images[index], targets["boxes"][index], targets["classes"][index],
                                 {key: value[index] for key, value in targets.items()}, anchors, class_names)
             for index in range(count)]
    sheet = grid(drawn, columns=sheet_columns(count, *drawn[0].size))
    return save_png(sheet, out, f"the picture of a training batch {out.name}")


def draw_labels(boxes: np.ndarray, classes: np.ndarray, image_hw: tuple[int, int],
                anchors: Anchors, class_names: Sequence[str], out: Path) -> Path:
    """labels.png: boxes per class, box width x height in pixels with the anchors over them,
    and where the box centres fall. ``boxes`` (N, 4) y1 x1 y2 x2 ratios of the input image,
    ``classes`` (N,) (ignore regions already left out)."""
    height, width = image_hw
    box_w = (boxes[:, 3] - boxes[:, 1]) * width
    box_h = (boxes[:, 2] - boxes[:, 0]) * height
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2 * width
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2 * height
    fig, _ = figure(15, 4.5)
    fig.suptitle(f"{len(boxes):,} boxes of the training records, at the input size {height}x{width}")
    counts_axis, sizes_axis, centres_axis = (fig.add_subplot(1, 3, index) for index in (1, 2, 3))

    counts = np.bincount(classes.astype(int), minlength=len(class_names))[:len(class_names)]
    colours = [tuple(c / 255 for c in PALETTE[index % len(PALETTE)]) for index in range(len(class_names))]
    counts_axis.bar(range(len(class_names)), counts, color=colours)
    counts_axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    counts_axis.set_title("boxes per class")

    if len(boxes):
        sizes_axis.hist2d(box_w, box_h, bins=40, cmap="Blues", cmin=1)
    for number, stride in enumerate(sorted(anchors)):
        pairs = np.asarray(anchors[stride], np.float64).reshape(-1, 2)
        sizes_axis.scatter(pairs[:, 1] * width, pairs[:, 0] * height, marker="x", s=60, linewidths=2,
                           color=tuple(c / 255 for c in PALETTE[number % len(PALETTE)]),
                           label=f"anchors, stride {stride}")
    sizes_axis.set_xlabel("width (pixels)")
    sizes_axis.set_ylabel("height (pixels)")
    sizes_axis.set_title("box sizes and the anchors")
    sizes_axis.legend(fontsize=7)

    if len(boxes):
        centres_axis.hist2d(centre_x, centre_y, bins=[40, max(4, round(40 * height / width))],
                            range=[[0, width], [0, height]], cmap="Blues", cmin=1)
    centres_axis.set_xlim(0, width)
    centres_axis.set_ylim(height, 0)
    centres_axis.set_aspect("equal")
    centres_axis.set_title("box centres")
    return save_png(fig, out, "the label statistics labels.png")
