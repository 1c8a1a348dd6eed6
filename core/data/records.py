"""The one TFRecord format every dataset writes, and its ``manifest.json``.

One example per image::

    image/encoded           PNG bytes of the image, already letterboxed to the plan's image_size
    image/filename          the source file name
    image/original_height   before letterboxing
    image/original_width
    objects/bbox            N*4 floats: y1, x1, y2, x2 normalised to the letterboxed image
    objects/class           N int64 class indices; -1 marks an ignore region (KITTI's DontCare)
    objects/truncated       N floats, as the source gives them
    objects/occluded        N floats

Converters build into a temporary sibling folder (:func:`staging`) and write
the manifest last, so a half-written conversion is never taken as done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import attrs
import numpy as np
import tensorflow as tf

from detplug.core.data.prepared import MANIFEST_NAME

#: Shards stay small enough to shuffle by file and to checksum quickly.
RECORDS_PER_SHARD = 256

#: The class index of an ignore region: no target, but it still masks objectness.
IGNORE_CLASS = -1


@attrs.frozen(eq=False)
class Record:
    """One image and its boxes, ready to serialise."""

    png: bytes
    filename: str
    original_size: tuple[int, int]
    boxes: np.ndarray  # (N, 4) float32, y1 x1 y2 x2 in [0, 1] of the letterboxed image
    classes: np.ndarray  # (N,) int64, IGNORE_CLASS for ignore regions
    truncated: np.ndarray  # (N,) float32
    occluded: np.ndarray  # (N,) float32


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
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/original_height": tf.io.FixedLenFeature([], tf.int64),
    "image/original_width": tf.io.FixedLenFeature([], tf.int64),
    "objects/bbox": tf.io.VarLenFeature(tf.float32),
    "objects/class": tf.io.VarLenFeature(tf.int64),
    "objects/truncated": tf.io.VarLenFeature(tf.float32),
    "objects/occluded": tf.io.VarLenFeature(tf.float32),
}


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """One serialised example to dense tensors (graph-safe): ``png`` (bytes),
    ``filename``, ``boxes`` (N, 4) y1 x1 y2 x2 float32, ``classes`` (N,) int32."""
    example = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "png": example["image/encoded"],
        "filename": example["image/filename"],
        "boxes": tf.reshape(tf.sparse.to_dense(example["objects/bbox"]), [-1, 4]),
        "classes": tf.cast(tf.sparse.to_dense(example["objects/class"]), tf.int32),
    }


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_split(
    directory: Path,
    split: str,
    records: Iterable[Record],
    count: int,
    classes: Sequence[str],
    *,
    records_per_shard: int = RECORDS_PER_SHARD,
) -> dict[str, Any]:
    """Write ``count`` records as shards ``<split>-IIIII-of-NNNNN.tfrecord`` and return
    the manifest's entry for the split (images, boxes_per_class, ignore_regions, shards)."""
    shard_count = max(1, -(-count // records_per_shard))
    boxes_per_class = dict.fromkeys(classes, 0)
    ignore_regions = 0
    shards: list[dict[str, Any]] = []
    written = 0
    writer = None
    try:
        for record in records:
            if written % records_per_shard == 0:
                if writer is not None:
                    writer.close()
                    shards[-1]["sha256"] = file_sha256(directory / shards[-1]["file"])
                name = shard_name(split, len(shards), shard_count)
                writer = tf.io.TFRecordWriter(str(directory / name))
                shards.append({"file": name, "records": 0, "sha256": ""})
            writer.write(serialize(record))
            shards[-1]["records"] += 1
            written += 1
            for index in record.classes:
                if index == IGNORE_CLASS:
                    ignore_regions += 1
                else:
                    boxes_per_class[classes[index]] += 1
    finally:
        if writer is not None:
            writer.close()
    if shards:
        shards[-1]["sha256"] = file_sha256(directory / shards[-1]["file"])
    if written != count or len(shards) != shard_count:
        # The shard names promised "-of-N"; a different count is a converter bug.
        raise RuntimeError(
            f"{split}: expected {count} records in {shard_count} shards, wrote {written} in {len(shards)}"
        )
    return {"images": written, "boxes_per_class": boxes_per_class, "ignore_regions": ignore_regions, "shards": shards}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temp file + os.replace): it marks the folder as done."""
    path = Path(directory) / MANIFEST_NAME
    temporary = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """Build into a temporary sibling of ``final``; on success move it into place.

    An existing ``final`` without a manifest (an interrupted or damaged
    conversion) is replaced. If another process finished ``final`` meanwhile,
    its folder is kept and ours is discarded: both hold the same records.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{os.getpid()}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if final.exists() and not (final / MANIFEST_NAME).is_file():
        shutil.rmtree(final)
    try:
        os.rename(temporary, final)
    except OSError:
        if not (final / MANIFEST_NAME).is_file():
            raise
        shutil.rmtree(temporary, ignore_errors=True)
