"""Training augmentation: replays exactly per (seed, epoch), and boxes follow the pixels."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from detplug.core.data import augment_ops
from detplug.core.data.pipeline import make_dataset
from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios
from detplug.core.plan.augmentation import Augmentation
from detplug.core.plan.specs import ImageSpec, LabelSpec
from detplug.plugins.datasets import KittiParams
from detplug.plugins.datasets.kitti import convert_kitti

IMAGE = ImageSpec(64, 128)
ANCHORS = anchors_to_ratios(anchor_pixels("coco_yolov3"), IMAGE)
LABELS = LabelSpec(("Car", "Pedestrian", "Cyclist"), 8)
EVERYTHING = Augmentation(flip=0.5, scale=0.3, translate=0.2, hue=0.1, saturation=0.5, value=0.2, mosaic=0.5)


def rectangles(rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Two white rectangles, apart from each other and from the border, in a 64x128 image."""
    left = (int(rng.integers(8, 30)), int(rng.integers(8, 20)))
    right = (int(rng.integers(70, 95)), int(rng.integers(8, 30)))
    return [(x, y, x + int(rng.integers(14, 28)), y + int(rng.integers(14, 30))) for x, y in (left, right)]


@pytest.fixture(scope="module")
def rectangle_records(tmp_path_factory):
    """8 black 64x128 images, each with two white rectangles labelled as cars (KITTI format)."""
    root = tmp_path_factory.mktemp("rectangles")
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "label_2").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(8):
        image = Image.new("RGB", (128, 64))
        draw = ImageDraw.Draw(image)
        lines = []
        for x1, y1, x2, y2 in rectangles(rng):
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=(255, 255, 255))  # covers pixels x1..x2-1
            lines.append(f"Car 0 0 0 {x1} {y1} {x2} {y2} 1 1 1 1 1 1 0")
        image.save(root / "training" / "image_2" / f"{index:06d}.png")
        (root / "training" / "label_2" / f"{index:06d}.txt").write_text("\n".join(lines) + "\n")
    params = KittiParams(image_size=(64, 128), max_boxes=8, val_ratio=0.2)
    return convert_kitti(root, params, cache_dir=root / "cache")


def batches(prepared, *, seed: int, augment, batch_size: int = 3) -> list:
    dataset = make_dataset(prepared.train_files + prepared.val_files, image=IMAGE, labels=LABELS, anchors=ANCHORS,
                           batch_size=batch_size, training=True, seed=seed, augment=augment)
    return [(images.numpy(), {key: value.numpy() for key, value in targets.items()}) for images, targets in dataset]


def same(first: list, second: list) -> bool:
    return all(
        np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][key], b[1][key]) for key in a[1])
        for a, b in zip(first, second, strict=True)
    )


def test_same_seed_and_epoch_give_identical_batches_and_another_epoch_others(rectangle_records):
    # The trainer builds one dataset per epoch with seed = plan seed + epoch.
    epoch_3, epoch_3_again, epoch_4 = (batches(rectangle_records, seed=s, augment=EVERYTHING) for s in (3, 3, 4))
    assert same(epoch_3, epoch_3_again)
    assert not any(np.array_equal(a[0], b[0]) for a, b in zip(epoch_3, epoch_4, strict=True))


def white_extent(image: np.ndarray, box_yxhw: np.ndarray, margin: int = 3) -> np.ndarray | None:
    """(y1, x1, y2, x2) in pixels of the white pixels near a box, or None if there are none."""
    height, width = image.shape[:2]
    y, x, h, w = box_yxhw
    top, bottom = max(0, int((y - h / 2) * height) - margin), min(height, int((y + h / 2) * height) + margin + 1)
    left, right = max(0, int((x - w / 2) * width) - margin), min(width, int((x + w / 2) * width) + margin + 1)
    white = image[top:bottom, left:right].min(axis=-1) > 0.6
    rows, cols = np.nonzero(white)
    if not len(rows):
        return None
    return np.array([top + rows.min(), left + cols.min(), top + rows.max() + 1, left + cols.max() + 1], float)


def assert_boxes_match_white_pixels(images: np.ndarray, boxes: np.ndarray) -> int:
    checked = 0
    for image, image_boxes in zip(images, boxes, strict=True):
        for box in image_boxes[image_boxes[:, 2] > 0]:
            y, x, h, w = box
            expected = np.array([(y - h / 2) * IMAGE.height, (x - w / 2) * IMAGE.width,
                                 (y + h / 2) * IMAGE.height, (x + w / 2) * IMAGE.width])
            found = white_extent(image, box)
            assert found is not None, f"no white pixels at box {expected}"
            np.testing.assert_allclose(found, expected, atol=1.5, err_msg="the box no longer frames its rectangle")
            checked += 1
    return checked


def test_boxes_stay_on_their_rectangles_through_jitter_flip_and_colour(rectangle_records):
    jitter = attrs.evolve(EVERYTHING, mosaic=0.0)
    checked = sum(assert_boxes_match_white_pixels(images, targets["boxes"])
                  for seed in (1, 2) for images, targets in batches(rectangle_records, seed=seed, augment=jitter))
    assert checked >= 12


@pytest.mark.parametrize("mosaic_scale", [0.5, 1.0])
def test_mosaic_batches_keep_shapes_boxes_within_the_image_and_on_their_rectangles(rectangle_records, mosaic_scale):
    mosaic = attrs.evolve(EVERYTHING, mosaic=1.0, mosaic_scale=mosaic_scale, scale=0.0, translate=0.0)
    found = batches(rectangle_records, seed=5, augment=mosaic)
    assert len(found) == 2  # 8 images in batches of 3, the last partial one dropped
    for images, targets in found:
        assert images.shape == (3, 64, 128, 3) and targets["boxes"].shape == (3, 8, 4)
        assert targets["classes"].shape == (3, 8)
        assert {key: value.shape for key, value in targets.items() if key.isdigit()} == {
            "8": (3, 8, 16, 3, 8), "16": (3, 4, 8, 3, 8), "32": (3, 2, 4, 3, 8)}
        boxes = targets["boxes"].reshape(-1, 4)
        real = boxes[:, 2] > 0
        corners = np.concatenate([boxes[real, :2] - boxes[real, 2:] / 2, boxes[real, :2] + boxes[real, 2:] / 2])
        assert corners.min() >= 0.0 and corners.max() <= 1.0
        assert not boxes[~real].any(), "padding rows stay zero"
        # A mosaic of four two-rectangle images shows more than two boxes somewhere.
        assert real.reshape(3, 8).sum(axis=1).max() > 2
        assert_boxes_match_white_pixels(images, targets["boxes"])


@pytest.mark.parametrize("mosaic_scale", [0.5, 0.75, 1.0])
def test_mosaic_scale_sets_the_size_of_each_image_and_its_boxes(mosaic_scale):
    # Four 64x64 images, each with an 8x8 box near its bottom-right corner. The top-left
    # quadrant shows image 0's bottom-right part, at least 16x16 of the canvas (the centre
    # is drawn in the middle half), so image 0's box is always whole: at mosaic_scale its
    # size is 8 * mosaic_scale pixels, and it ends 6 * mosaic_scale pixels above and left of the centre.
    pixels = tf.zeros([4, 64, 64, 3])
    boxes = tf.tile(tf.constant([[[50 / 64, 50 / 64, 58 / 64, 58 / 64], [0, 0, 0, 0]]]), [4, 1, 1])
    classes = tf.constant([[2, -1]] * 4)
    small = augment_ops.shrink(pixels, mosaic_scale)
    assert small.shape == (4, round(64 * mosaic_scale), round(64 * mosaic_scale), 3)
    canvas, found, found_classes = augment_ops.mosaic(small, boxes, classes, tf.constant([3, 4], tf.int64),
                                                       height=64, width=64, min_visible=0.25)
    assert canvas.shape == (64, 64, 3)
    first = found.numpy()[0] * 64
    side = 8 * mosaic_scale
    np.testing.assert_allclose(first[2:] - first[:2], [side, side], atol=1e-4)
    assert int(found_classes[0]) == 2
    # Its inner corner sits (64 - 58) * mosaic_scale pixels from the centre, on both axes.
    centre = first[2:] + 6 * mosaic_scale
    assert 16 <= centre.min() and centre.max() <= 48


def test_mosaic_scale_must_be_a_fraction_above_zero():
    with pytest.raises(ValueError, match="'mosaic_scale' must be > 0 and <= 1"):
        Augmentation(mosaic=0.5, mosaic_scale=0.0)
    with pytest.raises(ValueError, match="'mosaic_scale' must be > 0 and <= 1"):
        Augmentation(mosaic=0.5, mosaic_scale=1.5)


def test_mosaic_is_turned_off_for_the_last_epochs():
    settings = Augmentation(mosaic=0.5, mosaic_off_last=2)
    assert [settings.for_epoch(epoch, 10).mosaic for epoch in (1, 8, 9, 10)] == [0.5, 0.5, 0.0, 0.0]
    assert Augmentation(mosaic=0.5).for_epoch(10, 10).mosaic == 0.5
    with pytest.raises(ValueError, match="'mosaic' must be between 0 and 1"):
        Augmentation(mosaic=1.5)


def test_scale_translate_moves_a_hand_made_box_with_its_pixels():
    # A white 20x40 block at rows 20..40, cols 40..80 of a black 64x128 image.
    pixels = np.zeros((64, 128, 3), np.float32)
    pixels[20:40, 40:80] = 1.0
    boxes = np.zeros((4, 4), np.float32)
    boxes[0] = [20 / 64, 40 / 128, 40 / 64, 80 / 128]
    classes = np.array([0, -1, -1, -1], np.int32)
    for seed in ([1, 2], [3, 4], [5, 6]):
        moved, moved_boxes, moved_classes = augment_ops.scale_translate(
            tf.constant(pixels), tf.constant(boxes), tf.constant(classes), tf.constant(seed, tf.int64),
            scale=0.4, translate=0.2, min_visible=0.25)
        moved, moved_boxes = moved.numpy(), moved_boxes.numpy()
        if moved_boxes[0, 2] == 0:
            continue  # moved out of view: dropped, nothing to compare
        y1, x1, y2, x2 = moved_boxes[0]
        white = np.nonzero(moved.min(axis=-1) > 0.5)
        found = [white[0].min(), white[1].min(), white[0].max() + 1, white[1].max() + 1]
        np.testing.assert_allclose(found, [y1 * 64, x1 * 128, y2 * 64, x2 * 128], atol=1.0)
        assert moved_classes.numpy().tolist() == [0, -1, -1, -1] and not moved_boxes[1:].any()
        # Uncovered pixels get the letterbox gray, not black.
        assert np.isclose(moved, 114 / 255).all(axis=-1).any() or np.isclose(moved[0, 0], 0).all()


def test_colour_jitter_turns_hue_scales_saturation_and_value_and_leaves_grey_grey():
    def colour(rgb, hue, saturation, value):
        matrix = augment_ops._colour_matrix(tf.constant(hue), tf.constant(saturation), tf.constant(value))
        return tf.matmul(tf.constant([rgb], tf.float32), matrix).numpy()[0]

    np.testing.assert_allclose(colour([1, 0, 0], 1 / 3, 1.0, 1.0), [0, 1, 0], atol=1e-6)  # red -> green, as in HSV
    np.testing.assert_allclose(colour([0.9, 0.3, 0.3], 0.0, 0.0, 1.0), [0.5, 0.5, 0.5], atol=1e-6)  # no saturation
    np.testing.assert_allclose(colour([0.5, 0.5, 0.5], 0.2, 1.7, 0.5), [0.25, 0.25, 0.25], atol=1e-6)


def white_box(pixels: np.ndarray) -> list[float]:
    """y1 x1 y2 x2 (ratios) of the white pixels of a square image."""
    rows, cols = np.nonzero(pixels.min(axis=-1) > 0.5)
    size = pixels.shape[0]
    return [rows.min() / size, cols.min() / size, (rows.max() + 1) / size, (cols.max() + 1) / size]


def block_image() -> tuple[np.ndarray, np.ndarray]:
    """A white block at rows 1..3, columns 4..7 of a black 8x8 image, its box, and a padding row."""
    pixels = np.zeros((8, 8, 3), np.float32)
    pixels[1:3, 4:7] = 1.0
    boxes = np.array([[1 / 8, 4 / 8, 3 / 8, 7 / 8], [0, 0, 0, 0]], np.float32)
    return pixels, boxes


def test_flipud_and_quarter_turns_move_a_hand_made_box_with_its_pixels():
    pixels, boxes = block_image()
    flipped, flipped_boxes = augment_ops.flip_up_down(tf.constant(pixels), tf.constant(boxes),
                                                      tf.constant([1, 2], tf.int64), 1.0)
    # Upside down: rows 1..3 of 8 become rows 5..7.
    np.testing.assert_allclose(flipped_boxes.numpy(), [[5 / 8, 4 / 8, 7 / 8, 7 / 8], [0, 0, 0, 0]])
    np.testing.assert_allclose(white_box(flipped.numpy()), flipped_boxes.numpy()[0])
    # A quarter turn counter-clockwise takes (y, x) to (1 - x, y): columns 4..7 become rows 1..4,
    # rows 1..3 columns 1..3.
    np.testing.assert_allclose(augment_ops.quarter_turn_boxes(tf.constant(boxes[:1])).numpy(),
                               [[1 / 8, 1 / 8, 4 / 8, 3 / 8]])
    np.testing.assert_allclose(white_box(tf.image.rot90(pixels).numpy()), [1 / 8, 1 / 8, 4 / 8, 3 / 8])
    turned_boxes = set()
    for seed in range(12):
        turned, moved = augment_ops.rotate90(tf.constant(pixels), tf.constant(boxes),
                                             tf.constant([seed, 7], tf.int64), 1.0)
        np.testing.assert_allclose(white_box(turned.numpy()), moved.numpy()[0], atol=1e-6)
        assert not moved.numpy()[1].any(), "a padding row stays zero"
        turned_boxes.add(tuple(np.round(moved.numpy()[0], 4)))
    assert len(turned_boxes) == 3 and tuple(boxes[0]) not in turned_boxes  # 90, 180 and 270 degrees, never 0
    kept, kept_boxes = augment_ops.rotate90(tf.constant(pixels), tf.constant(boxes), tf.constant([0, 7], tf.int64),
                                            0.0)
    np.testing.assert_array_equal(kept.numpy(), pixels)
    np.testing.assert_array_equal(kept_boxes.numpy(), boxes)


@pytest.mark.slow(seconds=10)
def test_flipud_and_rot90_are_off_by_default_and_in_the_pipeline_boxes_follow_them(tmp_path):
    assert Augmentation().flipud == 0 and Augmentation().rot90 == 0
    assert attrs.evolve(Augmentation.none(), rot90=0.5).active
    # Square records of the block image; every batch's boxes lie on their white pixels.
    root = tmp_path / "kitti"
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "label_2").mkdir(parents=True)
    for index in range(3):
        image = Image.new("RGB", (64, 64))
        ImageDraw.Draw(image).rectangle([32, 8, 55, 23], fill=(255, 255, 255))  # x 32..56, y 8..24
        image.save(root / "training" / "image_2" / f"{index:06d}.png")
        (root / "training" / "label_2" / f"{index:06d}.txt").write_text("Car 0 0 0 32 8 56 24 1 1 1 1 1 1 0\n")
    prepared = convert_kitti(root, KittiParams(image_size=(64, 64), max_boxes=4, val_ratio=0.34),
                             cache_dir=root / "cache")
    square = ImageSpec(64, 64)
    settings = attrs.evolve(Augmentation.none(), flipud=0.5, rot90=1.0)
    dataset = make_dataset(prepared.train_files + prepared.val_files, image=square, labels=LabelSpec(("Car",), 4),
                           anchors=anchors_to_ratios(anchor_pixels("coco_yolov3"), square), batch_size=3,
                           training=True, seed=3, augment=settings)
    (images, targets), = list(dataset)
    for image, (y, x, h, w) in zip(images.numpy(), targets["boxes"].numpy()[:, 0], strict=True):
        np.testing.assert_allclose(white_box(image), [y - h / 2, x - w / 2, y + h / 2, x + w / 2], atol=1e-5)
        assert white_box(image) != [8 / 64, 32 / 64, 24 / 64, 56 / 64], "rot90 = 1 turns every image"
