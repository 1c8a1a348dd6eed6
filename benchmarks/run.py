"""Where detplug stands, in one table measured in one run.

    python benchmarks/run.py [--quick] [--json FILE]

Train images/s of a bare tf.function step, the graph trainer, the eager
trainer, keras Model.fit and the real training loop (records from disk,
augmentation, progress, NaN guard; kitti_simple model and batch); input-pipeline
images/s; --list and static-check seconds against ``import tensorflow``;
achieved training GFLOP/s against a large tf.matmul's GFLOP/s; and, with a
GPU, YOLOv3 (darknet53 + yolov3_fpn, 416x416) images/s in float32 and in
mixed precision with XLA. Every ratio compares numbers from this one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import startup  # noqa: E402  (a sibling script)
import trainers  # noqa: E402


def matmul_gflops(size: int = 2048, repeat: int = 10) -> float:
    """The machine's float32 matmul rate: the ceiling a training step could reach."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    step = tf.function(lambda: tf.matmul(a, b))
    step().numpy()
    started = time.perf_counter()
    for _ in range(repeat):
        result = step()
    result.numpy()
    return 2 * size**3 * repeat / (time.perf_counter() - started) / 1e9


def forward_gflops_per_image(model: Any, image: Any) -> float:
    """TensorFlow's profiler count of one image's forward pass, in GFLOP (multiply-add = 2)."""
    import tensorflow as tf

    forward = tf.function(lambda images: model(images, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec((1, image.height, image.width, 3), tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    return profile.total_float_ops / 1e9


def pipeline_ips(parts: dict[str, Any], steps: int) -> float:
    """Batches the input pipeline delivers alone, with augmentation, as images/s."""
    from detplug.core.data.pipeline import make_dataset
    from detplug.core.plan.augmentation import Augmentation

    chain = parts["checked"].chain
    dataset = make_dataset(parts["prepared"].train_files, image=chain.image, labels=chain.labels,
                           anchors=chain.anchors, batch_size=parts["batch_size"], training=True, seed=1,
                           augment=Augmentation())
    iterator = iter(dataset.repeat())
    next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * parts["batch_size"] / (time.perf_counter() - started)


def yolov3_train_ips(*, mixed: bool, steps: int, batch: int) -> float:
    """Train images/s of YOLOv3 (yolov3_coco: darknet53 + yolov3_fpn, 416x416, 80 classes) on
    random images with empty targets; with ``mixed``, mixed_float16 and an XLA-compiled step.
    Run in a process of its own: the dtype policy is global."""
    import keras
    import tensorflow as tf

    from detplug.core.model.assemble import build_losses, build_model
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components
    from detplug.core.plan.settings import PeriodSettings, RunSettings
    from detplug.core.train.optimizers import build_optimizer
    from detplug.plugins.trainers.graph import GraphTrainer
    from detplug.registry import Registry

    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    plan = load_plan(find_plan("yolov3_coco"))
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    chain = checked.chain
    model = build_model(checked)
    optimizer = build_optimizer(PeriodSettings(), RunSettings(mixed_precision="mixed_float16" if mixed else ""), 1e-4)
    trainer = GraphTrainer(model=model, losses=build_losses(checked, plan.periods[0].losses), optimizer=optimizer,
                           jit_compile=mixed)
    images = tf.random.uniform((batch, chain.image.height, chain.image.width, 3))
    targets = {str(s): tf.zeros((batch, chain.image.height // s, chain.image.width // s, len(a),
                                 5 + chain.labels.num_classes)) for s, a in chain.anchors.items()}
    targets["boxes"] = tf.zeros((batch, chain.labels.max_boxes, 4))
    float(trainer.run_train_batch(images, targets)["total"])  # trace and compile
    started = time.perf_counter()
    for _ in range(steps):
        total = trainer.run_train_batch(images, targets)["total"]
    float(total)
    return steps * batch / (time.perf_counter() - started)


def gpu_yolov3(steps: int, batch: int = 16) -> dict[str, float] | None:
    """YOLOv3 416 train images/s in float32 and mixed float16 + XLA; None without a GPU."""
    import subprocess

    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    results = {}
    for label, options in (("float32_ips", []), ("mixed_xla_ips", ["--mixed"])):
        command = [sys.executable, __file__, "--yolov3-child", "--steps", str(steps), "--batch", str(batch), *options]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[label] = float(output.strip().splitlines()[-1])
    return results


def measure(quick: bool) -> dict[str, Any]:
    from detplug.core.train.training import default_cache_dir

    steps, rounds = (4, 1) if quick else (10, 3)
    results: dict[str, Any] = dict(startup.measure_startup(repeat=2 if quick else 5))
    parts = trainers.build("kitti_simple", default_cache_dir())
    results.update(trainers.measure_trainers(steps=steps, rounds=rounds, parts=parts))
    results["pipeline_ips"] = pipeline_ips(parts, steps=steps * 8)
    image = parts["checked"].chain.image
    # A train step costs about three forward passes (forward, and the two gradient products).
    results["train_gflop_per_image"] = 3 * forward_gflops_per_image(parts["model"](), image)
    results["train_gflops"] = results["train_gflop_per_image"] * results["graph_ips"]
    results["matmul_gflops"] = matmul_gflops()
    results["gpu"] = gpu_yolov3(steps)
    return results


GOALS = (
    ("graph trainer >= 0.95x bare step", lambda r: r["graph_ips"] / r["bare_step_ips"], 0.95),
    ("real loop >= 0.9x bare step", lambda r: r["loop_ips"] / r["bare_step_ips"], 0.9),
    ("graph trainer >= 1.2x keras fit", lambda r: r["graph_ips"] / r["fit_ips"], 1.2),
    ("graph trainer >= 2.5x eager", lambda r: r["graph_ips"] / r["eager_ips"], 2.5),
    ("pipeline >= 5x graph trainer", lambda r: r["pipeline_ips"] / r["graph_ips"], 5.0),
    ("--list < 0.2x import tensorflow", lambda r: 0.2 * r["import_tf_s"] / r["list_s"], 1.0),
    ("training >= 0.35x matmul GFLOP/s", lambda r: r["train_gflops"] / r["matmul_gflops"], 0.35),
)


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("bare tf.function step", "bare_step_ips", "images/s"), ("detplug graph trainer", "graph_ips", "images/s"),
        ("real training loop", "loop_ips", "images/s"),
        ("detplug eager trainer", "eager_ips", "images/s"), ("keras Model.fit", "fit_ips", "images/s"),
        ("input pipeline", "pipeline_ips", "images/s"), ("run.py --list", "list_s", "s"),
        ("static check", "static_check_s", "s"), ("import tensorflow", "import_tf_s", "s"),
        ("training (graph trainer)", "train_gflops", "GFLOP/s"), ("tf.matmul 2048x2048", "matmul_gflops", "GFLOP/s"),
    ]
    for label, key, unit in rows:
        print(f"{label:<26} {results[key]:>10.3f} {unit}")
    print(f"{'GPU YOLOv3 416':<26} {results['gpu'] if results['gpu'] is not None else 'no GPU'}")
    for goal, ratio, target in GOALS:
        value = ratio(results)
        shown = value if "list" not in goal else results["list_s"] / results["import_tf_s"]
        print(f"{goal:<36} {shown:>6.2f}  {'met' if value >= target else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (a smoke run)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    # The GPU measurement runs each precision in a child process of its own:
    parser.add_argument("--yolov3-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mixed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.yolov3_child:
        print(yolov3_train_ips(mixed=args.mixed, steps=args.steps, batch=args.batch))
        return
    results = measure(args.quick)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
