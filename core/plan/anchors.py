"""Anchor pools and their conversion from pixels to ratios of the input image.

No TensorFlow here: the static check resolves anchors too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from detplug.core.plan.specs import AnchorRatios, ImageSpec

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
        if not table[stride_int] or any(not (0 < w < math.inf and 0 < h < math.inf) for w, h in table[stride_int]):
            raise AnchorError(f"anchors for stride {stride}: need positive, finite [width, height] pairs "
                              f"(got {pairs!r})")
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


#: Box sizes tried per side when finding which anchors can match an object at all.
_PROBE_SIZES = 32


def unmatched_strides(pixels: Mapping[int, Sequence[Sequence[float]]], image: ImageSpec, *,
                      anchor_ratio: float = 0.0) -> dict[int, list[str]]:
    """What each stride's anchors cannot do at ``image``'s size, as reasons: {stride: [...]}.

    A stride whose anchors are never the best shape match (nor, with ``anchor_ratio``,
    within that factor) of any box that fits the image gets no ground truth at all; an
    anchor larger than the image matches no object. Box sizes from 2 px to the image
    size are probed on a geometric grid, so this needs no data.
    """
    flat = [(stride, float(w), float(h)) for stride, pairs in sorted(pixels.items()) for w, h in pairs]
    reached: set[int] = set()
    for height in _geometric(2.0, float(image.height)):
        for width in _geometric(2.0, float(image.width)):
            shape_ious = [_shape_iou(width, height, w, h) for _, w, h in flat]
            reached.add(max(range(len(flat)), key=shape_ious.__getitem__))
            if anchor_ratio > 0:
                reached.update(index for index, (_, w, h) in enumerate(flat)
                               if max(width / w, w / width, height / h, h / height) < anchor_ratio)
    problems: dict[int, list[str]] = {}
    for stride in sorted(pixels):
        indices = [index for index, (s, _, _) in enumerate(flat) if s == stride]
        listed = ", ".join(f"{flat[i][1]:g}x{flat[i][2]:g}" for i in indices)
        if not reached.intersection(indices):
            problems.setdefault(stride, []).append(
                f"its anchors ({listed} px, width x height) are the best match for no object that fits a "
                f"{image.height}x{image.width} image, so it gets no ground truth")
        too_big = [f"{flat[i][1]:g}x{flat[i][2]:g}" for i in indices
                   if flat[i][1] > image.width or flat[i][2] > image.height]
        if too_big:
            problems.setdefault(stride, []).append(
                f"anchor{'s' if len(too_big) > 1 else ''} {', '.join(too_big)} px "
                f"{'are' if len(too_big) > 1 else 'is'} larger than the {image.height}x{image.width} image")
    return problems


def _geometric(low: float, high: float) -> list[float]:
    if high <= low:
        return [high]
    ratio = (high / low) ** (1.0 / (_PROBE_SIZES - 1))
    return [low * ratio**step for step in range(_PROBE_SIZES)]


def _shape_iou(width: float, height: float, anchor_width: float, anchor_height: float) -> float:
    intersection = min(width, anchor_width) * min(height, anchor_height)
    return intersection / (width * height + anchor_width * anchor_height - intersection)
