"""The built-in losses and their combination: hand-computed values on tiny grids, the
normalisation (box and class per positive of the batch, objectness per cell and weighted
per stride), the ignore rule, weighting and per-stride parts, and gradients that flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from detplug.core.model.losses import LossCombination, LossError, build_loss_combination, share_per_positive
from detplug.core.plan.specs import Chain, DecodedSpec, ImageSpec, NoParams, SpecError
from detplug.plugins.losses import ObjectnessParams, stride_balance
from detplug.plugins.losses.box import CiouLoss, ciou_loss_from_params
from detplug.plugins.losses.scores import (
    CategoryLoss,
    ObjectnessLoss,
    category_loss_from_params,
    objectness_loss_from_params,
)

NO_BOXES = np.zeros((1, 4))


def softplus(x: float) -> float:
    """BCE of logit x against label 0; against label 1 it is softplus(-x)."""
    return math.log(1 + math.exp(x))


def grid(cells: list[list[float]]) -> np.ndarray:
    """(B, 1, 1, A, n) from a batch of per-anchor rows [[row anchor 0, row anchor 1...], ...]."""
    return np.asarray(cells, dtype=np.float32)[:, None, None, :, :]


def target_row(yxhw=(0.0, 0.0, 0.0, 0.0), objectness=0.0, one_hot=(0.0, 0.0)) -> list[float]:
    return [*yxhw, objectness, *one_hot]


def decoded(yxhw: np.ndarray, raw: np.ndarray) -> dict[str, tf.Tensor]:
    raw = tf.constant(raw, tf.float32)
    return {
        "yxhw": tf.constant(yxhw, tf.float32),
        "objectness": tf.sigmoid(raw[..., 4:5]),
        "category": tf.sigmoid(raw[..., 5:]),
        "raw": raw,
    }


def as_boxes(rows_per_image: list[list[list[float]]]) -> tf.Tensor:
    return tf.constant(rows_per_image, tf.float32)


# -- ciou --------------------------------------------------------------------


def test_ciou_loss_is_zero_for_a_perfect_prediction_and_ignores_negative_cells():
    box = [0.4, 0.6, 0.2, 0.3]
    # anchor 0 holds the object and predicts it exactly; anchor 1 predicts junk where nothing is.
    yxhw = grid([[box, [0.9, 0.1, 0.5, 0.05]]])
    target = grid([[target_row(box, 1.0), target_row()]])
    loss = CiouLoss()(decoded(yxhw, np.zeros((1, 1, 1, 2, 7))), tf.constant(target), as_boxes([[box]]))
    assert loss.shape == (1,)
    assert float(loss[0]) == pytest.approx(0.0, abs=1e-5)


def test_ciou_loss_is_the_mean_of_one_minus_ciou_over_the_batch_positives():
    pred_box, true_box = [0.5, 0.5, 0.2, 0.4], [0.6, 0.6, 0.2, 0.2]  # CIoU 0.117909 (see test_boxes)
    yxhw = grid([[pred_box, pred_box], [pred_box, true_box]])
    target = grid(
        [
            [target_row(true_box, 1.0), target_row(true_box, 1.0)],  # image 0: two imperfect positives
            [target_row(true_box, 0.0), target_row(true_box, 1.0)],  # image 1: one negative, one perfect
        ]
    )
    boxes = as_boxes([[true_box], [true_box]])
    loss = CiouLoss()(decoded(yxhw, np.zeros((2, 1, 1, 2, 7))), tf.constant(target), boxes)
    # Three positives in the batch: (2 * (1 - 0.117909) + 0) / 3, shared out per image as
    # sum * batch / positives, so that the batch mean is that figure.
    np.testing.assert_allclose(loss.numpy(), [2 * (1 - 0.117909) * 2 / 3, 0.0], atol=1e-5)
    assert float(np.mean(loss.numpy())) == pytest.approx(2 * (1 - 0.117909) / 3, abs=1e-5)


def test_box_loss_does_not_grow_with_the_number_of_objects():
    pred_box, true_box = [0.5, 0.5, 0.2, 0.4], [0.6, 0.6, 0.2, 0.2]
    losses = []
    for objects in (1, 4):
        rows = [target_row(true_box, 1.0)] * objects + [target_row()] * (4 - objects)
        loss = CiouLoss()(decoded(grid([[pred_box] * 4]), np.zeros((1, 1, 1, 4, 7))), tf.constant(grid([rows])),
                          as_boxes([[true_box]]))
        losses.append(float(np.mean(loss.numpy())))
    assert losses[0] == pytest.approx(1 - 0.117909, abs=1e-5) and losses[1] == pytest.approx(losses[0], abs=1e-6)


def test_share_per_positive_divides_the_batch_sum_by_the_positives():
    shares = share_per_positive(tf.constant([3.0, 1.0]), tf.constant([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(shares.numpy(), [1.5, 0.5])  # mean 1.0 = (3 + 1) / 4 positives
    none = share_per_positive(tf.constant([0.0, 0.0]), tf.zeros((2, 3)))
    np.testing.assert_allclose(none.numpy(), [0.0, 0.0])


def test_ciou_loss_from_params_works_in_pixels_when_the_chain_knows_the_image():
    from detplug.core.model.boxes import ciou

    pred_box, true_box = [0.5, 0.5, 0.2, 0.4], [0.6, 0.6, 0.2, 0.2]
    yxhw, target = grid([[pred_box]]), grid([[target_row(true_box, 1.0)]])
    pred = decoded(yxhw, np.zeros((1, 1, 1, 1, 7)))
    in_ratios = ciou_loss_from_params(NoParams(), Chain())(pred, tf.constant(target), as_boxes([[true_box]]))
    in_pixels = ciou_loss_from_params(NoParams(), Chain(image=ImageSpec(192, 640)))(
        pred, tf.constant(target), as_boxes([[true_box]])
    )
    scale = np.array([192, 640, 192, 640], np.float32)
    expected = 1 - float(ciou(tf.constant(pred_box) * scale, tf.constant(true_box) * scale))
    assert float(in_ratios[0]) == pytest.approx(1 - 0.117909, abs=1e-5)
    assert float(in_pixels[0]) == pytest.approx(expected, abs=1e-5)
    assert float(in_pixels[0]) != pytest.approx(float(in_ratios[0]), abs=1e-3)


# -- objectness --------------------------------------------------------------


def test_objectness_loss_is_bce_on_the_logit_for_positives_and_negatives():
    # image 0: a positive with logit 0.5; image 1: a negative with logit -1, no box anywhere near.
    raw = grid([[[0, 0, 0, 0, 0.5, 0, 0]], [[0, 0, 0, 0, -1.0, 0, 0]]])
    yxhw = grid([[[0.5, 0.5, 0.2, 0.2]], [[0.5, 0.5, 0.2, 0.2]]])
    target = grid([[target_row((0.5, 0.5, 0.2, 0.2), 1.0)], [target_row()]])
    boxes = as_boxes([[[0.5, 0.5, 0.2, 0.2]], [[0.1, 0.1, 0.05, 0.05]]])
    loss = ObjectnessLoss(ignore_threshold=0.5)(decoded(yxhw, raw), tf.constant(target), boxes)
    # label 1: -log(sigmoid(0.5)) = log(1 + e^-0.5); label 0: -log(1 - sigmoid(-1)) = log(1 + e^-1)
    np.testing.assert_allclose(loss.numpy(), [softplus(-0.5), softplus(-1.0)], rtol=1e-5)


def test_objectness_loss_is_the_mean_over_cells_and_anchors():
    raw = np.zeros((1, 2, 2, 3, 7), np.float32)
    raw[..., 4] = 2.0
    target = np.zeros((1, 2, 2, 3, 7), np.float32)
    target[0, 1, 0, 2, :5] = [0.5, 0.5, 0.2, 0.2, 1.0]
    yxhw = np.full((1, 2, 2, 3, 4), [0.5, 0.5, 0.01, 0.01], np.float32)  # tiny: overlaps no box enough
    loss = ObjectnessLoss()(decoded(yxhw, raw), tf.constant(target), as_boxes([[[0.5, 0.5, 0.2, 0.2]]]))
    assert float(loss[0]) == pytest.approx((softplus(-2.0) + 11 * softplus(2.0)) / 12, rel=1e-5)


def test_objectness_loss_per_cell_does_not_grow_with_the_grid():
    losses = []
    for size in (2, 8):
        raw = np.full((1, size, size, 1, 7), -1.5, np.float32)
        yxhw = np.full((1, size, size, 1, 4), [0.5, 0.5, 0.01, 0.01], np.float32)
        target = np.zeros((1, size, size, 1, 7), np.float32)
        losses.append(float(ObjectnessLoss()(decoded(yxhw, raw), tf.constant(target), as_boxes([[[0, 0, 0, 0]]]))[0]))
    assert losses[0] == pytest.approx(softplus(-1.5), rel=1e-5) and losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_objectness_weighs_each_stride_by_its_balance_weight():
    # A 16-pixel-high image: a 2-row grid is stride 8, a 1-row grid stride 16, a 4-row one stride 4.
    loss = ObjectnessLoss(stride_weights={8: 4.0, 16: 0.5}, image_height=16)
    values = {}
    for rows in (1, 2, 4):
        raw = np.full((1, rows, rows, 1, 7), 1.0, np.float32)
        yxhw = np.full((1, rows, rows, 1, 4), [0.5, 0.5, 0.01, 0.01], np.float32)
        values[16 // rows] = float(loss(decoded(yxhw, raw), tf.constant(np.zeros((1, rows, rows, 1, 7), np.float32)),
                                        as_boxes([[[0, 0, 0, 0]]]))[0])
    assert values[8] == pytest.approx(4.0 * softplus(1.0), rel=1e-5)
    assert values[16] == pytest.approx(0.5 * softplus(1.0), rel=1e-5)
    assert values[4] == pytest.approx(softplus(1.0), rel=1e-5)  # a stride not listed weighs 1


def test_stride_balance_defaults_to_yolov5s_for_three_strides_and_must_fit_the_strides():
    assert stride_balance((), (32, 8, 16)) == {8: 4.0, 16: 1.0, 32: 0.4}
    assert stride_balance((), (8, 16)) == {8: 1.0, 16: 1.0}
    assert stride_balance((2.0, 1.0), (16, 8)) == {8: 2.0, 16: 1.0}
    with pytest.raises(SpecError, match="stride_balance"):
        stride_balance((1.0, 2.0), (8, 16, 32))
    chain = Chain(image=ImageSpec(64, 64), decoded={s: DecodedSpec(s, 3, 2) for s in (8, 16, 32)})
    objectness = objectness_loss_from_params(ObjectnessParams(stride_balance=[3, 2, 1]), chain)
    assert objectness.stride_weights == {8: 3.0, 16: 2.0, 32: 1.0} and objectness.image_height == 64


def test_objectness_iou_target_is_the_iou_of_the_predicted_box():
    # The positive's box has IoU 1/3 with its object (shifted by half its width).
    raw = grid([[[0, 0, 0, 0, 0.5, 0, 0]]])
    yxhw = grid([[[0.5, 0.5, 0.2, 0.2]]])
    target = grid([[target_row((0.5, 0.6, 0.2, 0.2), 1.0)]])
    boxes = as_boxes([[[0.5, 0.6, 0.2, 0.2]]])
    loss = ObjectnessLoss(iou_target=True)(decoded(yxhw, raw), tf.constant(target), boxes)
    # BCE(label y, logit x) = softplus(x) - x * y
    assert float(loss[0]) == pytest.approx(softplus(0.5) - 0.5 / 3, rel=1e-5)
    plain = ObjectnessLoss()(decoded(yxhw, raw), tf.constant(target), boxes)
    assert float(plain[0]) == pytest.approx(softplus(-0.5), rel=1e-5)


@pytest.mark.parametrize(
    "ignore_threshold, counted",
    [(0.3, False), (0.5, True)],
    ids=["overlap-above-threshold-ignored", "overlap-below-threshold-counted"],
)
def test_objectness_ignore_rule_drops_negatives_overlapping_a_ground_truth(ignore_threshold, counted):
    # The negative cell's box has IoU 1/3 with the image's ground truth (half shifted in x).
    raw = grid([[[0, 0, 0, 0, 1.5, 0, 0], [0, 0, 0, 0, 0.0, 0, 0]]])
    yxhw = grid([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.6, 0.2, 0.2]]])
    target = grid([[target_row(), target_row((0.5, 0.6, 0.2, 0.2), 1.0)]])
    boxes = as_boxes([[[0.5, 0.6, 0.2, 0.2], [0, 0, 0, 0]]])  # a zero-padded row too
    loss = ObjectnessLoss(ignore_threshold=ignore_threshold)(decoded(yxhw, raw), tf.constant(target), boxes)
    positive_term = softplus(-0.0)
    expected = (positive_term + (softplus(1.5) if counted else 0.0)) / 2  # the mean over 2 anchors
    assert float(loss[0]) == pytest.approx(expected, rel=1e-5)


def test_objectness_ignore_region_suppresses_the_no_object_term_without_a_target():
    # A DontCare region: in `boxes`, with no target anywhere.
    raw = grid([[[0, 0, 0, 0, 3.0, 0, 0]]])
    yxhw = grid([[[0.3, 0.3, 0.2, 0.2]]])
    target = grid([[target_row()]])
    with_region = as_boxes([[[0, 0, 0, 0], [0.3, 0.31, 0.2, 0.2]]])
    without_region = as_boxes([[[0, 0, 0, 0], [0, 0, 0, 0]]])
    loss = ObjectnessLoss(ignore_threshold=0.5)
    assert float(loss(decoded(yxhw, raw), tf.constant(target), with_region)[0]) == 0.0
    assert float(loss(decoded(yxhw, raw), tf.constant(target), without_region)[0]) == pytest.approx(
        softplus(3.0), rel=1e-5
    )


def test_objectness_loss_from_params_takes_the_threshold():
    assert objectness_loss_from_params(ObjectnessParams(ignore_threshold=0.7), None).ignore_threshold == 0.7
    with pytest.raises(ValueError, match="ignore_threshold"):
        ObjectnessLoss(ignore_threshold=1.5)


# -- category ----------------------------------------------------------------


def test_category_loss_is_bce_averaged_over_classes_and_positive_cells():
    raw = grid([[[0, 0, 0, 0, 0, 1.0, -2.0, 0.5], [0, 0, 0, 0, 0, 4.0, 4.0, 4.0]]])
    target = grid([[target_row((0.5, 0.5, 0.1, 0.1), 1.0, (0, 1, 0)), target_row(one_hot=(0, 0, 0))]])
    loss = category_loss_from_params(NoParams(), None)(
        decoded(np.zeros((1, 1, 1, 2, 4)), raw), tf.constant(target), as_boxes([[[0.5, 0.5, 0.1, 0.1]]])
    )
    # class 0: label 0, logit 1; class 1: label 1, logit -2; class 2: label 0, logit 0.5
    expected = (softplus(1.0) + softplus(2.0) + softplus(0.5)) / 3
    assert isinstance(category_loss_from_params(NoParams(), None), CategoryLoss)
    assert float(loss[0]) == pytest.approx(expected, rel=1e-5)


def test_category_loss_shares_its_mean_over_the_batch_positives():
    # Image 0: two positives of BCE a each (logits 0 against one-hot: 3 log 2 / 3 per class).
    # Image 1: none. The mean over the batch's 2 positives is log 2; image 0 carries it all.
    raw = np.zeros((2, 1, 1, 2, 8), np.float32)
    target = grid([[target_row(one_hot=(1, 0, 0), objectness=1.0), target_row(one_hot=(0, 0, 1), objectness=1.0)],
                   [target_row(one_hot=(0, 0, 0)), target_row(one_hot=(0, 0, 0))]])
    loss = CategoryLoss()(decoded(np.zeros((2, 1, 1, 2, 4)), raw), tf.constant(target), tf.zeros((2, 1, 4)))
    np.testing.assert_allclose(loss.numpy(), [2 * math.log(2), 0.0], rtol=1e-5)
    assert float(np.mean(loss.numpy())) == pytest.approx(math.log(2), rel=1e-5)


# -- combination -------------------------------------------------------------


def two_stride_batch(batch: int = 2, seed: int = 0):
    """Decoded outputs and targets at strides 8 (2x2 grid) and 16 (1x1), 2 anchors, 2 classes."""
    rng = np.random.default_rng(seed)
    outputs, targets = {}, {}
    for stride, size in (("8", 2), ("16", 1)):
        raw = rng.normal(size=(batch, size, size, 2, 7)).astype(np.float32)
        centres = rng.uniform(0.2, 0.8, (batch, size, size, 2, 2))
        sizes = rng.uniform(0.05, 0.4, (batch, size, size, 2, 2))
        yxhw = np.concatenate([centres, sizes], -1)
        outputs[stride] = decoded(yxhw, raw)
        target = np.zeros((batch, size, size, 2, 7), np.float32)
        target[:, 0, 0, 0] = [0.5, 0.5, 0.3, 0.2, 1.0, 0.0, 1.0]
        targets[stride] = tf.constant(target)
    targets["boxes"] = as_boxes([[[0.5, 0.5, 0.3, 0.2], [0, 0, 0, 0]]] * batch)
    return outputs, targets


def test_loss_combination_weighs_losses_and_its_parts_add_up():
    outputs, targets = two_stride_batch()
    weights = {"ciou": 2.0, "objectness": 1.0, "category": 0.5}
    combination = LossCombination(
        losses={"ciou": (2.0, CiouLoss()), "objectness": (1.0, ObjectnessLoss()), "category": (0.5, CategoryLoss())}
    )
    total, parts = combination(outputs, targets)
    assert set(parts) == {"total"} | {f"{n}{s}" for n in weights for s in ("", "/8", "/16")}
    for name in weights:
        loss_fn = combination.losses[name][1]
        for stride in ("8", "16"):
            expected = np.mean(loss_fn(outputs[stride], targets[stride], targets["boxes"]).numpy())
            assert float(parts[f"{name}/{stride}"]) == pytest.approx(expected, rel=1e-5)
        assert float(parts[name]) == pytest.approx(float(parts[f"{name}/8"]) + float(parts[f"{name}/16"]), rel=1e-5)
    assert float(total) == float(parts["total"])
    assert float(total) == pytest.approx(sum(w * float(parts[n]) for n, w in weights.items()), rel=1e-5)


def test_loss_combination_total_is_the_batch_mean_of_weighted_per_image_shares():
    outputs = {"8": {}, "16": {}}
    targets = {"8": tf.constant([1.0, 3.0]), "16": tf.constant([10.0, 20.0]), "boxes": tf.zeros((2, 1, 4))}
    # A per-image loss that just hands back the target, so the arithmetic is visible.
    combination = LossCombination(losses={"a": (2.0, lambda pred, target, boxes: target)})
    total, parts = combination(outputs, targets)
    assert float(parts["a/8"]) == 2.0 and float(parts["a/16"]) == 15.0 and float(parts["a"]) == 17.0
    assert float(total) == pytest.approx(2.0 * ((1 + 10) + (3 + 20)) / 2)


def test_a_replica_divides_its_sums_by_the_global_batch():
    # One replica's share (2 images) of a global batch of 5: its parts add up with the
    # other replicas' to the mean over all 5 images.
    outputs = {"8": {}}
    targets = {"8": tf.constant([1.0, 3.0]), "boxes": tf.zeros((2, 1, 4))}
    combination = LossCombination(losses={"a": (2.0, lambda pred, target, boxes: target)})
    total, parts = combination(outputs, targets, global_batch=tf.constant(5.0))
    assert float(parts["a/8"]) == pytest.approx(4 / 5) and float(parts["a"]) == pytest.approx(4 / 5)
    assert float(total) == pytest.approx(2.0 * 4 / 5)
    empty = {"8": tf.zeros((0,)), "boxes": tf.zeros((0, 1, 4))}  # a replica left without images
    assert float(combination(outputs, empty, global_batch=tf.constant(5.0))[0]) == 0.0


def test_loss_combination_traces_once_for_any_batch_size():
    combination = LossCombination(losses={"ciou": (1.0, CiouLoss()), "objectness": (1.0, ObjectnessLoss())})

    @tf.function(reduce_retracing=True)
    def step(outputs, targets):
        return combination(outputs, targets)

    for batch in (3, 1):
        outputs, targets = two_stride_batch(batch)
        eager_total, _ = combination(outputs, targets)
        spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), (outputs, targets))
        graph_total, graph_parts = step.get_concrete_function(*spec)(outputs, targets)
        assert float(graph_total) == pytest.approx(float(eager_total), rel=1e-5)
        assert set(graph_parts) >= {"total", "ciou/8", "objectness/16"}
    assert step.experimental_get_tracing_count() == 1


def test_gradients_flow_through_the_combination_and_stay_finite():
    rng = np.random.default_rng(1)
    _, targets = two_stride_batch()
    raw_variables = {
        stride: tf.Variable(rng.normal(size=(2, size, size, 2, 7)).astype(np.float32))
        for stride, size in (("8", 2), ("16", 1))
    }
    combination = build_loss_combination(
        weights={"ciou": 1.0, "objectness": 1.0, "category": 1.0},
        components={
            "ciou": (ciou_loss_from_params, NoParams()),
            "objectness": (objectness_loss_from_params, ObjectnessParams()),
            "category": (category_loss_from_params, NoParams()),
        },
        chain=Chain(image=ImageSpec(64, 128)),
    )

    @tf.function
    def loss_and_gradients():
        with tf.GradientTape() as tape:
            outputs = {}
            for stride, raw in raw_variables.items():
                # A minimal YOLO-like decode, so the box loss reaches the raw outputs.
                yxhw = tf.concat([tf.sigmoid(raw[..., :2]), 0.2 * tf.exp(raw[..., 2:4])], -1)
                outputs[stride] = {
                    "yxhw": yxhw,
                    "objectness": tf.sigmoid(raw[..., 4:5]),
                    "category": tf.sigmoid(raw[..., 5:]),
                    "raw": raw,
                }
            total, _ = combination(outputs, targets)
        return total, tape.gradient(total, list(raw_variables.values()))

    total, gradients = loss_and_gradients()
    assert np.isfinite(float(total))
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))
    # The positive anchor gets box, objectness and class gradient; every cell gets objectness gradient.
    positive = gradients[0].numpy()[:, 0, 0, 0]
    assert np.all(np.abs(positive) > 0)
    assert np.all(np.abs(gradients[0].numpy()[..., 4]) > 0)


def test_loss_combination_rejects_mismatched_strides_and_bad_weights():
    outputs, targets = two_stride_batch()
    combination = LossCombination(losses={"ciou": (1.0, CiouLoss())})
    with pytest.raises(LossError, match="strides"):
        combination({"8": outputs["8"]}, targets)
    with pytest.raises(LossError, match="'boxes'"):
        combination(outputs, {"8": targets["8"], "16": targets["16"]})
    with pytest.raises(LossError, match="weight"):
        LossCombination(losses={"ciou": (-1.0, CiouLoss())})
    with pytest.raises(LossError, match="at least one"):
        LossCombination(losses={})
    with pytest.raises(LossError, match="available losses: ciou"):
        build_loss_combination(weights={"cio": 1.0}, components={"ciou": (ciou_loss_from_params, NoParams())})
