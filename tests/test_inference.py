"""From decoded outputs to detections: boxes and scores by hand, degenerate boxes dropped
before NMS, and boxes mapped back to the source image's pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from detplug.core.model.inference import MIN_BOX_PIXELS, flatten_predictions, non_max_suppression, to_source_pixels
from detplug.core.plan.specs import ImageSpec
from detplug.plugins.decoders.yolo import YoloDecoder

IMAGE = ImageSpec(192, 640)


def decoded(yxhw: list[list[float]], objectness: list[float], category: list[list[float]]) -> dict:
    """One stride's decoded dict: N cells on a 1 x N grid, one anchor each, batch 1."""
    count = len(yxhw)
    return {
        "yxhw": tf.reshape(tf.constant(yxhw, tf.float32), (1, 1, count, 1, 4)),
        "objectness": tf.reshape(tf.constant(objectness, tf.float32), (1, 1, count, 1, 1)),
        "category": tf.reshape(tf.constant(category, tf.float32), (1, 1, count, 1, len(category[0]))),
    }


def test_boxes_are_corners_and_scores_are_objectness_times_class_probability():
    boxes, scores = flatten_predictions({"8": decoded([[0.5, 0.25, 0.2, 0.1]], [0.8], [[0.5, 0.25]])}, IMAGE)
    np.testing.assert_allclose(boxes.numpy()[0, 0], [0.4, 0.2, 0.6, 0.3], rtol=1e-6)
    np.testing.assert_allclose(scores.numpy()[0, 0], [0.4, 0.2], rtol=1e-6)


def test_the_wall_of_image_wide_lines_is_dropped_before_nms():
    # What an undertrained model gave at epoch 20 of the old flagship run, on the stride-8 cells
    # over a large car: size logits t_h = -6.44, t_w = 7.13 on the 10x13 px anchor, objectness
    # 0.41. Decoded: 0.02 px tall, 12,500 px wide; clipped to the image, a line across it.
    decoder = YoloDecoder({8: ((13 / 192, 10 / 640),)})
    raw = np.zeros((1, 24, 80, 1, 8), np.float32)
    raw[0, 12, 60, 0, :5] = [-3.89, -0.22, -6.44, 7.13, math.log(0.41 / 0.59)]
    raw[0, 12, 60, 0, 5] = 5.0  # "Car"
    raw[..., 4] = np.where(raw[..., 4] == 0, -10.0, raw[..., 4])
    outputs = decoder({"8": tf.constant(raw)})
    height_px = float(outputs["8"]["yxhw"][0, 12, 60, 0, 2]) * 192
    width_px = float(outputs["8"]["yxhw"][0, 12, 60, 0, 3]) * 640
    assert height_px < 0.05 and width_px > 10 * 640
    boxes, scores = flatten_predictions(outputs, IMAGE)
    wall = 12 * 80 + 60
    assert np.all(scores.numpy()[0, wall] == 0.0)
    assert float(tf.reduce_max(scores)) < 0.01  # every other cell: objectness sigmoid(-10)
    found = non_max_suppression(boxes, scores, max_detections=10, iou_threshold=0.45, score_threshold=0.01)
    assert int(found["num_detections"][0]) == 0


@pytest.mark.parametrize(("height_px", "kept"), [(MIN_BOX_PIXELS - 0.5, False), (MIN_BOX_PIXELS + 0.5, True)])
def test_a_box_is_kept_from_min_box_pixels_of_height_and_width(height_px, kept):
    box = [0.5, 0.5, height_px / IMAGE.height, 40 / IMAGE.width]
    _, scores = flatten_predictions({"8": decoded([box], [0.9], [[1.0]])}, IMAGE)
    assert (float(scores[0, 0, 0]) > 0) == kept


def test_a_box_partly_outside_the_image_is_clipped_and_kept():
    boxes, scores = flatten_predictions({"16": decoded([[0.05, 0.5, 0.2, 0.1]], [0.9], [[1.0]])}, IMAGE)
    np.testing.assert_allclose(boxes.numpy()[0, 0], [0.0, 0.45, 0.15, 0.55], rtol=1e-6, atol=1e-7)
    assert float(scores[0, 0, 0]) == pytest.approx(0.9)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    boxes = tf.constant([[[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]]])
    scores = tf.constant([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]])
    found = non_max_suppression(boxes, scores, max_detections=5, iou_threshold=0.45, score_threshold=0.1)
    count = int(found["num_detections"][0])
    assert count == 2
    np.testing.assert_allclose(found["scores"][0, :count].numpy(), [0.9, 0.7], rtol=1e-6)
    assert found["classes"][0, :count].numpy().tolist() == [0, 1]


def test_boxes_return_to_source_pixels_through_the_letterbox():
    # A 375x1242 KITTI image into 192x640: scale min(192/375, 640/1242) = 0.512 -> 192x636,
    # 2 px of padding left and right. The box spans the content's middle half.
    source = tf.constant([375, 1242])
    box = tf.constant([[0.25, (2 + 159) / 640, 0.75, (2 + 477) / 640]])
    pixels = to_source_pixels(box, source, IMAGE).numpy()[0]
    scale = 636 / 1242
    np.testing.assert_allclose(pixels, [159 / scale, 48 / (192 / 375), 477 / scale, 144 / (192 / 375)], rtol=1e-4)
