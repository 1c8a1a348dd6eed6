"""Which anchors and cells a ground-truth box trains (settings only, no TensorFlow).

The plan's ``[model] assign`` table; targets.py does the assigning. The
defaults are YOLOv3's rule: one anchor per box, the one over all strides whose
shape fits the box best, in the cell that holds the box centre.

``anchor_ratio`` and ``neighbours`` are YOLOv5's rule (ultralytics/yolov5
``build_targets``), which gives each box several positives and so several
times the box and class gradient per image: a short run learns much faster.
"""

from __future__ import annotations

import attrs
from attrs import field

#: How far outside its own cell a neighbour cell's prediction must be able to place a box
#: centre: half a cell, since a neighbour is taken only for a centre in the half next to it.
NEIGHBOUR_REACH = 0.5


def _ratio(instance, attribute, value) -> None:
    if value != 0 and not value > 1:
        raise ValueError(f"'{attribute.name}' must be 0 (best anchor only) or > 1 (got {value!r})")


@attrs.frozen(kw_only=True)
class Assignment:
    """How target assignment picks the positives of each box."""

    #: 0: only the best-fitting anchor over all strides (YOLOv3). Above 1: also every anchor,
    #: at any stride, whose height and width are both within this factor of the box's
    #: (YOLOv5's anchor_t, 4.0); the best-fitting anchor always counts, so no box goes untrained.
    anchor_ratio: float = field(default=0.0, converter=float, validator=_ratio)
    #: Also the two cells next to the centre's cell nearest to the centre, one across and one
    #: up or down (YOLOv5). Needs a decoder whose box centres reach half a cell beyond their
    #: own (``yolov4`` with ``scale_xy = 2``), which the static check verifies.
    neighbours: bool = False

    @property
    def reach_needed(self) -> float:
        """How far beyond its cell (in cells) the decoder must be able to put a box centre."""
        return NEIGHBOUR_REACH if self.neighbours else 0.0

    def describe(self) -> str:
        if not self.anchor_ratio and not self.neighbours:
            return "best anchor, centre cell (YOLOv3)"
        anchors = f"anchors within {self.anchor_ratio:g}x of the box" if self.anchor_ratio else "best anchor"
        cells = "centre cell and its 2 nearest neighbours" if self.neighbours else "centre cell"
        return f"{anchors}, {cells}"
