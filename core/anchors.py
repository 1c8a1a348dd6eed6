"""Anchor pools and their conversion from pixels to ratios of the input image.

No TensorFlow here: the static check resolves anchors too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from detplug.core.specs import AnchorRatios, ImageSpec

#: Pixel anchors as (width, height), three per stride, as YOLOv3's cfg writes them.
ANCHOR_POOLS: dict[str, dict[int, tuple[tuple[int, int], ...]]] = {
    # YOLOv3's nine k-means anchors on COCO at 416x416 (yolov3.cfg, "anchors = ...").
    "coco_yolov3": {
        8: ((10, 13), (16, 30), (33, 23)),
        16: ((30, 61), (62, 45), (59, 119)),
        32: ((116, 90), (156, 198), (373, 326)),
    },
}


class AnchorError(ValueError):
    pass


def anchor_pixels(anchors: str | Mapping[int | str, Sequence[Sequence[float]]]) -> dict[int, tuple]:
    """The pixel anchors (width, height) per stride, from a pool name or an explicit table."""
    if isinstance(anchors, str):
        try:
            return dict(ANCHOR_POOLS[anchors])
        except KeyError:
            raise AnchorError(
                f"unknown anchor pool '{anchors}'; known pools: {', '.join(sorted(ANCHOR_POOLS))}, "
                f"or give a table such as {{ 8 = [[10, 13], ...], 16 = [...], 32 = [...] }}"
            ) from None
    table = {}
    for stride, pairs in anchors.items():
        try:
            stride_int = int(stride)
            table[stride_int] = tuple((float(w), float(h)) for w, h in pairs)
        except (TypeError, ValueError):
            raise AnchorError(
                f"anchors for stride {stride!r} must be a list of [width, height] pairs in pixels "
                f"(got {pairs!r})"
            ) from None
        if not table[stride_int] or any(w <= 0 or h <= 0 for w, h in table[stride_int]):
            raise AnchorError(f"anchors for stride {stride}: need positive [width, height] pairs (got {pairs!r})")
    return table


def anchors_to_ratios(pixels: Mapping[int, Sequence[Sequence[float]]], image: ImageSpec) -> dict[int, AnchorRatios]:
    """Pixel anchors (width, height) to (height, width) ratios of the input image.

    The pixel sizes are kept as pixels of the input image, as the original
    framework's ``set_anchors`` did: an anchor of 116x90 px on a 192x640 input
    is (90/192, 116/640).
    """
    return {
        stride: tuple((h / image.height, w / image.width) for w, h in pairs)
        for stride, pairs in sorted(pixels.items())
    }
