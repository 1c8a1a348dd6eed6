"""Multi-scale training: the sizes drawn, their check, the batches and the bounded traces."""

from __future__ import annotations

import pytest
from helpers import run_cli, write_tiny_plan

from detplug.core.errors import CheckError, PlanError
from detplug.core.plan.check import static_check, training_sizes
from detplug.core.plan.multi_scale import multi_scale_sizes
from detplug.core.plan.plan_file import load_plan, resolve_components
from detplug.core.plan.specs import ImageSpec
from detplug.registry import Registry


def test_sizes_are_multiples_of_the_largest_stride_with_the_aspect_kept():
    # KITTI at 96x320: the long side runs 320..608 by 32; the short side is 96 x side/320
    # rounded up to a multiple of 32 (105.6 -> 128, 134.4 -> 160, 163.2 -> 192).
    assert multi_scale_sizes(ImageSpec(96, 320), (320, 608), 32) == [
        (96, 320), (128, 352), (128, 384), (128, 416), (160, 448), (160, 480), (160, 512), (192, 544),
        (192, 576), (192, 608)]
    assert multi_scale_sizes(ImageSpec(416, 416), (300, 400), 32) == [(320, 320), (352, 352), (384, 384)]
    assert multi_scale_sizes(ImageSpec(320, 96), (60, 70), 32) == [(64, 32)]
    assert multi_scale_sizes(ImageSpec(416, 416), (330, 340), 32) == []


def checked_tiny(tmp_path, *overrides):
    plan = load_plan(write_tiny_plan(tmp_path), overrides=overrides)
    return static_check(plan, resolve_components(plan, Registry.discover()))


def test_the_check_validates_every_size(tmp_path):
    checked = checked_tiny(tmp_path, "train.multi_scale=[64, 160]", "periods.1.multi_scale=[]")
    assert training_sizes(checked, 0) == [(64, 64), (64, 96), (96, 128), (128, 160)]
    assert training_sizes(checked, 1) == []
    with pytest.raises(CheckError, match=r"multi_scale of period 1 .*\[100, 120\] holds no multiple of the "
                                         r"largest stride 32"):
        checked_tiny(tmp_path, "train.multi_scale=[100, 120]")
    with pytest.raises(PlanError, match=r"train.multi_scale: 'multi_scale' must be \[smallest, largest\]"):
        checked_tiny(tmp_path, "train.multi_scale=[160, 64]")


@pytest.mark.slow(seconds=60)
def test_batches_change_size_every_n_batches_and_the_graph_step_traces_a_bounded_number_of_times(tmp_path):
    import numpy as np
    import tensorflow as tf

    from detplug.core.data.datasets import prepare_datasets
    from detplug.core.model.assemble import build_losses, build_model
    from detplug.core.train.batches import input_pipeline
    from detplug.plugins.trainers.graph import GraphTrainer

    checked = checked_tiny(tmp_path, "datasets.synth.images=40", "train.multi_scale=[64, 160]")
    sizes = training_sizes(checked, 0)
    prepared = prepare_datasets(checked, data_root=None, cache_dir=tmp_path / "cache")["synth"]
    pipeline = input_pipeline(checked)
    batches = list(pipeline.epochs(prepared.train_files, [1, 2], batch_size=4, training=True, seed=3, sizes=sizes,
                                   size_every=2))
    fixed = list(pipeline.epochs(prepared.train_files, [1, 2], batch_size=4, training=True, seed=3))
    drawn = [tuple(images.shape[1:3]) for images, _ in batches]
    assert set(drawn) <= set(sizes) and len(set(drawn)) >= 3, drawn
    # Eight batches an epoch: the size changes only between pairs of batches.
    assert all(drawn[i] == drawn[i + 1] for i in range(0, len(drawn), 2))
    for (images, targets), (_, fixed_targets) in zip(batches, fixed):
        height, width = images.shape[1:3]
        for stride in (8, 16, 32):
            assert targets[str(stride)].shape[1:3] == (height // stride, width // stride)
        # Boxes are ratios of the image: resizing it moves none of them.
        np.testing.assert_array_equal(targets["boxes"].numpy(), fixed_targets["boxes"].numpy())
        positives = lambda t: int(tf.reduce_sum(tf.cast(sum(  # noqa: E731
            tf.reduce_sum(t[str(s)][..., 4]) for s in (8, 16, 32)) > 0, tf.int32)))
        assert positives(targets) == positives(fixed_targets)

    model = build_model(checked)
    trainer = GraphTrainer(model=model, losses=build_losses(checked, "standard"),
                           optimizer=tf.keras.optimizers.Adam(1e-3))
    trainer.optimizer.build(model.trainable_variables)
    for images, targets in batches:
        parts = trainer.run_train_batch(images, targets)
        assert np.isfinite(float(parts["total"]))
    # The first size traces the step; reduce_retracing then relaxes the axes that differ (the
    # height, the width: at most two more traces), and the relaxed trace serves every size.
    assert trainer.run_train_batch.experimental_get_tracing_count() <= 3


def test_check_prints_the_sizes_and_builds_the_model_at_each(tmp_path):
    result = run_cli("--plan", str(write_tiny_plan(tmp_path)), "--check", "--set", "train.multi_scale=[64, 160]",
                     "--set", "periods.1.multi_scale=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "period 1: synth: image 64x96x3" in result.stdout
    assert "multi-scale every 10 batches: 64x64, 64x96, 96x128, 128x160" in result.stdout
    assert "period 2: synth: image 64x96x3" in result.stdout and result.stdout.count("multi-scale every") == 1
    assert "symbolic Keras model: every declared spec matches the built tensor shapes at 4 multi-scale sizes" \
        in result.stdout
