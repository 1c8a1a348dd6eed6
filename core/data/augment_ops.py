"""Augmentation ops on one training example (TensorFlow, graph-safe, stateless).

An example is ``pixels`` (H, W, 3) float32 in [0, 1], ``boxes`` (M, 4) y1 x1 y2 x2
normalised to the image, ``classes`` (M,) int32. Rows of zero size are padding
and stay all-zero with class -1; ignore regions (class -1, real size) move
with the image like any box. Every random draw comes from a stateless op with
a seed the caller derives from (seed, position in the epoch), so an epoch
replays exactly.
"""

from __future__ import annotations

import math

import tensorflow as tf

from detplug.core.data.letterbox import PAD_VALUE
from detplug.core.data.source import IGNORE_CLASS
from detplug.core.errors import CheckError

PAD = PAD_VALUE / 255.0


def real_rows(boxes: tf.Tensor) -> tf.Tensor:
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _area(boxes: tf.Tensor) -> tf.Tensor:
    return tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


def compact(boxes: tf.Tensor, classes: tf.Tensor, keep: tf.Tensor, max_boxes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Kept rows first (in order), the rest zeroed, exactly ``max_boxes`` rows."""
    boxes = tf.where(keep[:, None], boxes, 0.0)
    classes = tf.where(keep, classes, IGNORE_CLASS)
    order = tf.argsort(tf.cast(~keep, tf.int32), stable=True)
    boxes, classes = tf.gather(boxes, order)[:max_boxes], tf.gather(classes, order)[:max_boxes]
    padding = max_boxes - tf.shape(boxes)[0]
    boxes = tf.pad(boxes, [[0, padding], [0, 0]])
    classes = tf.pad(classes, [[0, padding]], constant_values=IGNORE_CLASS)
    return tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(classes, [max_boxes])


def _clip_and_keep(moved: tf.Tensor, valid: tf.Tensor, min_visible: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Clip moved boxes to the image; keep those still showing ``min_visible`` of their area."""
    clipped = tf.clip_by_value(moved, 0.0, 1.0)
    keep = valid & real_rows(clipped) & (_area(clipped) >= min_visible * _area(moved))
    return clipped, keep


def flip(pixels: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, probability: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror left-right with ``probability``; padding rows stay zero."""
    do_flip = tf.random.stateless_uniform([], seed=seed) < probability
    mirrored = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=1)
    mirrored = tf.where(real_rows(boxes)[:, None], mirrored, boxes)
    return (
        tf.cond(do_flip, lambda: tf.image.flip_left_right(pixels), lambda: pixels),
        tf.cond(do_flip, lambda: mirrored, lambda: boxes),
    )


def flip_up_down(pixels: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor,
                 probability: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror top-bottom with ``probability``; padding rows stay zero."""
    do_flip = tf.random.stateless_uniform([], seed=seed) < probability
    mirrored = tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1)
    mirrored = tf.where(real_rows(boxes)[:, None], mirrored, boxes)
    return (
        tf.cond(do_flip, lambda: tf.image.flip_up_down(pixels), lambda: pixels),
        tf.cond(do_flip, lambda: mirrored, lambda: boxes),
    )


def quarter_turn_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Boxes (y1 x1 y2 x2, ratios of a square image) after the image turns 90 degrees
    counter-clockwise, as ``tf.image.rot90`` turns it: the point (y, x) goes to (1 - x, y)."""
    return tf.stack([1.0 - boxes[:, 3], boxes[:, 0], 1.0 - boxes[:, 1], boxes[:, 2]], axis=1)


def rotate90(pixels: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor,
             probability: float) -> tuple[tf.Tensor, tf.Tensor]:
    """With ``probability``, turn a square image counter-clockwise by 90, 180 or 270 degrees
    (one of the three at random), its boxes with it; padding rows stay zero."""
    if pixels.shape[0] != pixels.shape[1]:
        raise CheckError(f"rot90 turns square images only (got {pixels.shape[0]}x{pixels.shape[1]}); set "
                         f"[train.augment] rot90 = 0 or give the dataset a square image_size")
    draws = tf.random.stateless_uniform([2], seed=seed)
    turns = tf.where(draws[0] < probability, 1 + tf.cast(tf.minimum(draws[1] * 3.0, 2.0), tf.int32), 0)
    real = real_rows(boxes)[:, None]

    def turned(times: int) -> tuple[tf.Tensor, tf.Tensor]:
        moved = boxes
        for _ in range(times):
            moved = quarter_turn_boxes(moved)
        return tf.image.rot90(pixels, k=times), tf.where(real, moved, boxes)

    pixels_out, boxes_out = tf.switch_case(turns, [lambda times=times: turned(times) for times in range(4)])
    return tf.ensure_shape(pixels_out, pixels.shape), tf.ensure_shape(boxes_out, boxes.shape)


def scale_translate(
    pixels: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    seed: tf.Tensor,
    *,
    scale: float,
    translate: float,
    min_visible: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Zoom about the centre by s in [1 - scale, 1 + scale] and shift by up to ``translate``
    of the size; uncovered pixels get the letterbox gray, boxes are moved, clipped and
    dropped when less than ``min_visible`` of them stays in view."""
    height, width = pixels.shape[0], pixels.shape[1]
    draws = tf.random.stateless_uniform([3], seed=seed, minval=-1.0, maxval=1.0)
    zoom = 1.0 + scale * draws[0]
    shift_y, shift_x = translate * draws[1], translate * draws[2]
    # Output pixel i samples the input at  (i + 0.5 - size/2 - shift*size) / zoom + size/2 - 0.5
    # (pixel i spans [i, i + 1]); crop_and_resize samples at  start*(size - 1) + i*(end - start),
    # so the window below is that map. Samples outside the image get the letterbox gray.
    def window(size: int, shift: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        start = ((0.5 - size / 2 - shift * size) / zoom + size / 2 - 0.5) / (size - 1)
        return start, start + 1.0 / zoom

    (top, bottom), (left, right) = window(height, shift_y), window(width, shift_x)
    moved_pixels = tf.image.crop_and_resize(
        pixels[None], tf.stack([top, left, bottom, right])[None], [0], [height, width], extrapolation_value=PAD
    )[0]
    centre_shift = tf.stack([shift_y, shift_x, shift_y, shift_x])
    moved = (boxes - 0.5) * zoom + 0.5 + centre_shift
    clipped, keep = _clip_and_keep(moved, real_rows(boxes), min_visible)
    boxes, classes = compact(clipped, classes, keep, boxes.shape[0])
    return tf.ensure_shape(moved_pixels, pixels.shape), boxes, classes


def _colour_matrix(hue_turns: tf.Tensor, saturation_gain: tf.Tensor, value_gain: tf.Tensor) -> tf.Tensor:
    """The 3x3 matrix (applied as ``pixels @ matrix``) that rotates hue by ``hue_turns`` of
    a circle about the grey axis, scales saturation (the distance from that axis) and
    value (brightness): HSV jitter as one linear map, instead of a round trip through HSV."""
    angle = 2.0 * math.pi * hue_turns
    grey = tf.fill([3, 3], 1.0 / 3.0)  # projection onto the grey axis (1, 1, 1)
    # The cross-product matrix of the unit grey axis (1, 1, 1) / sqrt(3).
    cross = tf.constant([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3.0)
    # Rodrigues' rotation about the grey axis, on the part of a colour orthogonal to it.
    rotation = tf.cos(angle) * (tf.eye(3) - grey) + tf.sin(angle) * cross
    column_form = value_gain * (grey + saturation_gain * rotation)
    return tf.transpose(column_form)


def hsv(pixels: tf.Tensor, seed: tf.Tensor, *, hue: float, saturation: float, value: float) -> tf.Tensor:
    """Shift hue by up to ``hue`` of the colour circle and scale saturation and value by
    gains in [1 - x, 1 + x] (YOLO's HSV jitter, as one colour matrix)."""
    draws = tf.random.stateless_uniform([3], seed=seed, minval=-1.0, maxval=1.0)
    matrix = _colour_matrix(hue * draws[0], 1.0 + saturation * draws[1], 1.0 + value * draws[2])
    shape = tf.shape(pixels)
    mixed = tf.matmul(tf.reshape(pixels, [-1, 3]), matrix)
    return tf.clip_by_value(tf.reshape(mixed, shape), 0.0, 1.0)


def shrink(pixels: tf.Tensor, scale: float) -> tf.Tensor:
    """(N, H, W, 3) to ``scale`` of its size: 2x2 averages for 0.5 (exact for the even sizes
    models take), an antialiased resize otherwise, unchanged for 1."""
    if scale == 1.0:
        return pixels
    if scale == 0.5:
        return tf.nn.avg_pool2d(pixels, ksize=2, strides=2, padding="VALID")
    height, width = pixels.shape[1], pixels.shape[2]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return tf.image.resize(pixels, size, antialias=True)


def _fit(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor, *, bottom: bool, right: bool) -> tf.Tensor:
    """``image`` cut or padded (with the letterbox gray) to ``height`` x ``width``, keeping its
    bottom (else top) edge and its right (else left) edge in place."""
    image_h, image_w = image.shape[0], image.shape[1]
    rows, cols = tf.minimum(image_h, height), tf.minimum(image_w, width)
    image = image[image_h - rows :] if bottom else image[:rows]
    image = image[:, image_w - cols :] if right else image[:, :cols]
    pad_rows, pad_cols = height - rows, width - cols
    paddings = [[pad_rows, 0] if bottom else [0, pad_rows], [pad_cols, 0] if right else [0, pad_cols], [0, 0]]
    return tf.pad(image, paddings, constant_values=PAD)


def mosaic(
    small: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor, seed: tf.Tensor, *, height: int, width: int,
    min_visible: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Four examples ((4, h, w, 3), (4, M, 4), (4, M)), shrunk to h x w from ``height`` x
    ``width`` or not, into one ``height`` x ``width`` example: each sits in one quadrant around
    a random centre (in the middle half of the image), its inner corner at the centre; what
    falls outside its quadrant is cut, boxes with it."""
    tile_h, tile_w = small.shape[1], small.shape[2]
    max_boxes = boxes.shape[1]
    centre = tf.random.stateless_uniform([2], seed=seed, minval=0.25, maxval=0.75)
    centre_y = tf.cast(tf.round(centre[0] * height), tf.int32)
    centre_x = tf.cast(tf.round(centre[1] * width), tf.int32)
    below, beside = height - centre_y, width - centre_x
    # Quadrants top-left, top-right, bottom-left, bottom-right, each image anchored at the centre.
    top_row = tf.concat([_fit(small[0], centre_y, centre_x, bottom=True, right=True),
                         _fit(small[1], centre_y, beside, bottom=True, right=False)], axis=1)
    bottom_row = tf.concat([_fit(small[2], below, centre_x, bottom=False, right=True),
                            _fit(small[3], below, beside, bottom=False, right=False)], axis=1)
    canvas = tf.concat([top_row, bottom_row], axis=0)

    top = tf.stack([centre_y - tile_h, centre_y - tile_h, centre_y, centre_y])
    left = tf.stack([centre_x - tile_w, centre_x, centre_x - tile_w, centre_x])
    offset = tf.stack(
        [tf.cast(top, tf.float32) / height, tf.cast(left, tf.float32) / width] * 2, axis=1
    )  # (4, 4): y1 x1 y2 x2 offsets per quadrant
    shrunk = tf.constant([tile_h / height, tile_w / width] * 2, tf.float32)
    moved = tf.reshape(boxes * shrunk + offset[:, None, :], [-1, 4])
    clipped, keep = _clip_and_keep(moved, real_rows(tf.reshape(boxes, [-1, 4])), min_visible)
    boxes, classes = compact(clipped, tf.reshape(classes, [-1]), keep, max_boxes)
    return tf.ensure_shape(canvas, [height, width, 3]), boxes, classes
