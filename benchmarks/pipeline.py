"""How fast data is converted and fed, next to how fast the trainer eats it (kitti_simple).

    python benchmarks/pipeline.py [--images 256] [--steps 12] [--workers N]

All in one run, so the ratios hold on a noisy machine:

- conversion img/s: the synthetic KITTI-format sample (188x621 PNGs, like
  KITTI's at half size) converted to 192x640 records, with 1 worker process
  and with ``--workers`` (default: every core); TensorFlow's import is not counted;
- pipeline img/s: ``make_dataset`` alone at kitti_simple's size and batch
  (192x640, batch 8) with augmentation on (flip, scale/translate, HSV and
  mosaic at 0.5): parse, decode, augment and assign targets, iterated with
  nothing else running, after one warm-up batch;
- trainer img/s: kitti_simple's model (darknet53 width 0.25 depth 0.34 +
  yolov3_fpn width 0.25) in ``GraphTrainer`` with the plan's "standard"
  losses, fed one batch held in memory, after a warm-up step (the trace);
- ratio: pipeline / trainer. Goal (issue 5): >= 5, so the input pipeline
  never starves training.

TensorFlow is imported inside functions: the conversion's worker processes
re-import this file (spawn) and must not pay for it.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MOSAIC_AND_JITTER = {"flip": 0.5, "scale": 0.25, "translate": 0.1, "hue": 0.015, "saturation": 0.5, "value": 0.3,
                     "mosaic": 0.5}


def checked_plan():
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components
    from detplug.registry import Registry

    registry = Registry.discover()
    plan_dirs = [Path(d) for dirs in registry.hook.detplug_plan_dirs() for d in dirs]
    plan = load_plan(find_plan("kitti_simple", plan_dirs))
    return static_check(plan, resolve_components(plan, registry))


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the conversion's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_conversion(folder: Path, params, *, images: int, workers: int):
    """For 1 worker and for ``workers``: (images/s, cores busy on average), and the records."""
    import tensorflow  # noqa: F401  (imported before timing: its import is not conversion)

    from detplug.plugins.datasets.kitti import convert_kitti
    from detplug.plugins.datasets.synthetic import generate_kitti_sample

    root = generate_kitti_sample(folder / "sample", images=images, source_size=(188, 621), seed=0)
    results = []
    for count in (1, workers):
        started, cpu = time.perf_counter(), _cpu_seconds()
        prepared = convert_kitti(root, params, cache_dir=folder / f"cache-{count}", workers=count)
        seconds = time.perf_counter() - started
        # Cores actually used: on a shared machine, N workers may get fewer than N cores.
        results.append((images / seconds, (_cpu_seconds() - cpu) / seconds))
    return results[0], results[1], prepared


def measure_pipeline(prepared, chain, *, batch_size: int, steps: int) -> float:
    from detplug.core.data.pipeline import make_dataset
    from detplug.core.plan.augmentation import Augmentation

    dataset = make_dataset(prepared.train_files, image=chain.image, labels=chain.labels, anchors=chain.anchors,
                           batch_size=batch_size, training=True, seed=1, augment=Augmentation(**MOSAIC_AND_JITTER))
    iterator = iter(dataset.repeat())
    next(iterator)  # warm-up: builds the iterator's threads and fills the prefetch buffer
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch_size / (time.perf_counter() - started)


def measure_trainer(checked, prepared, *, batch_size: int, steps: int) -> float:
    import keras

    from detplug.core.data.pipeline import make_dataset
    from detplug.core.model.assemble import build_losses, build_model
    from detplug.plugins.trainers.graph import GraphTrainer

    chain = checked.chain
    keras.utils.set_random_seed(0)
    trainer = GraphTrainer(model=build_model(checked), losses=build_losses(checked, "standard"),
                           optimizer=keras.optimizers.Adam(1e-4))
    images, targets = next(iter(make_dataset(prepared.train_files, image=chain.image, labels=chain.labels,
                                             anchors=chain.anchors, batch_size=batch_size, training=True)))
    float(trainer.run_train_batch(images, targets)["total"])  # warm-up: traces the step
    started = time.perf_counter()
    for _ in range(steps):
        float(trainer.run_train_batch(images, targets)["total"])
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="synthetic images to convert (default 256)")
    parser.add_argument("--steps", type=int, default=12, help="timed trainer steps (the pipeline gets 4x)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    checked = checked_plan()
    chain = checked.chain
    params = checked.resolved["datasets.kitti"].params
    batch_size = checked.plan.periods[0].settings.batch_size
    with tempfile.TemporaryDirectory(prefix="detplug-bench-") as folder:
        (one, one_cores), (many, many_cores), prepared = measure_conversion(
            Path(folder), params, images=args.images, workers=args.workers)
        pipeline = measure_pipeline(prepared, chain, batch_size=batch_size, steps=4 * args.steps)
        trainer = measure_trainer(checked, prepared, batch_size=batch_size, steps=args.steps)
    print(f"\nkitti_simple: {chain.image.height}x{chain.image.width}, batch {batch_size}, {os.cpu_count()} CPU cores")
    print(f"conversion     {one:8.1f} img/s with 1 worker ({one_cores:.1f} cores busy), {many:.1f} img/s with "
          f"{args.workers} ({many_cores:.1f} cores busy): {many / one:.2f}x")
    print(f"pipeline       {pipeline:8.1f} img/s (augmentation on: flip, scale/translate, HSV, mosaic 0.5)")
    print(f"graph trainer  {trainer:8.1f} img/s")
    print(f"ratio          {pipeline / trainer:8.1f}x (goal >= 5)")


if __name__ == "__main__":
    main()
