"""Run in a fresh process with DETPLUG_CPU_REPLICAS=2 by test_distribute.py: the CPU
must be split before TensorFlow sets up its devices, which pytest's process has done.

    python tests/replica_steps.py PLAN CACHE_DIR OUT_JSON MODE [KEY=VALUE ...]

MODE ``equality``: one training step of the tiny plan under the default strategy and
under MirroredStrategy over 2 CPU replicas, from the same initial weights and global
batch; then checkpoints written under each strategy restored under the other. MODE
``mixed_float16``: one mirrored step under that policy, with loss scaling. MODE ``xla``:
what jit_compile does under a 1-replica and a 2-replica mirrored strategy. MODE
``validation``: the validation losses and the evaluation's detections of val splits of
1, 3 and 5 images (batches of 4) under one device and under 2 replicas, the losses also
computed on the images alone; and a batch_size below the replicas.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(plan_path: str, cache_dir: str, out_path: str, mode: str, *overrides: str) -> None:
    import keras
    import tensorflow as tf

    from detplug.core.data.datasets import prepare_datasets
    from detplug.core.data.pipeline import make_dataset
    from detplug.core.errors import DetplugError
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import load_plan, resolve_components
    from detplug.core.train.session import TrainingSession, configure_tensorflow
    from detplug.registry import Registry

    overrides = [*overrides, *(["train.mixed_precision=mixed_float16"] if mode == "mixed_float16" else [])]
    if mode == "xla":
        overrides.append("train.trainer.jit_compile=true")
    checked = static_check(plan := load_plan(Path(plan_path), overrides), resolve_components(plan, Registry.discover()))
    default = configure_tensorflow(plan.train.run)
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    assert len(cpus) == 2, cpus
    prepared = prepare_datasets(checked, data_root=None, cache_dir=cache_dir)["synth"]
    chain, period = checked.chain, plan.periods[0]
    dataset = make_dataset(prepared.train_files, image=chain.image, labels=chain.labels, anchors=chain.anchors,
                           batch_size=4, training=True, seed=0)
    results: dict = {}

    def session_under(strategy) -> TrainingSession:
        keras.utils.set_random_seed(0)  # the same initial weights every time
        return TrainingSession(checked, strategy=strategy)

    def one_step(session: TrainingSession) -> dict:
        trainer = session.use_period(period, index=0)
        images, targets = next(iter(session.distribute(dataset)))
        return {name: float(value) for name, value in trainer.run_train_batch(images, targets).items()}

    def numpy(variable) -> np.ndarray:
        return tf.convert_to_tensor(variable.value if isinstance(variable, keras.Variable) else variable).numpy()

    def weights(session: TrainingSession, trainable: bool = False) -> list[np.ndarray]:
        return [numpy(v) for v in (session.model.trainable_weights if trainable else session.model.weights)]

    def replicas_agree(session: TrainingSession) -> bool:
        return all(
            np.array_equal(numpy(copy), numpy(v)) for v in session.model.weights
            for copy in session.strategy.experimental_local_results(v.value)
        )

    if mode == "xla":
        for replicas in (1, 2):
            strategy = tf.distribute.MirroredStrategy(cpus[:replicas])
            try:
                results[f"replicas{replicas}"] = one_step(session_under(strategy))["total"]
            except DetplugError as error:
                results[f"replicas{replicas}"] = str(error)
        Path(out_path).write_text(json.dumps(results))
        return

    mirrored = tf.distribute.MirroredStrategy(cpus)
    if mode == "validation":
        results = validation(checked, prepared, {"one": default, "two": mirrored}, session_under,
                             Path(out_path).parent)
        Path(out_path).write_text(json.dumps(results))
        return
    if mode == "mixed_float16":
        session = session_under(mirrored)
        before = weights(session, trainable=True)
        # Steps whose float16 gradients overflow are skipped while the loss scale halves,
        # until the scale fits; then the weights move.
        results["parts"], changed = [], 0
        while not changed and len(results["parts"]) < 20:
            results["parts"].append(one_step(session))
            changed = sum(not np.array_equal(a, b) for a, b in zip(before, weights(session, trainable=True)))
        results["changed"] = changed
        results["trainable"] = len(before)
        results["loss_scale"] = float(numpy(session.optimizer.dynamic_scale))
        results["replicas_agree"] = replicas_agree(session)
        Path(out_path).write_text(json.dumps(results))
        return

    one, two = session_under(default), session_under(mirrored)
    initial = weights(one)
    results["initial_difference"] = max(float(np.abs(a - b).max()) for a, b in zip(initial, weights(two)))
    results["losses"] = [one_step(one), one_step(two)]
    results["replicas"] = [one.strategy.num_replicas_in_sync, two.strategy.num_replicas_in_sync]
    results["synchronized"] = sum(getattr(layer, "synchronized", False) for layer in _layers(two.model))
    # Each weight's change in one step, by one replica and by two: equal up to float rounding.
    results["step_difference"] = max(float(np.abs((a - c) - (b - c)).max())
                                     for a, b, c in zip(weights(one), weights(two), initial))
    results["step_size"] = max(float(np.abs(a - c).max()) for a, c in zip(weights(one), initial))
    results["changed"] = sum(not np.array_equal(a, c) for a, c in zip(weights(one), initial))
    results["weights"] = len(initial)
    results["allclose"] = all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(weights(one), weights(two)))
    results["replicas_agree"] = replicas_agree(two)

    # Checkpoints across strategies, both ways: written by one, read into a fresh session of the other.
    folder = Path(out_path).parent
    for name, writer, reader_strategy in (("default_to_mirrored", one, mirrored), ("mirrored_to_default", two, default)):
        writer.mark(epoch=1, period=0)
        prefix = writer.checkpoint().write(str(folder / name / "ckpt"))
        reader = session_under(reader_strategy)
        reader.use_period(period, index=0)
        reader.restore(prefix, writer.checkpoint_meta())
        results[name] = {
            "weights_equal": all(np.array_equal(a, b) for a, b in zip(weights(writer), weights(reader))),
            "optimizer_step": [int(numpy(writer.optimizer.iterations)), int(numpy(reader.optimizer.iterations))],
            "slots_equal": all(np.array_equal(numpy(a), numpy(b))
                               for a, b in zip(writer.optimizer.variables, reader.optimizer.variables)),
            "replicas_agree": replicas_agree(reader),
        }
    Path(out_path).write_text(json.dumps(results))


def validation(checked, prepared, strategies: dict, session_under, folder: Path) -> dict:
    """See the module docstring (MODE ``validation``)."""
    import attrs
    import tensorflow as tf

    from detplug.core.data.pipeline import REAL_IMAGES, count_steps
    from detplug.core.errors import DetplugError
    from detplug.core.evaluate.collect import collect
    from detplug.core.train.training import input_pipeline

    period = checked.plan.periods[0]
    batch_size = period.settings.batch_size
    splits = {}
    for count in (1, 3, 5):  # the tiny plan's val split has 5 images
        splits[count] = folder / f"val-{count}.tfrecord"
        with tf.io.TFRecordWriter(str(splits[count])) as writer:
            for record in tf.data.TFRecordDataset([str(f) for f in prepared.val_files]).take(count):
                writer.write(record.numpy())
    pipeline = input_pipeline(checked.first())
    results: dict = {"batch_size": batch_size}
    for name, strategy in strategies.items():
        session = session_under(strategy)
        trainer = session.use_period(period, index=0)
        results[name] = {}
        for count, path in splits.items():
            batches = session.distribute(pipeline.dataset([path], batch_size=batch_size, training=False))
            val = trainer.validate(iter(batches), count_steps(count, batch_size, training=False), epoch=1)
            truths, detections, _ = collect(session.model, session.view, [path], draw=0)
            results[name][count] = {
                "val": {part: value for part, value in val.items() if part not in ("seconds", "images_per_second")},
                "truths": len(truths),
                "detections": [[found.boxes.tolist(), found.scores.tolist()] for found in detections],
            }
            if name == "one":
                # The same figures from the images alone, batched by hand: the mean over the
                # batches of each batch's mean loss, no blank image anywhere.
                images = [(image, targets) for image, targets in pipeline.dataset([path], batch_size=1, training=False)]
                means = []
                for start in range(0, count, batch_size):
                    batch = images[start:start + batch_size]
                    pixels = tf.concat([image for image, _ in batch], axis=0)
                    targets = {key: tf.concat([t[key] for _, t in batch], axis=0)
                               for key in batch[0][1] if key != REAL_IMAGES}
                    _, parts = trainer.losses(session.model(pixels, training=False), targets)
                    means.append({part: float(value) for part, value in parts.items()})
                results.setdefault("alone", {})[count] = {part: sum(m[part] for m in means) / len(means)
                                                          for part in means[0]}
    # A global batch smaller than the replicas is refused before anything runs.
    session = session_under(strategies["two"])
    small = attrs.evolve(period, settings=attrs.evolve(period.settings, batch_size=1))
    try:
        session.use_period(small, index=0)
        results["batch_of_one"] = "accepted"
    except DetplugError as error:
        results["batch_of_one"] = str(error)
    return results


def _layers(layer):
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _layers(inner)


if __name__ == "__main__":
    main(*sys.argv[1:])
