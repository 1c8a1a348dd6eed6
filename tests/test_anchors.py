import pytest

from detplug.core.anchors import AnchorError, anchor_pixels, anchors_to_ratios
from detplug.core.specs import ImageSpec


def test_coco_yolov3_pool_is_yolov3s_nine_anchors_three_per_stride():
    pool = anchor_pixels("coco_yolov3")
    assert sorted(pool) == [8, 16, 32]
    assert pool[8] == ((10, 13), (16, 30), (33, 23))
    assert pool[32][-1] == (373, 326)


def test_pixel_anchors_become_height_width_ratios_of_the_input():
    ratios = anchors_to_ratios({32: ((116, 90),), 8: ((10, 13),)}, ImageSpec(192, 640))
    # (h / image height, w / image width): 90 / 192 = 0.46875, 116 / 640 = 0.18125
    assert ratios[32] == ((0.46875, 0.18125),)
    assert ratios[8] == ((13 / 192, 10 / 640),)
    assert list(ratios) == [8, 32]


def test_explicit_anchor_table_with_string_strides_is_accepted():
    assert anchor_pixels({"16": [[30, 61]]}) == {16: ((30.0, 61.0),)}


def test_unknown_pool_names_the_known_ones():
    with pytest.raises(AnchorError, match="coco_yolov3"):
        anchor_pixels("coco_v9")


def test_non_positive_anchor_is_rejected():
    with pytest.raises(AnchorError, match="stride 8"):
        anchor_pixels({8: [[0, 13]]})
