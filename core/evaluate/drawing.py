"""Boxes, class names and scores drawn on images (Pillow), and grids of such images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

#: Distinct colours, one per class index (cycled).
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128))
TRUTH_COLOUR = (255, 255, 255)


def draw_boxes(image: Image.Image, boxes: np.ndarray, names: Sequence[str], *,
               scores: Sequence[float] | np.ndarray | None = None, classes: Sequence[int] | np.ndarray | None = None,
               truth: np.ndarray | None = None) -> Image.Image:
    """A copy of ``image`` with ``boxes`` (x1, y1, x2, y2 pixels) labelled ``name score``;
    ``truth`` boxes, if given, are drawn thin and white underneath."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    for box in np.asarray(truth if truth is not None else np.zeros((0, 4))).reshape(-1, 4):
        draw.rectangle([float(v) for v in box], outline=TRUTH_COLOUR, width=1)
    for index, box in enumerate(np.asarray(boxes).reshape(-1, 4)):
        colour = PALETTE[int(classes[index]) % len(PALETTE)] if classes is not None else PALETTE[0]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        label = names[index] if scores is None else f"{names[index]} {float(scores[index]):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label)
        lift = bottom - top + 2
        draw.rectangle([x1, y1 - lift, x1 + right - left + 4, y1], fill=colour)
        draw.text((x1 + 2, y1 - lift), label, fill=(255, 255, 255))
    return canvas


def grid(images: Sequence[Image.Image], columns: int = 2) -> Image.Image:
    """Images of one size tiled row by row."""
    width, height = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (width * columns, height * rows), (0, 0, 0))
    for index, image in enumerate(images):
        sheet.paste(image, ((index % columns) * width, (index // columns) * height))
    return sheet
