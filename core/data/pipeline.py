"""From TFRecord shards to batches of ``(images, targets)`` (tf.data).

``images`` is (B, H, W, 3) float32 in [0, 1]. ``targets`` holds one
(B, H/s, W/s, anchors, 5 + classes) tensor per anchor stride, keyed ``str(s)``
(see targets.py), and ``"boxes"``: (B, max_boxes, 4) yxhw of every box of the
image, ignore regions included, zero-padded; the objectness loss uses it to
leave out predictions that overlap a real object or an ignore region.

Parsing, decoding, augmentation and target assignment run in parallel
(``map`` with AUTOTUNE, deterministic order) and batches are prefetched.
Iterate a training dataset through :func:`detplug.core.data.integrity.guarded`
so that a damaged shard stops training with a DataError naming it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Mapping, Sequence

import tensorflow as tf

from detplug.core.data import augment_ops, records
from detplug.core.data.augmentation import Augmentation
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


def _shuffled_records(paths: list[str], seed: int) -> tf.data.Dataset:
    """Serialised records, shards shuffled by file and read interleaved, then shuffled."""
    paths = list(paths)
    random.Random(seed).shuffle(paths)
    dataset = tf.data.Dataset.from_tensor_slices(paths).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(INTERLEAVE, len(paths)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)


def make_dataset(
    files: Sequence[str | Path],
    *,
    image: ImageSpec,
    labels: LabelSpec,
    anchors: Mapping[int, AnchorRatios],
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: bool | Augmentation | None = False,
) -> tf.data.Dataset:
    """Batches of ``(images, targets)`` from record shards (see the module docstring).

    Training shuffles shards and records with ``seed`` and drops the last
    partial batch so every shape is static; one dataset always yields the same
    order, so the trainer builds one per epoch with ``seed + epoch`` and a
    resumed run sees the same batches as an uninterrupted one. Validation
    reads in order and keeps the remainder.

    ``augment`` (training only): an :class:`Augmentation`, ``True`` for its
    defaults, or False/None. Every random draw is seeded by (seed, position of
    the image in the epoch). Mosaic is whatever the settings say: the caller
    turns it off for the last epochs with ``settings.for_epoch(epoch, total_epochs)``.
    """
    paths = _check_files(files, image)
    max_boxes = labels.max_boxes
    settings = Augmentation() if augment is True else (augment or Augmentation.none())
    if not training:
        settings = Augmentation.none()

    def seeds_of(position: tf.Tensor) -> tf.Tensor:
        # One seed per random step, all from (seed, position): 0 mosaic or not, 1 its
        # centre, 2 scale/translate, 3 flip, 4 colour.
        return tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), position]), num=5)

    def decode(position: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, ...]:
        parsed = records.parse(serialized)
        pixels = tf.io.decode_png(parsed["png"], channels=3)
        pixels = tf.cast(tf.ensure_shape(pixels, [image.height, image.width, 3]), tf.float32) / 255.0
        boxes, classes = parsed["boxes"][:max_boxes], parsed["classes"][:max_boxes]
        boxes, classes = augment_ops.compact(boxes, classes, augment_ops.real_rows(boxes), max_boxes)
        return position, pixels, boxes, classes

    def mosaic_group(positions: tf.Tensor, pixels: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor):
        # Up to four consecutive (shuffled) images; each becomes, with probability
        # settings.mosaic, a mosaic of itself and the other three. Every image is decoded
        # and halved once for all four mosaics instead of once per mosaic.
        count = tf.shape(positions)[0]
        small = augment_ops.halve(pixels)
        outputs = []
        for slot in range(4):
            main = tf.minimum(slot, count - 1)  # a last, short group repeats its images
            order = tf.math.floormod(tf.range(main, main + 4), count)
            seeds = seeds_of(positions[main])

            def four(order=order, seeds=seeds):
                return augment_ops.mosaic(tf.gather(small, order), tf.gather(boxes, order),
                                          tf.gather(classes, order), seeds[1], min_visible=settings.min_visible)

            def one(main=main):
                return pixels[main], boxes[main], classes[main]

            use = tf.random.stateless_uniform([], seed=seeds[0]) < settings.mosaic
            outputs.append(tf.cond(use, four, one))
        stacked = [tf.stack(parts)[:count] for parts in zip(*outputs)]
        return (positions, *stacked)

    def augment_and_assign(position, pixels, boxes, classes) -> tuple[tf.Tensor, dict]:
        seeds = seeds_of(position)
        if settings.geometric:
            pixels, boxes, classes = augment_ops.scale_translate(
                pixels, boxes, classes, seeds[2],
                scale=settings.scale, translate=settings.translate, min_visible=settings.min_visible,
            )
        if settings.flip:
            pixels, boxes = augment_ops.flip(pixels, boxes, seeds[3], settings.flip)
        if settings.colour:
            pixels = augment_ops.hsv(pixels, seeds[4], hue=settings.hue, saturation=settings.saturation,
                                     value=settings.value)
        boxes_yxhw = tf.concat([(boxes[:, :2] + boxes[:, 2:]) / 2.0, boxes[:, 2:] - boxes[:, :2]], axis=-1)
        boxes_yxhw = tf.where(augment_ops.real_rows(boxes)[:, None], boxes_yxhw, 0.0)
        targets = assign_targets(boxes_yxhw, classes, anchors, image, labels.num_classes)
        targets["boxes"] = boxes_yxhw
        return pixels, targets

    parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
    dataset = _shuffled_records(paths, seed) if training else tf.data.TFRecordDataset(paths)
    dataset = dataset.enumerate().map(decode, **parallel)
    if settings.mosaic:
        dataset = dataset.batch(4).map(mosaic_group, **parallel).unbatch()
    dataset = dataset.map(augment_and_assign, **parallel)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
