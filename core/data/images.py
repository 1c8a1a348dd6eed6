"""Reading an image file as the 8-bit RGB the records and the model take.

Pillow's ``convert("RGB")`` clips 16-bit grayscale (mode ``I;16``) at 255, so a 16-bit
PNG became a white image without a word. Here every mode is mapped on purpose:

- 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, and ``I`` holding 0..65535) is scaled
  to 8 bits (value / 257, rounded), then grey to RGB. Pillow already reads 16-bit RGB(A)
  PNGs as 8-bit RGB(A) (the high byte of each sample).
- Transparency (``RGBA``, ``LA``, ``PA``, a palette with a transparent colour) is
  composited over the letterbox padding grey, so transparent parts look like padding.
- Palette, grayscale, bilevel, CMYK and YCbCr images are converted by Pillow.
- Anything else (floating-point ``F``, ``LAB``, ``HSV``, ...) is refused, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detplug.core.data.letterbox import PAD_VALUE
from detplug.core.errors import DataError

#: Suffixes (any case) that image folders are searched for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_CONVERTED = ("RGB", "L", "1", "CMYK", "YCbCr", "RGBX")
_TRANSPARENT = ("RGBA", "LA", "PA", "La", "RGBa")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def as_rgb(image: Image.Image, path: str | Path) -> Image.Image:
    """``image`` as 8-bit RGB (see the module docstring); a DataError naming ``path`` for a
    mode that has no faithful 8-bit RGB form."""
    mode = image.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(mode)
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{path}: a 32-bit integer image with values {values.min()}..{values.max()}, outside "
                            f"16 bits; save it as 8- or 16-bit PNG or JPEG")
        grey = np.rint(values / 257.0).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB")
    if mode in _TRANSPARENT:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (PAD_VALUE, PAD_VALUE, PAD_VALUE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _CONVERTED:
        return image if mode == "RGB" else image.convert("RGB")
    raise DataError(f"{path}: image mode {mode} (e.g. floating-point or LAB pixels) has no faithful 8-bit RGB form; "
                    f"save it as an 8- or 16-bit PNG or a JPEG")


def read_rgb(path: str | Path) -> Image.Image:
    """The image file at ``path``, decoded completely, as 8-bit RGB."""
    with Image.open(path) as image:
        image.load()  # decodes it all: a truncated file fails here
        return as_rgb(image, path)
