"""From TFRecord shards to batches of ``(images, targets)`` (tf.data).

``images`` is (B, H, W, 3) float32 in [0, 1]. ``targets`` holds one
(B, H/s, W/s, anchors, 5 + classes) tensor per anchor stride, keyed ``str(s)``
(see targets.py), and ``"boxes"``: (B, max_boxes, 4) yxhw of every box of the
image, ignore regions included, zero-padded; the objectness loss uses it to
leave out predictions that overlap a real object or an ignore region.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Mapping, Sequence

import tensorflow as tf

from detplug.core.data import records
from detplug.core.data.targets import assign_targets
from detplug.core.errors import DataError
from detplug.core.specs import AnchorRatios, ImageSpec, LabelSpec

#: Serialised records held for shuffling; with shards shuffled by file and
#: read interleaved, this mixes well without holding a whole dataset in memory.
SHUFFLE_BUFFER = 1024

#: Shards read at once while training.
INTERLEAVE = 4


def count_steps(images: int, batch_size: int, training: bool) -> int:
    """Batches per epoch: training drops the last partial batch, validation keeps it."""
    if batch_size <= 0:
        raise DataError(f"batch_size must be > 0 (got {batch_size})")
    if training:
        if images < batch_size:
            raise DataError(
                f"the train split has {images} images, fewer than one batch of {batch_size}; "
                f"lower batch_size or add images"
            )
        return images // batch_size
    return math.ceil(images / batch_size)


def _check_files(files: Sequence[str | Path], image: ImageSpec) -> list[str]:
    if not files:
        raise DataError("no TFRecord files were given to read; the dataset's split is empty")
    paths = [str(path) for path in files]
    for path in paths:
        if not Path(path).is_file():
            raise DataError(
                f"TFRecord shard {path} is missing; delete its folder {Path(path).parent} and run again to rebuild it"
            )
    # One record read eagerly turns a wrong-size or damaged shard into a clear
    # error now instead of an op error deep inside the first epoch.
    try:
        first = next(iter(tf.data.TFRecordDataset(paths[0]).take(1)), None)
    except tf.errors.OpError as error:
        raise DataError(f"TFRecord shard {paths[0]} cannot be read ({error.message})") from None
    if first is not None:
        png = records.parse(first)["png"]
        height, width = tf.io.decode_png(png, channels=3).shape[:2]
        if (height, width) != (image.height, image.width):
            raise DataError(
                f"TFRecord shard {paths[0]} holds {height}x{width} images but the model takes "
                f"{image.height}x{image.width}; the dataset's image_size must equal the model input"
            )
    return paths


def _stateless_flip(image: tf.Tensor, boxes_yxhw: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    flipped_boxes = tf.concat([boxes_yxhw[:, :1], 1.0 - boxes_yxhw[:, 1:2], boxes_yxhw[:, 2:]], axis=-1)
    # Padding rows (all zero) must stay zero, or they would look like boxes at x = 1.
    flipped_boxes = tf.where(boxes_yxhw[:, 2:3] > 0, flipped_boxes, boxes_yxhw)
    return (
        tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image),
        tf.cond(flip, lambda: flipped_boxes, lambda: boxes_yxhw),
    )


def make_dataset(
    files: Sequence[str | Path],
    *,
    image: ImageSpec,
    labels: LabelSpec,
    anchors: Mapping[int, AnchorRatios],
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(images, targets)`` from record shards (see the module docstring).

    Training shuffles shards and records with ``seed`` and drops the last
    partial batch so every shape is static; one dataset always yields the same
    order, so the trainer builds one per epoch with ``seed + epoch`` and a
    resumed run sees the same batches as an uninterrupted one. Validation
    reads in order and keeps the remainder. ``augment`` flips horizontally
    with probability 0.5, seeded from (seed, position in the epoch).
    """
    paths = _check_files(files, image)
    max_boxes = labels.max_boxes

    def to_example(position: tf.Tensor, serialized: tf.Tensor):
        parsed = records.parse(serialized)
        pixels = tf.io.decode_png(parsed["png"], channels=3)
        pixels = tf.ensure_shape(pixels, [image.height, image.width, 3])
        yxyx = parsed["boxes"][:max_boxes]
        classes = parsed["classes"][:max_boxes]
        boxes = tf.concat([(yxyx[:, :2] + yxyx[:, 2:]) / 2.0, yxyx[:, 2:] - yxyx[:, :2]], axis=-1)
        padding = max_boxes - tf.shape(boxes)[0]
        boxes = tf.pad(boxes, [[0, padding], [0, 0]])
        classes = tf.pad(classes, [[0, padding]], constant_values=records.IGNORE_CLASS)
        boxes = tf.ensure_shape(boxes, [max_boxes, 4])
        pixels = tf.cast(pixels, tf.float32) / 255.0
        if augment:
            pixels, boxes = _stateless_flip(pixels, boxes, tf.stack([tf.constant(seed, tf.int64), position]))
        targets = assign_targets(boxes, classes, anchors, image, labels.num_classes)
        targets["boxes"] = boxes
        return pixels, targets

    if training:
        random.Random(seed).shuffle(paths)
        dataset = tf.data.Dataset.from_tensor_slices(paths).interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(INTERLEAVE, len(paths)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)
    else:
        dataset = tf.data.TFRecordDataset(paths)
    dataset = dataset.enumerate().map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
