"""Target assignment: YOLOv3's one anchor per box, by shape, in the cell of its centre; and
YOLOv5's every anchor within a size ratio, in the centre's cell and its two nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from detplug.core.data.targets import assign_targets, shape_iou
from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.assignment import Assignment
from detplug.core.plan.specs import ImageSpec

IMAGE = ImageSpec(192, 640)
ANCHORS = anchors_to_ratios(anchor_pixels("coco_yolov3"), IMAGE)
NUM_CLASSES = 3


def pixel_box(y: float, x: float, height_px: float, width_px: float) -> list[float]:
    """A yxhw box: centre as ratios, size given in pixels of the 192x640 input."""
    return [y, x, height_px / IMAGE.height, width_px / IMAGE.width]


def assign(boxes, classes) -> dict[str, np.ndarray]:
    targets = assign_targets(
        tf.constant(boxes, tf.float32), tf.constant(classes, tf.int32), ANCHORS, IMAGE, NUM_CLASSES
    )
    return {stride: tensor.numpy() for stride, tensor in targets.items()}


def test_one_tensor_per_stride_with_grid_anchors_and_channels():
    targets = assign(np.zeros((0, 4)), np.zeros((0,)))
    assert {stride: t.shape for stride, t in targets.items()} == {
        "8": (24, 80, 3, 8),
        "16": (12, 40, 3, 8),
        "32": (6, 20, 3, 8),
    }
    assert all(not t.any() for t in targets.values())


def test_box_goes_to_best_shape_anchor_of_stride_16_in_the_cell_of_its_centre():
    # 50 px high, 60 px wide. Shape IoU by hand with the (w x h) anchors:
    #   62x45 (stride 16, anchor 1): 45*60 / (3000 + 2790 - 2700) = 0.874   <- best
    #   30x61 (stride 16, anchor 0): 50*30 / (3000 + 1830 - 1500) = 0.450
    #   59x119 (stride 16, anchor 2): 50*59 / (3000 + 7021 - 2950) = 0.417
    #   116x90 (stride 32, anchor 0): 3000 / 10440 = 0.287;  33x23 (stride 8): 759 / 3000 = 0.253
    box = pixel_box(0.5, 0.3, 50, 60)
    targets = assign([box], [2])
    # stride 16 on 192x640 is a 12x40 grid: row = floor(0.5 * 12) = 6, col = floor(0.3 * 40) = 12
    np.testing.assert_allclose(targets["16"][6, 12, 1], box + [1.0, 0.0, 0.0, 1.0], rtol=1e-6)
    total_objects = sum(t[..., 4].sum() for t in targets.values())
    assert total_objects == 1.0


def test_shape_iou_matches_the_hand_computed_values():
    iou = shape_iou(tf.constant([[50.0, 60.0]]), tf.constant([[45.0, 62.0], [61.0, 30.0]])).numpy()
    np.testing.assert_allclose(iou[0], [2700 / 3090, 1500 / 3330], rtol=1e-6)


def test_small_and_large_boxes_go_to_strides_8_and_32():
    small = pixel_box(0.26, 0.51, 13, 10)  # exactly anchor 10x13: stride 8, anchor 0
    large = pixel_box(0.9, 0.05, 90, 116)  # exactly anchor 116x90: stride 32, anchor 0
    targets = assign([small, large], [0, 1])
    # stride 8: 24x80 grid, row floor(0.26*24)=6, col floor(0.51*80)=40
    np.testing.assert_allclose(targets["8"][6, 40, 0], small + [1.0, 1.0, 0.0, 0.0], rtol=1e-6)
    # stride 32: 6x20 grid, row floor(0.9*6)=5, col floor(0.05*20)=1
    np.testing.assert_allclose(targets["32"][5, 1, 0], large + [1.0, 0.0, 1.0, 0.0], rtol=1e-6)
    assert targets["16"][..., 4].sum() == 0


@pytest.mark.parametrize(
    ("y", "x", "row", "col"),
    [(0.0, 0.0, 0, 0), (0.26, 0.51, 6, 40), (0.999, 0.999, 23, 79), (1.0, 1.0, 23, 79)],
)
def test_cell_is_floor_of_centre_times_grid_clipped_to_the_grid(y, x, row, col):
    targets = assign([pixel_box(y, x, 13, 10)], [0])
    rows, cols, anchors = np.nonzero(targets["8"][..., 4])
    assert (rows.tolist(), cols.tolist(), anchors.tolist()) == ([row], [col], [0])


def test_dont_care_and_padding_get_no_target():
    dont_care = pixel_box(0.5, 0.5, 50, 60)
    padding = [0.0, 0.0, 0.0, 0.0]
    targets = assign([dont_care, padding, padding], [-1, 0, -1])
    assert all(not t.any() for t in targets.values())


def test_two_boxes_claiming_one_cell_and_anchor_keep_the_first():
    box = pixel_box(0.5, 0.3, 50, 60)
    targets = assign([box, box], [0, 2])
    assert targets["16"][..., 4].sum() == 1.0
    np.testing.assert_array_equal(targets["16"][6, 12, 1, 5:], [1.0, 0.0, 0.0])


def test_runs_in_a_graph_with_an_unknown_number_of_boxes():
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    def graph_assign(boxes, classes):
        return assign_targets(boxes, classes, ANCHORS, IMAGE, NUM_CLASSES)

    box = pixel_box(0.5, 0.3, 50, 60)
    targets = graph_assign(tf.constant([box, [0.0] * 4]), tf.constant([1, -1]))
    assert targets["16"].shape == (12, 40, 3, 8)
    np.testing.assert_allclose(targets["16"][6, 12, 1].numpy(), box + [1.0, 0.0, 1.0, 0.0], rtol=1e-6)


# -- YOLOv5's assignment -------------------------------------------------------

SQUARE = ImageSpec(64, 64)
#: One square anchor per stride, 8, 16 and 32 px, as (height, width) ratios of the 64x64 image.
SQUARE_ANCHORS = anchors_to_ratios({8: [(8, 8)], 16: [(16, 16)], 32: [(32, 32)]}, SQUARE)


def positives(boxes, classes, assignment) -> dict[str, list[tuple[int, int, int]]]:
    """{stride: sorted (row, col, anchor) of every positive}."""
    targets = assign_targets(tf.constant(boxes, tf.float32), tf.constant(classes, tf.int32), SQUARE_ANCHORS, SQUARE,
                             NUM_CLASSES, assignment)
    return {stride: sorted(map(tuple, np.argwhere(t.numpy()[..., 4] > 0).tolist())) for stride, t in targets.items()}


def test_anchor_ratio_adds_every_anchor_within_the_ratio_and_keeps_the_best():
    # A 12x12 px box: shape IoU 64/144 with the 8 px anchor, 144/256 with 16 px (the best),
    # 144/1024 with 32 px; size ratios 1.5, 1.33 and 2.67.
    box = [0.3, 0.55, 12 / 64, 12 / 64]
    assert positives([box], [0], Assignment()) == {"8": [], "16": [(1, 2, 0)], "32": []}
    assert positives([box], [0], Assignment(anchor_ratio=2.0)) == {"8": [(2, 4, 0)], "16": [(1, 2, 0)], "32": []}
    assert positives([box], [0], Assignment(anchor_ratio=4.0)) == {
        "8": [(2, 4, 0)], "16": [(1, 2, 0)], "32": [(0, 1, 0)]}
    # A box no anchor is within 1.1x of still trains its best one.
    assert positives([box], [0], Assignment(anchor_ratio=1.1)) == {"8": [], "16": [(1, 2, 0)], "32": []}


def test_neighbours_are_the_two_cells_nearest_to_the_centre():
    box = [0.3, 0.55, 12 / 64, 12 / 64]
    # stride 8 (8x8 grid): centre at (2.4, 4.4) cells, in the upper-left part of cell (2, 4): up and left.
    # stride 16 (4x4): (1.2, 2.2): up and left.  stride 32 (2x2): (0.6, 1.1): down and left.
    found = positives([box], [0], Assignment(anchor_ratio=4.0, neighbours=True))
    assert found == {"8": [(1, 4, 0), (2, 3, 0), (2, 4, 0)], "16": [(0, 2, 0), (1, 1, 0), (1, 2, 0)],
                     "32": [(0, 0, 0), (0, 1, 0), (1, 1, 0)]}
    targets = assign_targets(tf.constant([box]), tf.constant([2]), SQUARE_ANCHORS, SQUARE, NUM_CLASSES,
                             Assignment(neighbours=True))
    # Every positive of a box holds the box itself, objectness 1 and its class.
    for row, col in ((0, 2), (1, 1), (1, 2)):
        np.testing.assert_allclose(targets["16"][row, col, 0].numpy(), box + [1.0, 0.0, 0.0, 1.0], rtol=1e-6)


def test_no_neighbour_outside_the_grid():
    corner = [0.01, 0.01, 12 / 64, 12 / 64]  # upper-left half of the first cell: its neighbours are off the grid
    assert positives([corner], [0], Assignment(neighbours=True))["16"] == [(0, 0, 0)]


def test_a_box_in_its_own_cell_beats_an_earlier_box_that_reaches_it_as_a_neighbour():
    size = 12 / 64
    early = [(2 + 0.7) / 8, (2 + 0.1) / 8, size, size]  # stride 8 cell (2, 2); its neighbours: down (3, 2), left (2, 1)
    late = [(2 + 0.6) / 8, (1 + 0.6) / 8, size, size]  # stride 8 cell (2, 1), its own centre
    targets = assign_targets(tf.constant([early, late]), tf.constant([0, 1]), SQUARE_ANCHORS, SQUARE, NUM_CLASSES,
                             Assignment(anchor_ratio=2.0, neighbours=True))
    np.testing.assert_allclose(targets["8"][2, 1, 0].numpy(), late + [1.0, 0.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(targets["8"][2, 2, 0].numpy(), early + [1.0, 1.0, 0.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("value", [0.5, 1.0, -2.0])
def test_anchor_ratio_is_zero_or_above_one(value):
    with pytest.raises(ValueError, match="anchor_ratio"):
        Assignment(anchor_ratio=value)
