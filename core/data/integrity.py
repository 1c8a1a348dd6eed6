"""Damaged records: found on demand (``--prepare --verify``) or while training.

TensorFlow reports a truncated or corrupt TFRecord (its CRC fails) as a
``DataLossError`` that does not say which file it came from. :func:`guarded`
wraps the batches a trainer iterates and turns that into a DataError naming
the shard, found by re-reading the shards.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import tensorflow as tf

from detplug.core.data import records
from detplug.core.data.prepared import SPLITS, PreparedData
from detplug.core.errors import DataError

_Element = TypeVar("_Element")

#: Records parsed at once while verifying.
_VERIFY_BATCH = 256


def _reason(error: tf.errors.OpError) -> str:
    """TensorFlow's message without its op and function-node decorations."""
    found = re.search(r"(corrupted record at \d+|truncated record at \d+)", error.message)
    return found.group(1) if found else error.message.split("[Op:")[0].split("}}")[-1].strip()


def read_shard(path: str | Path) -> tuple[int, str | None]:
    """How many records ``path`` holds that parse, and why reading stopped early (None: it did not)."""
    count, pending = 0, []
    try:
        # One by one, so a damaged record is counted exactly; parsed in batches, for speed.
        for serialized in tf.data.TFRecordDataset(str(path)):
            pending.append(serialized)
            if len(pending) == _VERIFY_BATCH:
                records.parse_batch(tf.stack(pending))
                count, pending = count + len(pending), []
        if pending:
            records.parse_batch(tf.stack(pending))
            count += len(pending)
    except tf.errors.DataLossError as error:
        if pending:
            try:
                records.parse_batch(tf.stack(pending))
                count += len(pending)
            except tf.errors.InvalidArgumentError:
                pass
        return count, _reason(error)
    except tf.errors.InvalidArgumentError as error:
        return count, f"a record is not a detplug example ({_reason(error)})"
    return count, None


def find_damaged_shard(files: Sequence[str | Path]) -> tuple[str, str] | None:
    """The first of ``files`` that cannot be read to its end, and why; None if all can."""
    for path in files:
        if not Path(path).is_file():
            return str(path), "the file is missing"
        _, reason = read_shard(path)
        if reason is not None:
            return str(path), reason
    return None


def guarded(dataset: Iterable[_Element], files: Sequence[str | Path]) -> Iterator[_Element]:
    """Iterate ``dataset`` (built from ``files``); a damaged shard raises a DataError naming it.

    The trainer iterates ``guarded(make_dataset(files, ...), files)`` in place of
    the dataset itself; nothing else changes and no batch is held back.
    """
    iterator = iter(dataset)
    while True:
        with naming_damaged_shards(files):
            try:
                element = next(iterator)
            except StopIteration:
                return
        yield element


@contextlib.contextmanager
def naming_damaged_shards(files: Sequence[str | Path]) -> Iterator[None]:
    """Inside, reading a damaged shard of ``files`` (``tf.errors.DataLossError``, also from
    inside a tf.function that reads batches) raises a DataError naming the shard."""
    try:
        yield
    except tf.errors.DataLossError as error:
        damaged = find_damaged_shard(files)
        if damaged is None:  # cannot tell which: name them all rather than guess
            raise DataError(
                f"a TFRecord shard of {', '.join(map(str, files))} is damaged ({_reason(error)}); delete the "
                f"records folder and run again to rebuild it"
            ) from None
        path, reason = damaged
        raise DataError(
            f"TFRecord shard {path} is damaged ({reason}); delete its folder {Path(path).parent} and run "
            f"again to rebuild it"
        ) from None


def verify_prepared(prepared: PreparedData) -> list[str]:
    """Re-read every shard against the manifest: present, same sha256, the listed number
    of records, every record readable. One sentence per problem; empty when all is well."""
    problems = []
    for split in SPLITS:
        entry = prepared.manifest["splits"][split]
        total = 0
        for shard in entry["shards"]:
            path = prepared.directory / shard["file"]
            if not path.is_file():
                problems.append(f"{path} is missing")
                continue
            digest = records.file_sha256(path)
            if digest != shard["sha256"]:
                problems.append(f"{path} has sha256 {digest[:16]}..., the manifest lists {shard['sha256'][:16]}...")
            count, reason = read_shard(path)
            total += count
            if reason is not None:
                problems.append(f"{path} is damaged after {count} records ({reason})")
            elif count != shard["records"]:
                problems.append(f"{path} holds {count} records, the manifest lists {shard['records']}")
        if not problems and total != entry["images"]:
            problems.append(f"{prepared.directory}: the {split} shards hold {total} records, the manifest lists "
                            f"{entry['images']} images")
    return problems
