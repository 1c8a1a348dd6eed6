"""Workers that read their own shards ([train] shard_by = "file") and the chief's metric.

The two-worker run that trains this way is in test_distribute.py; these are its parts:
which shards each worker reads, epochs of an exact number of steps, and the check that
there is a shard per worker.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_tiny_plan

from detplug.core.errors import DataError
from detplug.core.plan.check import static_check
from detplug.core.plan.plan_file import load_plan, resolve_components
from detplug.core.train.distribute import WorkerRole, split_shards
from detplug.registry import Registry


def test_shards_go_to_workers_as_evenly_in_records_as_whole_files_allow():
    # Largest first, each to the worker with the fewest records so far: 256 -> w0, 256 -> w1,
    # 256 -> w0 (tie 256/256, lower worker), 100 -> w1 (256 < 512).
    assert split_shards([256, 256, 256, 100], 2) == [[0, 2], [1, 3]]
    # The short last shard goes where it evens things out: 5 -> w0, 5 -> w1, 5 -> w2, 2 -> w0.
    assert split_shards([5, 5, 5, 2], 3) == [[0, 3], [1], [2]]
    # Sizes out of order: 9 -> w0, 7 -> w1, 4 -> w1 (7 < 9), 1 -> w0 (9 < 11).
    assert split_shards([4, 9, 1, 7], 2) == [[1, 2], [0, 3]]
    assert split_shards([3], 1) == [[0]]
    with pytest.raises(ValueError, match="2 shards cannot give each of 3 workers one"):
        split_shards([3, 3], 3)


def checked_tiny(tmp_path, *overrides):
    plan = load_plan(write_tiny_plan(tmp_path), overrides=overrides)
    return static_check(plan, resolve_components(plan, Registry.discover()))


def test_shard_by_file_outside_multi_worker_is_a_warning_and_a_bad_value_names_the_choices(tmp_path):
    checked = checked_tiny(tmp_path, "train.shard_by=file")
    assert any("shard_by = \"file\" gives the workers of a multi_worker run train shards of their own; under "
               "strategy 'default' one process reads them all" in warning for warning in checked.warnings)
    under_multi_worker = checked_tiny(tmp_path, "train.shard_by=file", "train.strategy=multi_worker")
    assert not any("gives the workers" in warning for warning in under_multi_worker.warnings)
    with pytest.raises(Exception, match="shard_by"):
        checked_tiny(tmp_path, "train.shard_by=rows")


@pytest.mark.slow(seconds=20)
def test_records_per_shard_a_shard_per_worker_and_epochs_of_exactly_the_steps_asked(tmp_path):
    from detplug.core.data.datasets import prepare_datasets
    from detplug.core.train.batches import check_file_sharding, input_pipeline

    checked = checked_tiny(tmp_path, "datasets.synth.images=16", "datasets.synth.records_per_shard=3")
    prepared = prepare_datasets(checked, data_root=None, cache_dir=tmp_path / "cache")["synth"]
    train = prepared.images("train")
    assert prepared.shard_records("train") == [3] * (train // 3) + ([train % 3] if train % 3 else [])
    assert len(prepared.train_files) == -(-train // 3)

    check_file_sharding(checked.plan, {"synth": prepared}, workers=len(prepared.train_files))
    workers = len(prepared.train_files) + 1
    with pytest.raises(DataError, match=rf"shard_by = \"file\" gives each of the {workers} workers train shards "
                                        rf"of its own, but dataset 'synth' has {workers - 1} \({train} images in "
                                        rf".*\); set the dataset's records_per_shard to at most {train // workers}, "
                                        rf"or use shard_by = \"data\""):
        check_file_sharding(checked.plan, {"synth": prepared}, workers=workers)

    pipeline = input_pipeline(checked)

    def epochs(files, **options):
        return [(images.numpy(), targets["boxes"].numpy()) for images, targets in pipeline.epochs(
            files, [1, 2], batch_size=2, training=True, seed=5, **options)]

    whole = epochs(prepared.train_files)
    assert len(whole) == 2 * (train // 2)
    # Fewer steps than the records give: each epoch is cut at its steps, its order kept.
    cut = epochs(prepared.train_files, steps_per_epoch=2)
    assert len(cut) == 4
    for got, expected in zip(cut, whole[:2] + whole[train // 2:train // 2 + 2]):
        np.testing.assert_array_equal(got[1], expected[1])
    # One shard of 3 images and 4 steps of 2: the epoch reads its records again from the start.
    one = epochs(prepared.train_files[:1], steps_per_epoch=4)
    assert len(one) == 8
    first_epoch_boxes = np.concatenate([boxes for _, boxes in one[:4]])
    np.testing.assert_array_equal(first_epoch_boxes[3:6], first_epoch_boxes[:3])


def test_the_chiefs_numbers_reach_every_worker_and_the_others_numbers_do_not_count():
    import tensorflow as tf

    from detplug.core.train.distribute import from_chief

    strategy = tf.distribute.get_strategy()
    assert from_chief(strategy, WorkerRole())([1.0, 0.4375]) == [1.0, 0.4375]
    other = WorkerRole(task_type="worker", index=1, workers=2)
    assert from_chief(strategy, other)([1.0, 0.4375]) == [0.0, 0.0]
