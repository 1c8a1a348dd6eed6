"""Letterboxing for conversion (numpy + Pillow, no TensorFlow).

The image is scaled to fit the target size keeping its aspect ratio and padded,
centred, with gray 114 (YOLO's usual fill). Boxes follow the same scale and
offset, so records hold boxes of the letterboxed image the model sees.
"""

from __future__ import annotations

import attrs
import numpy as np
from PIL import Image

PAD_VALUE = 114


@attrs.frozen
class Letterbox:
    """How one source size maps into the target size.

    ``scale_y``/``scale_x`` are the exact per-axis factors after rounding the
    resized size to whole pixels, so boxes land where the pixels landed.
    """

    source: tuple[int, int]  # (height, width) before
    target: tuple[int, int]  # (height, width) after
    resized: tuple[int, int]  # (height, width) of the image content inside the target
    offset: tuple[int, int]  # (top, left) padding

    @property
    def scale_y(self) -> float:
        return self.resized[0] / self.source[0]

    @property
    def scale_x(self) -> float:
        return self.resized[1] / self.source[1]

    def boxes(self, xyxy_pixels: np.ndarray) -> np.ndarray:
        """Pixel boxes (x1, y1, x2, y2) of the source image to (y1, x1, y2, x2)
        normalised to the letterboxed image, clipped to the image content."""
        xyxy = np.asarray(xyxy_pixels, np.float64).reshape(-1, 4)
        top, left = self.offset
        height, width = self.target
        x = np.clip(xyxy[:, [0, 2]], 0, self.source[1]) * self.scale_x + left
        y = np.clip(xyxy[:, [1, 3]], 0, self.source[0]) * self.scale_y + top
        return np.stack([y[:, 0] / height, x[:, 0] / width, y[:, 1] / height, x[:, 1] / width], axis=1).astype(
            np.float32
        )


def letterbox_params(source: tuple[int, int], target: tuple[int, int]) -> Letterbox:
    """The scale and padding that fit ``source`` (h, w) into ``target`` (h, w)."""
    (source_h, source_w), (target_h, target_w) = source, target
    scale = min(target_h / source_h, target_w / source_w)
    resized_h = min(target_h, max(1, round(source_h * scale)))
    resized_w = min(target_w, max(1, round(source_w * scale)))
    offset = ((target_h - resized_h) // 2, (target_w - resized_w) // 2)
    return Letterbox((source_h, source_w), (target_h, target_w), (resized_h, resized_w), offset)


def letterbox_image(image: Image.Image, target: tuple[int, int]) -> tuple[Image.Image, Letterbox]:
    """An RGB image letterboxed to ``target`` (h, w), and the mapping for its boxes."""
    box = letterbox_params((image.height, image.width), target)
    rgb = image.convert("RGB")
    if box.resized != box.source:
        rgb = rgb.resize((box.resized[1], box.resized[0]), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (target[1], target[0]), (PAD_VALUE,) * 3)
    canvas.paste(rgb, (box.offset[1], box.offset[0]))
    return canvas, box
