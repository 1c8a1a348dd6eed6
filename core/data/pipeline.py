"""From TFRecord shards to batches of ``(images, targets)`` (tf.data).

``images`` is (B, H, W, 3) float32 in [0, 1]. ``targets`` holds one
(B, H/s, W/s, anchors, 5 + classes) tensor per anchor stride, keyed ``str(s)``
(see targets.py), and ``"boxes"``: (B, max_boxes, 4) yxhw of every box of the
image, ignore regions included, zero-padded; the objectness loss uses it to
leave out predictions that overlap a real object or an ignore region. ``"classes"``:
(B, max_boxes) int32, the class of each of those boxes (-1: an ignore region or padding).
Validation batches also hold ``REAL_IMAGES``: (B,) bool, False for the blank images that
fill up the last batch (see :func:`whole_batches`).

Parsing, decoding, augmentation and target assignment run in parallel (one
example per CPU, deterministic order) and batches are prefetched.
Iterate a training dataset through :func:`detplug.core.data.integrity.guarded`
so that a damaged shard stops training with a DataError naming it.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import tensorflow as tf

from detplug.core.data import augment_ops, records
from detplug.core.data.targets import assign_targets
from detplug.core.errors import DataError
from detplug.core.plan.assignment import Assignment
from detplug.core.plan.augmentation import Augmentation
from detplug.core.plan.specs import AnchorRatios, ImageSpec, LabelSpec

#: Serialised records shuffled together; with shards shuffled by file and read
#: interleaved, this mixes well without holding a whole dataset in memory.
SHUFFLE_BUFFER = 1024

#: Shards read at once while training.
INTERLEAVE = 4

#: Batches prepared ahead of the one the trainer takes.
PREFETCH_BATCHES = 2

#: The targets' key of a validation batch's mask: True for its images, False for the blank
#: ones that fill up the last batch.
REAL_IMAGES = "real"


def count_steps(images: int, batch_size: int, training: bool) -> int:
    """Batches per epoch: training drops the last partial batch, validation fills it up."""
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


def _shuffled_records(paths: list[str], seed: tf.Tensor) -> tf.data.Dataset:
    """Serialised records, shards shuffled by file and read interleaved, then shuffled in
    windows of SHUFFLE_BUFFER records. Every permutation is stateless and ``seed`` a
    tensor (``Dataset.shuffle`` wants a Python seed), so one traced function serves every
    epoch."""
    def permutation_seed(salt: tf.Tensor) -> tf.Tensor:
        return tf.stack([seed, tf.cast(salt, tf.int64)])

    order = tf.random.experimental.stateless_shuffle(tf.constant(paths), seed=permutation_seed(0))
    dataset = tf.data.Dataset.from_tensor_slices(order).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(INTERLEAVE, len(paths)),
        num_parallel_calls=min(INTERLEAVE, len(paths)),
        deterministic=True,
    )
    windows = dataset.batch(SHUFFLE_BUFFER).enumerate()
    return windows.map(lambda index, window: tf.random.experimental.stateless_shuffle(
        window, seed=permutation_seed(index + 1))).unbatch()


@attrs.frozen
class Scales:
    """Multi-scale training's draw: one of ``sizes`` for every ``images`` consecutive images."""

    sizes: tuple[tuple[int, int], ...]
    images: int


class InputPipeline:
    """Batches of one model input's ``(images, targets)``, from any record shards, epoch
    after epoch.

    Its per-image steps (decode; augment and assign targets) are ``tf.function``\ s
    traced once and called by every dataset it makes: a new tf.data pipeline per
    epoch, as the trainer builds, then costs milliseconds instead of a retrace of
    every op of augmentation and target assignment (1-2 s per dataset on a 2-core
    CPU). The random seed reaches them as a tensor for the same reason.
    """

    def __init__(self, *, image: ImageSpec, labels: LabelSpec, anchors: Mapping[int, AnchorRatios],
                 assignment: Assignment | None = None) -> None:
        self.image, self.labels, self.anchors = image, labels, anchors
        self.assignment = assignment or Assignment()
        max_boxes = labels.max_boxes
        pixels_spec = tf.TensorSpec([image.height, image.width, 3], tf.float32)
        self._example_spec = (tf.TensorSpec([], tf.int64), pixels_spec, tf.TensorSpec([max_boxes, 4], tf.float32),
                              tf.TensorSpec([max_boxes], tf.int32))
        self.decode = tf.function(self._decode, input_signature=[tf.TensorSpec([], tf.int64),
                                                                  tf.TensorSpec([], tf.string)])
        self._augmenters: dict[tuple[Augmentation, Scales | None], tuple] = {}

    def _decode(self, position: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, ...]:
        image, max_boxes = self.image, self.labels.max_boxes
        parsed = records.parse(serialized)
        pixels = tf.io.decode_png(parsed["png"], channels=3)
        pixels = tf.cast(tf.ensure_shape(pixels, [image.height, image.width, 3]), tf.float32) / 255.0
        boxes, classes = parsed["boxes"][:max_boxes], parsed["classes"][:max_boxes]
        boxes, classes = augment_ops.compact(boxes, classes, augment_ops.real_rows(boxes), max_boxes)
        return position, pixels, boxes, classes

    def _functions(self, settings: Augmentation, scales: Scales | None = None) -> tuple:
        """(mosaic of a group, augment-and-assign of one example) for ``settings`` (and the
        multi-scale draw ``scales``), traced once each."""
        key = (settings, scales)
        if key not in self._augmenters:
            seed_spec = tf.TensorSpec([], tf.int64)
            group = tuple(tf.TensorSpec([None, *spec.shape], spec.dtype) for spec in self._example_spec)
            mosaic = tf.function(lambda seed, *example: self._mosaic_group(settings, seed, *example),
                                 input_signature=[seed_spec, *group])
            one = tf.function(lambda seed, *example: self._augment_and_assign(settings, seed, *example,
                                                                                scales=scales),
                              input_signature=[seed_spec, *self._example_spec])
            self._augmenters[key] = (mosaic, one)
        return self._augmenters[key]

    @staticmethod
    def _seeds_of(seed: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
        # One seed per random step, all from (seed, position): 0 mosaic or not, 1 its
        # centre, 2 scale/translate, 3 flip, 4 colour.
        return tf.random.experimental.stateless_split(tf.stack([seed, position]), num=5)

    def _mosaic_group(self, settings: Augmentation, seed: tf.Tensor, positions: tf.Tensor, pixels: tf.Tensor,
                      boxes: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, ...]:
        # Up to four consecutive (shuffled) images; each becomes, with probability
        # settings.mosaic, a mosaic of itself and the other three. Every image is decoded
        # and shrunk once for all four mosaics instead of once per mosaic.
        count = tf.shape(positions)[0]
        small = augment_ops.shrink(pixels, settings.mosaic_scale)
        outputs = []
        for slot in range(4):
            main = tf.minimum(slot, count - 1)  # a last, short group repeats its images
            order = tf.math.floormod(tf.range(main, main + 4), count)
            seeds = self._seeds_of(seed, positions[main])

            def four(order=order, seeds=seeds):
                return augment_ops.mosaic(tf.gather(small, order), tf.gather(boxes, order),
                                          tf.gather(classes, order), seeds[1], height=self.image.height,
                                          width=self.image.width, min_visible=settings.min_visible)

            def one(main=main):
                return pixels[main], boxes[main], classes[main]

            use = tf.random.stateless_uniform([], seed=seeds[0]) < settings.mosaic
            outputs.append(tf.cond(use, four, one))
        stacked = [tf.stack(parts)[:count] for parts in zip(*outputs)]
        return (positions, *stacked)

    def _augment_and_assign(self, settings: Augmentation, seed: tf.Tensor, position: tf.Tensor, pixels: tf.Tensor,
                            boxes: tf.Tensor, classes: tf.Tensor, *,
                            scales: Scales | None = None) -> tuple[tf.Tensor, dict]:
        seeds = self._seeds_of(seed, position)
        if settings.geometric:
            pixels, boxes, classes = augment_ops.scale_translate(
                pixels, boxes, classes, seeds[2],
                scale=settings.scale, translate=settings.translate, min_visible=settings.min_visible,
            )
        if settings.flip:
            pixels, boxes = augment_ops.flip(pixels, boxes, seeds[3], settings.flip)
        # Seeds of their own, folded from the flip's, so that adding these left every other
        # draw (and so every earlier run's batches) as it was.
        if settings.flipud:
            pixels, boxes = augment_ops.flip_up_down(
                pixels, boxes, tf.random.experimental.stateless_fold_in(seeds[3], 1), settings.flipud)
        if settings.rot90:
            pixels, boxes = augment_ops.rotate90(
                pixels, boxes, tf.random.experimental.stateless_fold_in(seeds[3], 2), settings.rot90)
        if settings.colour:
            pixels = augment_ops.hsv(pixels, seeds[4], hue=settings.hue, saturation=settings.saturation,
                                     value=settings.value)
        boxes_yxhw = tf.concat([(boxes[:, :2] + boxes[:, 2:]) / 2.0, boxes[:, 2:] - boxes[:, :2]], axis=-1)
        boxes_yxhw = tf.where(augment_ops.real_rows(boxes)[:, None], boxes_yxhw, 0.0)
        if scales is None:
            return self._assign(pixels, boxes_yxhw, classes, self.image)
        # The same size for every image of ``scales.images`` consecutive ones (whole batches):
        # the letterboxed image is resized as a whole, so its boxes, ratios of it, stay put.
        draw = tf.random.stateless_uniform([], seed=tf.stack([seed, -1 - position // scales.images]),
                                           maxval=len(scales.sizes), dtype=tf.int32)
        resized, targets = tf.switch_case(draw, [
            lambda size=size: self._assign(tf.image.resize(pixels, size), boxes_yxhw, classes,
                                           ImageSpec(size[0], size[1], 3))
            for size in scales.sizes])
        return resized, targets

    def _assign(self, pixels: tf.Tensor, boxes_yxhw: tf.Tensor, classes: tf.Tensor,
                image: ImageSpec) -> tuple[tf.Tensor, dict]:
        targets = assign_targets(boxes_yxhw, classes, self.anchors, image, self.labels.num_classes, self.assignment)
        targets["boxes"] = boxes_yxhw
        targets["classes"] = classes
        return pixels, targets

    def dataset(self, files: Sequence[str | Path], *, batch_size: int, training: bool, seed: int = 0,
                augment: bool | Augmentation | None = False) -> tf.data.Dataset:
        """Batches of ``(images, targets)`` from record shards (see the module docstring).

        Training shuffles shards and records with ``seed`` and drops the last
        partial batch so every shape is static; one dataset always yields the same
        order, so a resumed run sees the same batches as an uninterrupted one.
        Validation reads in order and keeps the remainder, in a last batch filled up
        with blank images that ``targets[REAL_IMAGES]`` marks (:func:`whole_batches`).

        ``augment`` (training only): an :class:`Augmentation`, ``True`` for its
        defaults, or False/None. Every random draw is seeded by (seed, position of
        the image in the epoch).
        """
        return self.epochs(files, [0], batch_size=batch_size, training=training, seed=seed,
                           augment_for=lambda epoch: augment)

    def epochs(self, files: Sequence[str | Path], epochs: Sequence[int], *, batch_size: int, training: bool,
               seed: int = 0, augment_for: Callable[[int], bool | Augmentation | None] = lambda epoch: False,
               sizes: Sequence[tuple[int, int]] = (), size_every: int = 10,
               steps_per_epoch: int | None = None) -> tf.data.Dataset:
        """The batches of several epochs, one epoch after the other, as one dataset: epoch
        ``e`` is exactly :meth:`dataset` with ``seed + e`` and ``augment_for(e)``.
        ``steps_per_epoch`` (training): exactly that many batches an epoch, the epoch's
        records read again from the start when they run out (a worker that reads only its own
        shards still takes the steps every other worker takes).

        One dataset, and so one iterator, for a whole period: a new iterator per epoch
        costs about a second on a 2-core CPU (tf.data instantiates and optimises every
        traced function again). ``augment_for`` is where the trainer turns mosaic off
        for the last epochs (``settings.for_epoch(epoch, total_epochs)``).
        """
        paths = _check_files(files, self.image)
        epochs = list(epochs)
        scales = Scales(tuple(sizes), batch_size * size_every) if sizes and training else None
        dataset = None
        for settings, same in itertools.groupby(epochs, key=lambda epoch: self._settings(augment_for(epoch), training)):
            numbers = tf.data.Dataset.from_tensor_slices(tf.constant(list(same), tf.int64))
            segment = numbers.flat_map(
                lambda epoch, settings=settings: self._epoch(
                    paths, tf.constant(seed, tf.int64) + epoch, settings, batch_size=batch_size, training=training,
                    scales=scales, steps=steps_per_epoch))
            dataset = segment if dataset is None else dataset.concatenate(segment)
        # Every caller asks for at least one epoch (dataset() asks for [0], training for the
        # epochs of a period that is not done yet), so the loop above made a dataset.
        assert dataset is not None, "epochs: no epoch to read"
        options = tf.data.Options()
        options.deterministic = True
        # tf.data's autotuner measures and re-plans on threads of its own; on a small CPU they
        # take cores from the training step every few seconds (measured on 2 cores: epochs at
        # 12 images/s among epochs at 19). The work here is light: fixed parallelism does it.
        options.autotune.enabled = False
        return dataset.with_options(options).prefetch(PREFETCH_BATCHES)

    @staticmethod
    def _settings(augment: bool | Augmentation | None, training: bool) -> Augmentation:
        if not training:
            return Augmentation.none()
        return Augmentation() if augment is True else (augment or Augmentation.none())

    def _epoch(self, paths: list[str], seed: tf.Tensor, settings: Augmentation, *, batch_size: int,
               training: bool, scales: Scales | None = None, steps: int | None = None) -> tf.data.Dataset:
        """One epoch's batches (``steps`` of them when given); ``seed`` a tensor (this runs
        inside ``flat_map``)."""
        mosaic_group, augment_and_assign = self._functions(settings, scales)
        parallel = {"num_parallel_calls": parallel_calls(), "deterministic": True}
        dataset = _shuffled_records(paths, seed) if training else tf.data.TFRecordDataset(paths)
        if steps is not None:
            dataset = dataset.repeat()
        dataset = dataset.enumerate().map(self.decode, **parallel)
        if settings.mosaic:
            dataset = dataset.batch(4).map(lambda *group: mosaic_group(seed, *group), **parallel).unbatch()
        dataset = dataset.map(lambda *example: augment_and_assign(seed, *example), **parallel)
        dataset = dataset.batch(batch_size, drop_remainder=True) if training else whole_batches(dataset, batch_size)
        return dataset if steps is None else dataset.take(steps)


def whole_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches of ``examples`` (``(image, targets)`` each) that all hold ``batch_size``
    images, every example in one of them: the last is filled up with blank images (zero
    pixels, no box), and ``targets[REAL_IMAGES]`` says which images are real.

    A distribution strategy splits each global batch over its replicas in order, so a short
    last batch would leave the last replicas without an image (one image for two
    replicas, three for four), and the model's layers fail on an empty batch. A whole
    batch gives every replica its share of images, and the validation losses leave the
    blank ones out (core/train/trainer.py), so that each real image counts once.
    """
    marked = examples.map(lambda image, targets: (image, {**targets, REAL_IMAGES: tf.constant(True)}))
    image_spec, target_specs = marked.element_spec
    blank_targets = {key: tf.zeros(spec.shape, spec.dtype) for key, spec in target_specs.items()}
    blank_targets["classes"] = tf.fill(target_specs["classes"].shape, -1)  # no box: padding rows
    blank = tf.data.Dataset.from_tensors((tf.zeros(image_spec.shape, image_spec.dtype), blank_targets))
    # batch_size - 1 blanks complete any last batch; those left over make no whole batch and are dropped.
    return marked.concatenate(blank.repeat(batch_size - 1)).batch(batch_size, drop_remainder=True)


def positives_per_stride(batches: tf.data.Dataset, *, max_images: int) -> tuple[dict[str, int], int]:
    """How many positive cells (target objectness 1) each stride's targets hold in the
    first ``max_images`` images of ``batches``, and how many images were counted."""
    counts: dict[str, int] = {}
    images = 0
    for _, targets in batches:
        for key, target in targets.items():
            if key.isdigit():
                counts[key] = counts.get(key, 0) + int(tf.reduce_sum(tf.cast(target[..., 4] > 0, tf.int32)))
        images += int(tf.shape(targets["boxes"])[0])
        if images >= max_images:
            break
    return counts, images


def parallel_calls() -> int:
    """How many examples the pipeline prepares at once: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
    assignment: Assignment | None = None,
) -> tf.data.Dataset:
    """One dataset of :meth:`InputPipeline.dataset`; ``assignment`` says which anchors and
    cells each box trains (targets.py; None is YOLOv3's rule). To make one per epoch,
    keep an :class:`InputPipeline` instead, so its steps are traced once."""
    pipeline = InputPipeline(image=image, labels=labels, anchors=anchors, assignment=assignment)
    return pipeline.dataset(files, batch_size=batch_size, training=training, seed=seed, augment=augment)
