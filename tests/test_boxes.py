"""IoU, GIoU and CIoU of yxhw boxes: hand-computed values, broadcasting, and
finite values and gradients for the zero-size boxes that padding produces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from detplug.core.model.boxes import ciou, giou, iou, yxhw_to_yxyx, yxyx_to_yxhw


def value(tensor) -> np.ndarray:
    return np.asarray(tensor, dtype=np.float64)


def test_yxhw_to_yxyx_gives_corners_and_back():
    corners = yxhw_to_yxyx(tf.constant([0.5, 0.5, 0.2, 0.4]))
    np.testing.assert_allclose(value(corners), [0.4, 0.3, 0.6, 0.7], atol=1e-6)
    np.testing.assert_allclose(value(yxyx_to_yxhw(corners)), [0.5, 0.5, 0.2, 0.4], atol=1e-6)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        # identical boxes
        ([0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2], 1.0),
        # disjoint: x in [0.15, 0.25] and [0.75, 0.85]
        ([0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1], 0.0),
        # half shifted in x: inter 0.2 * 0.1 = 0.02, union 0.04 + 0.04 - 0.02 = 0.06
        ([0.5, 0.5, 0.2, 0.2], [0.5, 0.6, 0.2, 0.2], 1 / 3),
        # contained: inter 0.04 (the small box), union 0.16 (the big box)
        ([0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.2, 0.2], 0.25),
        # touching edges: no area in common
        ([0.5, 0.4, 0.2, 0.2], [0.5, 0.6, 0.2, 0.2], 0.0),
    ],
)
def test_iou_matches_hand_computed_cases(a, b, expected):
    assert float(iou(tf.constant(a), tf.constant(b))) == pytest.approx(expected, abs=1e-5)


def test_iou_is_symmetric():
    a, b = tf.constant([0.4, 0.5, 0.3, 0.1]), tf.constant([0.45, 0.52, 0.2, 0.3])
    assert float(iou(a, b)) == pytest.approx(float(iou(b, a)), abs=1e-7)


def test_iou_broadcasts_over_leading_dimensions():
    predictions = tf.constant([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])  # (2, 4)
    truths = tf.constant([[0.5, 0.5, 0.2, 0.2], [0.5, 0.6, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0]])  # (3, 4)
    pairs = iou(predictions[:, None, :], truths[None, :, :])
    assert pairs.shape == (2, 3)
    np.testing.assert_allclose(value(pairs), [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]], atol=1e-5)


def test_giou_of_disjoint_boxes_is_minus_the_empty_share_of_the_enclosing_box():
    # enclosing box [0.15, 0.85]^2: area 0.49; union 0.01 + 0.01 = 0.02; IoU 0
    expected = 0.0 - (0.49 - 0.02) / 0.49
    got = giou(tf.constant([0.2, 0.2, 0.1, 0.1]), tf.constant([0.8, 0.8, 0.1, 0.1]))
    assert float(got) == pytest.approx(expected, abs=1e-5)


def test_giou_equals_iou_when_one_box_contains_the_other():
    a, b = tf.constant([0.5, 0.5, 0.4, 0.4]), tf.constant([0.5, 0.5, 0.2, 0.2])
    assert float(giou(a, b)) == pytest.approx(0.25, abs=1e-5)


def test_ciou_matches_hand_computed_value_with_centre_offset_and_other_aspect():
    pred = [0.5, 0.5, 0.2, 0.4]  # y [0.4, 0.6], x [0.3, 0.7]
    truth = [0.6, 0.6, 0.2, 0.2]  # y [0.5, 0.7], x [0.5, 0.7]
    intersection = 0.1 * 0.2  # y [0.5, 0.6], x [0.5, 0.7]
    union = 0.08 + 0.04 - intersection
    iou_value = intersection / union  # 0.2
    centre_distance_sq = 0.1**2 + 0.1**2  # 0.02
    enclosing_diagonal_sq = 0.3**2 + 0.4**2  # y [0.4, 0.7], x [0.3, 0.7]: 0.25
    v = 4 / math.pi**2 * (math.atan(0.2 / 0.2) - math.atan(0.4 / 0.2)) ** 2  # 0.041956
    alpha = v / (1 - iou_value + v)  # 0.049832
    expected = iou_value - centre_distance_sq / enclosing_diagonal_sq - alpha * v  # 0.117909
    assert expected == pytest.approx(0.117909, abs=1e-6)
    assert float(ciou(tf.constant(pred), tf.constant(truth))) == pytest.approx(expected, abs=1e-5)


def test_ciou_equals_iou_for_same_centre_and_same_aspect():
    pred, truth = tf.constant([0.5, 0.5, 0.4, 0.2]), tf.constant([0.5, 0.5, 0.2, 0.1])
    assert float(ciou(pred, truth)) == pytest.approx(float(iou(pred, truth)), abs=1e-6)
    assert float(ciou(pred, truth)) == pytest.approx(0.25, abs=1e-5)


def test_ciou_of_identical_boxes_is_one():
    box = tf.constant([0.3, 0.7, 0.1, 0.25])
    assert float(ciou(box, box)) == pytest.approx(1.0, abs=1e-5)


def test_ciou_treats_alpha_as_a_constant_for_the_gradient():
    # Same centre, so the distance term and its gradient are 0: CIoU = IoU - alpha * v.
    truth = tf.constant([0.5, 0.5, 0.2, 0.2])
    pred = tf.Variable([0.5, 0.5, 0.2, 0.4])
    with tf.GradientTape() as tape:
        got = ciou(pred, truth)
    gradient = value(tape.gradient(got, pred))

    v_value = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    alpha_value = v_value / (1 - 0.5 + v_value)  # IoU = 0.04 / 0.08
    with tf.GradientTape(persistent=True) as tape:
        iou_value = iou(pred, truth)
        v = 4 / math.pi**2 * tf.square(tf.atan(truth[3] / truth[2]) - tf.atan(pred[3] / pred[2]))
        frozen_alpha = iou_value - alpha_value * v
        live_alpha = iou_value - v / (1 - iou_value + v) * v
    np.testing.assert_allclose(gradient, value(tape.gradient(frozen_alpha, pred)), atol=1e-5)
    # The check can tell the two apart.
    assert not np.allclose(gradient, value(tape.gradient(live_alpha, pred)), atol=1e-5)


@pytest.mark.parametrize("measure", [iou, giou, ciou], ids=["iou", "giou", "ciou"])
def test_zero_size_boxes_give_finite_values_and_gradients(measure):
    pred = tf.Variable([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.2, 0.3], [0.0, 0.0, 0.0, 0.0]])
    truth = tf.Variable([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.4, 0.4, 0.1, 0.1]])
    with tf.GradientTape() as tape:
        result = measure(pred, truth)
        total = tf.reduce_sum(result)
    pred_gradient, truth_gradient = tape.gradient(total, [pred, truth])
    assert np.all(np.isfinite(value(result)))
    assert np.all(np.isfinite(value(pred_gradient)))
    assert np.all(np.isfinite(value(truth_gradient)))
    # An empty box overlaps nothing.
    np.testing.assert_allclose(value(iou(pred, truth)), [0.0, 0.0, 0.0, 0.0], atol=1e-6)
