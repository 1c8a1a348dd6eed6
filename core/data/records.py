"""The one TFRecord format every dataset writes, and its ``manifest.json``.

One example per image, or per tile of an image when the dataset is tiled (``tile``)::

    image/encoded           PNG bytes of the image (or tile), already letterboxed to the plan's image_size
    image/filename          the image's key: its name (or path) within the source; a tile's adds
                            ``@top_left`` (its window's first row and column)
    image/original_height   before letterboxing (a tile's own size)
    image/original_width
    image/source_key        the key of the source image the pixels come from
    image/window            4 ints: top, left, height, width of those pixels in the source image
                            (0, 0 and the image's size when it was not cut)
    objects/bbox            N*4 floats: y1, x1, y2, x2 normalised to the letterboxed image
    objects/class           N int64 class indices; -1 marks an ignore region (KITTI's DontCare, COCO's crowds)
    objects/truncated       N floats, as the source gives them (0 where it has none)
    objects/occluded        N floats
    objects/source_bbox     N*4 floats: x1, y1, x2, y2 in source pixels, as labelled
                            (KITTI's difficulty levels use the original box height); in a
                            tile's pixels for a tile, clipped to it

Converters build into a temporary sibling folder (core/data/staging.py) and write
the manifest last, so a half-written conversion is never taken as done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from detplug.core.data.prepared import MANIFEST_NAME
from detplug.core.data.source import IGNORE_CLASS, Record

__all__ = [
    "IGNORE_CLASS", "Record", "ShardWriter", "parse", "parse_all", "parse_batch", "serialize",
    "write_manifest",
]

#: Shards stay small enough to shuffle by file and to checksum quickly.
RECORDS_PER_SHARD = 256


def _floats(values: Any) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).reshape(-1)))


def _ints(values: Any) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).reshape(-1)))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialize(record: Record) -> bytes:
    height, width = record.original_size
    features = {
        "image/encoded": _bytes(record.png),
        "image/filename": _bytes(record.filename.encode("utf-8")),
        "image/original_height": _ints([height]),
        "image/original_width": _ints([width]),
        "objects/bbox": _floats(record.boxes),
        "objects/class": _ints(record.classes),
        "objects/truncated": _floats(record.truncated),
        "objects/occluded": _floats(record.occluded),
        "objects/source_bbox": _floats(record.source_boxes),
        "image/source_key": _bytes(record.source_key.encode("utf-8")),
        "image/window": _ints(record.window),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


#: What the input pipeline needs; parsing only these keeps it fast.
_TRAINING_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "objects/bbox": tf.io.VarLenFeature(tf.float32),
    "objects/class": tf.io.VarLenFeature(tf.int64),
}

_ALL_FEATURES = {
    **_TRAINING_FEATURES,
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/original_height": tf.io.FixedLenFeature([], tf.int64),
    "image/original_width": tf.io.FixedLenFeature([], tf.int64),
    "objects/truncated": tf.io.VarLenFeature(tf.float32),
    "objects/occluded": tf.io.VarLenFeature(tf.float32),
    "objects/source_bbox": tf.io.VarLenFeature(tf.float32),
    "image/source_key": tf.io.FixedLenFeature([], tf.string),
    "image/window": tf.io.FixedLenFeature([4], tf.int64),
}


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """What training reads of one serialised example (graph-safe): ``png`` (bytes),
    ``boxes`` (N, 4) y1 x1 y2 x2 float32, ``classes`` (N,) int32."""
    example = tf.io.parse_single_example(serialized, _TRAINING_FEATURES)
    return {
        "png": example["image/encoded"],
        "boxes": tf.reshape(tf.sparse.to_dense(example["objects/bbox"]), [-1, 4]),
        "classes": tf.cast(tf.sparse.to_dense(example["objects/class"]), tf.int32),
    }


def parse_all(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Every feature (for evaluation and inspection): :func:`parse`'s plus ``filename``,
    ``original_size`` (2,), ``truncated``, ``occluded`` (N,), ``source_boxes`` (N, 4)
    x1 y1 x2 y2 in source pixels, ``source_key`` and ``window`` (4,) top left height width."""
    example = tf.io.parse_single_example(serialized, _ALL_FEATURES)
    dense = {key: tf.sparse.to_dense(value) for key, value in example.items() if isinstance(value, tf.SparseTensor)}
    return {
        "png": example["image/encoded"],
        "filename": example["image/filename"],
        "original_size": tf.stack([example["image/original_height"], example["image/original_width"]]),
        "boxes": tf.reshape(dense["objects/bbox"], [-1, 4]),
        "classes": tf.cast(dense["objects/class"], tf.int32),
        "truncated": dense["objects/truncated"],
        "occluded": dense["objects/occluded"],
        "source_boxes": tf.reshape(dense["objects/source_bbox"], [-1, 4]),
        "source_key": example["image/source_key"],
        "window": example["image/window"],
    }


def parse_batch(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """A batch of serialised examples parsed with every feature (sparse where variable):
    InvalidArgumentError if one is not a detplug example."""
    return tf.io.parse_example(serialized, _ALL_FEATURES)


def read_boxes(files: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Every box of the records in ``files``: (N, 4) y1 x1 y2 x2 ratios of the image (float64)
    and (N,) classes (IGNORE_CLASS for ignore regions), without decoding a single image."""
    boxes, classes = [], []
    for example in tf.data.TFRecordDataset([str(path) for path in files]).map(parse):
        boxes.append(example["boxes"].numpy().astype(np.float64).reshape(-1, 4))
        classes.append(example["classes"].numpy().astype(np.int64).reshape(-1))
    if not boxes:
        return np.zeros((0, 4), np.float64), np.zeros((0,), np.int64)
    return np.concatenate(boxes), np.concatenate(classes)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ShardWriter:
    """Writes one split's records into shards of ``records_per_shard``.

    How many records a split ends with is known only at the end (bad images may
    be skipped), so shards are written under temporary names and renamed to
    ``<split>-IIIII-of-NNNNN.tfrecord`` by :meth:`finish`.
    """

    def __init__(
        self, directory: Path, split: str, classes: Sequence[str], *, records_per_shard: int | None = None
    ) -> None:
        self.directory, self.split, self.classes = Path(directory), split, tuple(classes)
        self.records_per_shard = records_per_shard or RECORDS_PER_SHARD
        self.boxes_per_class = dict.fromkeys(self.classes, 0)
        self.ignore_regions = 0
        self.written = 0
        self._counts: list[int] = []
        self._writer: tf.io.TFRecordWriter | None = None

    def _temporary(self, index: int) -> Path:
        return self.directory / f".{self.split}-{index:05d}.partial"

    def write(self, record: Record) -> None:
        if self.written % self.records_per_shard == 0:
            self._close()
            self._writer = tf.io.TFRecordWriter(str(self._temporary(len(self._counts))))
            self._counts.append(0)
        # The first record (written == 0) opened a shard, and every full one opens the next.
        assert self._writer is not None, "write after finish() or close()"
        self._writer.write(serialize(record))
        self._counts[-1] += 1
        self.written += 1
        for index in record.classes:
            if index == IGNORE_CLASS:
                self.ignore_regions += 1
            else:
                self.boxes_per_class[self.classes[index]] += 1

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> dict[str, Any]:
        """Close, name the shards and return the manifest's entry for the split
        (images, boxes_per_class, ignore_regions, shards with file, records and sha256)."""
        self._close()
        shards = []
        for index, count in enumerate(self._counts):
            name = shard_name(self.split, index, len(self._counts))
            os.replace(self._temporary(index), self.directory / name)
            shards.append({"file": name, "records": count, "bytes": (self.directory / name).stat().st_size,
                           "sha256": file_sha256(self.directory / name)})
        return {
            "images": self.written,
            "boxes_per_class": self.boxes_per_class,
            "ignore_regions": self.ignore_regions,
            "shards": shards,
        }

    def close(self) -> None:
        """Close the open shard (also on failure, before the staging folder is removed)."""
        self._close()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temp file + os.replace): it marks the folder as done."""
    path = Path(directory) / MANIFEST_NAME
    temporary = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path

