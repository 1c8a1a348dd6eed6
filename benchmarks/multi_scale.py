"""What multi-scale training costs per image against a fixed input size, graph trainer.

    python benchmarks/multi_scale.py [--plan kitti_simple] [--range 256 416] [--steps 8] [--rounds 3]

One batch of the plan's training data per size, kept in memory (the input pipeline is not
measured), and the graph trainer's step on the plan's model: at the dataset's image size,
and cycling through the multi-scale sizes of ``--range`` (the long side, as the plan's
``multi_scale`` takes it). Interleaved round by round in one process. Printed: images/s
(median over rounds), the per-image cost ratio multi-scale / fixed, the same ratio per
pixel (how much of the cost is the larger images themselves), and the step's traces and
their seconds: reduce_retracing relaxes the height and then the width, so at most three
traces serve every size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", default="kitti_simple")
    parser.add_argument("--range", type=int, nargs=2, default=(256, 416), metavar=("SMALLEST", "LARGEST"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()

    import keras
    import numpy as np

    from detplug.core.data.datasets import prepare_datasets
    from detplug.core.model.assemble import build_losses, build_model
    from detplug.core.plan.check import static_check, training_sizes
    from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components
    from detplug.core.train.batches import input_pipeline
    from detplug.core.train.training import default_cache_dir
    from detplug.plugins.trainers.graph import GraphTrainer
    from detplug.registry import Registry

    overrides = [f"train.multi_scale=[{args.range[0]}, {args.range[1]}]"]
    plan = load_plan(find_plan(args.plan), overrides=overrides)
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    period = plan.periods[0]
    sizes = training_sizes(checked, 0)
    prepared = prepare_datasets(checked, data_root=None, cache_dir=args.cache_dir or default_cache_dir(),
                                keys=[period.dataset])[period.dataset]
    pipeline = input_pipeline(checked)
    batch_size = period.settings.batch_size
    image = checked.chain.image
    base = (image.height, image.width)
    fixed_batch = next(iter(pipeline.dataset(prepared.train_files, batch_size=batch_size, training=True)))
    # One batch per size: every batch a size of its own (size_every=1) until all are drawn.
    by_size: dict[tuple[int, int], tuple] = {}
    for images, targets in pipeline.epochs(prepared.train_files, range(1, 50), batch_size=batch_size,
                                           training=True, sizes=sizes, size_every=1):
        by_size.setdefault(tuple(images.shape[1:3]), (images, targets))
        if len(by_size) == len(sizes):
            break
    scaled = [by_size[size] for size in sizes if size in by_size]

    def trainer() -> GraphTrainer:
        model = build_model(checked)
        optimizer = keras.optimizers.Adam(period.learning_rate)
        optimizer.build(model.trainable_variables)
        return GraphTrainer(model=model, losses=build_losses(checked, period.losses), optimizer=optimizer)

    runners = {"fixed": (trainer(), [fixed_batch]), "multi-scale": (trainer(), scaled)}
    traced = {}
    for name, (runner, batches) in runners.items():
        started = time.perf_counter()
        for images, targets in batches:  # every size once: the traces, timed apart
            float(runner.run_train_batch(images, targets)["total"])
        traced[name] = (runner.run_train_batch.experimental_get_tracing_count(), time.perf_counter() - started)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (runner, batches) in runners.items():
            started = time.perf_counter()
            for step in range(args.steps):
                images, targets = batches[step % len(batches)]
                parts = runner.run_train_batch(images, targets)
            float(parts["total"])
            rates[name].append(args.steps * batch_size / (time.perf_counter() - started))
    fixed, multi = statistics.median(rates["fixed"]), statistics.median(rates["multi-scale"])
    drawn = [size for size in sizes if size in by_size]
    pixels = np.mean([h * w for h, w in (drawn[s % len(drawn)] for s in range(args.steps))]) / (base[0] * base[1])
    print(f"plan {plan.name}: fixed {base[0]}x{base[1]}; multi-scale {len(drawn)} sizes "
          + ", ".join(f"{h}x{w}" for h, w in drawn))
    for name in runners:
        count, seconds = traced[name]
        print(f"  {name:<12} {statistics.median(rates[name]):7.1f} images/s   {count} traces in {seconds:.1f} s")
    print(f"cost per image, multi-scale / fixed: {fixed / multi:.2f}x; pixels per image {pixels:.2f}x; "
          f"cost per pixel {fixed / multi / pixels:.2f}x")


if __name__ == "__main__":
    main()
