"""The input sizes of multi-scale training (``multi_scale = [smallest, largest]``), in pure Python.

YOLOv3 trained at a size drawn every ten batches from 320 to 608 pixels, a multiple of
its largest stride (32). Here the range is that of the input's long side, and the short
side keeps the dataset's aspect: its scaled length rounded up to a multiple of the
largest stride, so every grid has whole cells. The boxes are ratios of the image, so
resizing a letterboxed input moves none of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from detplug.core.plan.specs import ImageSpec


def multi_scale_sizes(image: ImageSpec, size_range: Sequence[int], largest_stride: int) -> list[tuple[int, int]]:
    """Every (height, width) multi-scale training draws from, smallest first; empty when no
    multiple of ``largest_stride`` lies in ``size_range``."""
    smallest, largest = size_range
    long_side = max(image.height, image.width)
    sizes = []
    for side in range(math.ceil(smallest / largest_stride) * largest_stride, largest + 1, largest_stride):
        factor = side / long_side
        scaled = [max(largest_stride, math.ceil(length * factor / largest_stride) * largest_stride)
                  for length in (image.height, image.width)]
        # The long side exactly ``side``; the short one rounded up (never past the long one).
        height, width = (side, min(side, scaled[1])) if image.height >= image.width else (min(side, scaled[0]), side)
        if (height, width) not in sizes:
            sizes.append((height, width))
    return sizes
