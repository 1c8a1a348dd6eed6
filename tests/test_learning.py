"""Targets, decoder and losses agree: a tiny model overfits a handful of synthetic images."""

from __future__ import annotations

import keras
import pytest

from helpers import write_tiny_plan
from detplug.core.assemble import build_losses, build_model
from detplug.core.check import static_check
from detplug.core.data.pipeline import make_dataset
from detplug.core.plan import load_plan, resolve_components
from detplug.plugins.trainers.graph import GraphTrainer
from detplug.registry import Registry, load_factory


@pytest.mark.slow(seconds=43)
def test_training_loss_on_a_handful_of_synthetic_images_falls_by_half(tmp_path):
    plan = load_plan(write_tiny_plan(tmp_path, images=10))
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    dataset_item = checked.resolved["datasets.synth"]
    prepared = load_factory(dataset_item.component)(dataset_item.params, data_root=None, cache_dir=tmp_path)
    keras.utils.set_random_seed(0)
    trainer = GraphTrainer(model=build_model(checked), losses=build_losses(checked, "standard"),
                           optimizer=keras.optimizers.Adam(3e-3))
    chain = checked.chain
    epochs = []
    for epoch in range(20):
        batches = make_dataset(prepared.train_files, image=chain.image, labels=chain.labels, anchors=chain.anchors,
                               batch_size=4, training=True, seed=epoch)
        epochs.append(trainer.train_epoch(batches, 2, epoch=epoch + 1))
    first, last = epochs[0], epochs[-1]
    assert last["total"] <= 0.5 * first["total"]
    # Every part learns, not only the no-object term that dominates the sum; box
    # regression to a high IoU takes more steps than scores do.
    assert last["objectness"] <= 0.5 * first["objectness"]
    assert last["category"] <= 0.5 * first["category"]
    assert last["ciou"] <= 0.9 * first["ciou"]
