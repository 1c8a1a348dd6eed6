"""YOLOv3 (plans/yolov3_coco.toml: Darknet-53 + yolov3_fpn, 416x416, 80 classes) on one
NVIDIA GPU: throughput, peak memory and checks, written to one JSON file.

    benchmarks/gpu_check.sh [--smoke] [OUT.json]          (sets up a venv, then runs this)
    python benchmarks/gpu_check.py [--out gpu_check.json] [--seconds 270] [--smoke] [--cpu-ok] [--only NAME ...]

The data is a generated COCO-format sample (annotations/instances_train2017.json and
train2017/*.jpg, 480x640 images with boxes of all 80 COCO class names) read by the
plan's own ``coco`` dataset: the records, input pipeline and targets are those of a
real 80-class run, only the pictures are made up. The model, losses and one real
batch come from benchmarks/trainers.py's ``build``.

Measurements, most important first (the JSON is rewritten after each one, with
``"complete": false`` until the last; one that would not fit in the time left is
skipped and named in ``skipped``):

1. ``graph_float32``: the graph trainer's images/s at batch 16 (TF32 as TensorFlow
   sets it, normally on), with peak GPU memory;
2. ``graph_mixed_float16_xla``: the same with ``mixed_float16`` (LossScaleOptimizer)
   and an XLA-compiled step (``jit_compile``);
3. ``cpu_gpu_losses``: the first 3 steps' losses at batch 2 on the GPU and on the CPU
   from the same initial weights and batch (TF32 off) agree within rtol 1e-3;
4. ``input_pipeline``: batches from the records on disk through augmentation and
   target assignment alone, against the fastest trainer figure;
5. ``graph_mixed_float16``: mixed precision without XLA;
6. ``bare_step``: the graph trainer against a hand-written tf.function step on the same
   model, batch and optimizer (interleaved rounds; goal >= 0.95x);
7. ``steps_per_execution``: the graph trainer at 1 and at 8 steps per call;
8. ``mirrored``: MirroredStrategy on the one GPU against the default strategy.

Peak memory is ``tf.config.experimental.get_memory_info('GPU:0')['peak']`` after
``reset_memory_stats``; the float32 trainer stays alive for measurements 6-8, so
every entry also gives the memory in use when its count started (``baseline_mib``).
``--smoke`` runs every path at a tiny width, 128x128 and batch 2 (on the CPU with
``--cpu-ok``), to prove the script, not to measure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trainers  # a sibling script: build() and bare_runner()

PLAN = "yolov3_coco"
#: Relative tolerance of the GPU-against-CPU loss check (float32, TF32 off).
LOSS_RTOL = 1e-3
#: The pipeline alone must deliver this many times the fastest step's images/s: alone it
#: has every core to itself, in training it shares them with the step's host work.
PIPELINE_HEADROOM = 1.2
#: The issue's goal for the graph trainer against the bare step (benchmarks/trainers.py).
BARE_GOAL = 0.95

FULL = {
    "overrides": [], "images": 192, "source_size": (480, 640), "check_batch": 2, "check_steps": 3,
    "chunk_steps": 5, "target_seconds": 4.0, "min_rounds": 3, "pipeline_batches": 10,
    # Rough seconds each measurement needs on a recent GPU (traces and XLA compiles
    # included): one that does not fit in the time left is skipped.
    "estimates": {"graph_float32": 40, "graph_mixed_float16_xla": 75, "cpu_gpu_losses": 50, "input_pipeline": 15,
                  "graph_mixed_float16": 35, "bare_step": 35, "steps_per_execution": 35, "mirrored": 40},
}
SMOKE = {
    "overrides": ["model.backbone.width=0.125", "model.backbone.depth=0.34", "model.head.width=0.125",
                  "datasets.coco.image_size=[128, 128]", "train.batch_size=2"],
    "images": 12, "source_size": (96, 128), "check_batch": 2, "check_steps": 3,
    "chunk_steps": 1, "target_seconds": 0.0, "min_rounds": 1, "pipeline_batches": 2,
    # A 2-core CPU: a trace of the step takes 10-20 s, the XLA compile about a minute.
    "estimates": {"graph_float32": 20, "graph_mixed_float16_xla": 45, "cpu_gpu_losses": 35, "input_pipeline": 5,
                  "graph_mixed_float16": 20, "bare_step": 20, "steps_per_execution": 20, "mirrored": 20},
}


# -- the data: a COCO-format sample with all 80 class names -----------------------------


def write_coco_sample(folder: Path, *, images: int, source_size: tuple[int, int], classes: list[str],
                      seed: int = 0) -> Path:
    """``folder/annotations/instances_train2017.json`` and ``folder/train2017/NNNNNN.jpg``:
    ``images`` noisy pictures with 1-12 boxes each, of classes drawn uniformly from
    ``classes`` (COCO ids 1..80 in that order), each class in a colour of its own."""
    import numpy as np
    from PIL import Image, ImageDraw

    key = json.dumps({"images": images, "source_size": list(source_size), "classes": classes, "seed": seed})
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text() == key:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "annotations").mkdir(parents=True)
    (folder / "train2017").mkdir()
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (len(classes), 3))
    height, width = source_size
    entries, annotations = [], []
    for index in range(images):
        pixels = rng.integers(60, 200, 3) + rng.normal(0, 20, (height, width, 1))
        picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(picture)
        for _ in range(int(rng.integers(1, 13))):
            label = int(rng.integers(len(classes)))
            box_w = float(np.exp(rng.uniform(np.log(12), np.log(0.8 * width))))
            box_h = float(min(height - 2, box_w * rng.uniform(0.5, 2.0)))
            box_w = min(box_w, width - 2)
            x, y = float(rng.uniform(0, width - box_w)), float(rng.uniform(0, height - box_h))
            shape = draw.ellipse if label % 2 else draw.rectangle
            shape([x, y, x + box_w, y + box_h], fill=tuple(int(c) for c in palette[label]))
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": label + 1,
                                "bbox": [round(x, 2), round(y, 2), round(box_w, 2), round(box_h, 2)],
                                "area": box_w * box_h, "iscrowd": 0})
        name = f"{index:06d}.jpg"
        picture.save(folder / "train2017" / name, quality=90)
        entries.append({"id": index + 1, "file_name": name, "height": height, "width": width})
    document = {"images": entries, "annotations": annotations,
                "categories": [{"id": i + 1, "name": n, "supercategory": "thing"} for i, n in enumerate(classes)]}
    (folder / "annotations" / "instances_train2017.json").write_text(json.dumps(document))
    marker.write_text(key)
    return folder


def plan_file(work: Path, mode: dict[str, Any]) -> tuple[Path, list[str]]:
    """yolov3_coco.toml as it is, but for the sample's folder (no val JSON: val_ratio
    splits the sample) and the mode's overrides, written to ``work``."""
    import tomli_w
    import tomllib

    from detplug.core.plan.plan_file import apply_override, find_plan

    source = find_plan(PLAN)
    document = tomllib.loads(source.read_text(encoding="utf-8"))
    classes = list(document["datasets"]["coco"]["classes"])
    sample = write_coco_sample(work / "coco_sample", images=mode["images"], source_size=mode["source_size"],
                               classes=classes)
    overrides = [f'datasets.coco.root="{sample}"', 'datasets.coco.val_annotations=""',
                 'datasets.coco.val_images=""', *mode["overrides"]]
    for override in overrides:
        apply_override(document, override, source)
    document["name"] = f"{PLAN}_gpu_check"
    path = work / f"{PLAN}_gpu_check.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path, overrides


# -- the report --------------------------------------------------------------------------


class Report:
    """The JSON file, rewritten (atomically) after every measurement."""

    def __init__(self, path: Path, *, mode: str, seconds: float) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "complete": False, "mode": mode, "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "budget_seconds": seconds, "running": None, "device": None, "tensorflow": None, "model": None,
            "measurements": {}, "checks": {}, "skipped": {}, "errors": {},
        }

    def write(self) -> None:
        self.data["checks"] = checks(self.data["measurements"])
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(partial, self.path)


def checks(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The booleans and ratios, from whatever has been measured so far."""
    found: dict[str, Any] = {}
    ips = {name: entry["images_per_second"] for name, entry in measured.items()
           if entry.get("images_per_second") and name.startswith("graph_")}
    if "graph_float32" in ips:
        base = ips["graph_float32"]
        found["speedup_over_float32"] = {name: value / base for name, value in ips.items() if name != "graph_float32"}
    losses = measured.get("cpu_gpu_losses")
    if losses and "passed" in losses:
        found["cpu_gpu_losses"] = {key: losses[key] for key in ("passed", "rtol", "max_relative_difference",
                                                                 "devices")}
    pipeline = measured.get("input_pipeline")
    if pipeline and ips:
        against = max(ips, key=lambda name: ips[name])
        ratio = pipeline["images_per_second"] / ips[against]
        found["input_pipeline"] = {"not_bottleneck": ratio >= PIPELINE_HEADROOM, "ratio": ratio,
                                   "threshold": PIPELINE_HEADROOM, "pipeline_ips": pipeline["images_per_second"],
                                   "step_ips": ips[against], "against": against}
    bare = measured.get("bare_step")
    if bare and "ratio" in bare:
        found["bare_step"] = {"ratio": bare["ratio"], "goal": BARE_GOAL, "met": bare["ratio"] >= BARE_GOAL}
    steps = measured.get("steps_per_execution")
    if steps and "ratio" in steps:
        found["steps_per_execution"] = {"ratio_8_over_1": steps["ratio"], "faster_at_8": steps["ratio"] > 1.0}
    mirrored = measured.get("mirrored")
    if mirrored and "ratio" in mirrored:
        found["mirrored"] = {"ratio_to_default": mirrored["ratio"]}
    return found


# -- the machine ----------------------------------------------------------------------------


class Context:
    """What every measurement shares: the mode, the plan's parts, the device, the deadline,
    and the float32 trainer that measurements 6-8 reuse."""

    def __init__(self, mode: dict[str, Any], parts: dict[str, Any], gpu: bool, deadline: float) -> None:
        self.mode, self.parts, self.gpu, self.deadline = mode, parts, gpu, deadline
        self.batch_size: int = parts["batch_size"]
        self.float32: dict[str, Any] | None = None  # {"trainer", "run"} once graph_float32 ran

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def target_seconds(self, share: float = 1.0) -> float:
        """How long to keep timing: the mode's target, less when time runs short."""
        return max(0.0, min(self.mode["target_seconds"] * share, self.left() / 8))


def memory_reset(gpu: bool) -> float | None:
    """Reset the GPU allocator's peak; the MiB in use now (None without a GPU)."""
    if not gpu:
        return None
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats("GPU:0")
    return tf.config.experimental.get_memory_info("GPU:0")["current"] / 2**20


def memory_peak(gpu: bool) -> float | None:
    if not gpu:
        return None
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def device_info(gpu: bool) -> dict[str, Any]:
    import tensorflow as tf

    info: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    gpus = tf.config.list_physical_devices("GPU")
    info["gpus"] = len(gpus)
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["name"] = details.get("device_name", gpus[0].name)
        info["compute_capability"] = details.get("compute_capability")
    else:
        info["name"] = f"CPU only ({platform.processor() or platform.machine()}): a smoke run, not a measurement"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                 "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    info["tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled()) if gpu else None
    return info


def tensorflow_info() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    build = {key: value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
             for key, value in tf.sysconfig.get_build_info().items()}
    return {"version": tf.__version__, "keras": keras.__version__, "build_info": build}


# -- timing ------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    with open(os.devnull, "w") as devnull:
        stdout, sys.stdout = sys.stdout, devnull
        try:
            yield
        finally:
            sys.stdout = stdout


def rates(runs: dict[str, tuple[Callable[[int], None], int]], *, images_per_step: int, target: float,
          min_rounds: int) -> dict[str, dict[str, Any]]:
    """images/s of each ``run(steps)``, interleaved round by round (so a slow spell of the
    machine hits all alike), for at least ``min_rounds`` rounds and ``target`` seconds."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    started, rounds = time.perf_counter(), 0
    while rounds < min_rounds or (time.perf_counter() - started < target and rounds < 100):
        for name, (run, steps) in runs.items():
            begun = time.perf_counter()
            run(steps)
            samples[name].append(steps * images_per_step / (time.perf_counter() - begun))
        rounds += 1
    return {name: {"images_per_second": statistics.median(values), "rounds": rounds,
                   "steps": rounds * runs[name][1], "samples": [round(value, 2) for value in values]}
            for name, values in samples.items()}


def epoch_runner(trainer: Any, rate: float, batches: Callable[[int], Any]) -> Callable[[int], None]:
    """``run(steps)``: the trainer's epoch loop (learning rate per step, NaN guard) over
    ``batches(steps)``, as benchmarks/trainers.py runs it."""

    def run(steps: int) -> None:
        with quiet_stdout():
            trainer.train_epoch(batches(steps), steps, epoch=1, learning_rate_at=lambda step: rate)

    return run


def graph_trainer(parts: dict[str, Any], *, policy: str = "float32", jit_compile: bool = False) -> Any:
    """The graph trainer on a fresh model, with the optimizer training would build for the
    plan's first period (a LossScaleOptimizer under mixed_float16): model, optimizer and
    trainer inside the current strategy's scope."""
    import attrs
    import keras

    from detplug.core.train.optimizers import build_optimizer
    from detplug.plugins.trainers.graph import GraphTrainer

    plan = parts["plan"]
    run_settings = attrs.evolve(plan.train.run, mixed_precision="" if policy == "float32" else policy)
    keras.config.set_dtype_policy(policy)  # before the model: layers keep the policy they are built with
    try:
        model = parts["model"]()
    finally:
        keras.config.set_dtype_policy("float32")
    optimizer = build_optimizer(plan.periods[0].settings, run_settings, parts["learning_rate"])
    optimizer.build(model.trainable_variables)  # as training does: the step is then traced once
    return GraphTrainer(model=model, losses=parts["losses"](), optimizer=optimizer, jit_compile=jit_compile)


def in_memory(parts: dict[str, Any]) -> Callable[[int], list]:
    """The one real batch, ``steps`` times (held in host memory: each step copies it to the
    device, as training's batches are)."""
    return lambda steps: [parts["batch"]] * steps


def precision_measurement(ctx: Context, *, policy: str, jit_compile: bool) -> dict[str, Any]:
    trainer = graph_trainer(ctx.parts, policy=policy, jit_compile=jit_compile)
    run = epoch_runner(trainer, ctx.parts["learning_rate"], in_memory(ctx.parts))
    begun = time.perf_counter()
    run(2)  # trace (and compile), build the optimizer's slots
    warmup = time.perf_counter() - begun
    result = rates({"graph": (run, ctx.mode["chunk_steps"])}, images_per_step=ctx.batch_size,
                   target=ctx.target_seconds(), min_rounds=ctx.mode["min_rounds"])["graph"]
    result.update(warmup_seconds=warmup, policy=policy, jit_compile=jit_compile, batch_size=ctx.batch_size,
                  optimizer=type(trainer.optimizer).__name__)
    if policy == "float32":
        ctx.float32 = {"trainer": trainer, "run": run}
        result["parameters"] = int(trainer.model.count_params())
    return result


# -- the measurements ---------------------------------------------------------------------


def graph_float32(ctx: Context) -> dict[str, Any]:
    return precision_measurement(ctx, policy="float32", jit_compile=False)


def graph_mixed_float16_xla(ctx: Context) -> dict[str, Any]:
    return precision_measurement(ctx, policy="mixed_float16", jit_compile=True)


def graph_mixed_float16(ctx: Context) -> dict[str, Any]:
    return precision_measurement(ctx, policy="mixed_float16", jit_compile=False)


def cpu_gpu_losses(ctx: Context) -> dict[str, Any]:
    """The first steps' losses of the graph trainer on the GPU and on the CPU, from the same
    initial weights, batch and optimizer, in float32 with TF32 off (TF32 rounds float32
    matmuls and convolutions to 10 mantissa bits: its losses differ by about 1e-3)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from detplug.plugins.trainers.graph import GraphTrainer

    parts, count = ctx.parts, ctx.mode["check_batch"]
    images, targets = parts["batch"]
    images, targets = images[:count], {name: value[:count] for name, value in targets.items()}
    first = "/GPU:0" if ctx.gpu else "/CPU:0"
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    weights = None
    losses: dict[str, list[dict[str, float]]] = {}
    placed: dict[str, str] = {}
    try:
        for label, device in (("gpu" if ctx.gpu else "cpu_first", first), ("cpu", "/CPU:0")):
            with tf.device(device):
                model = parts["model"]()
                if weights is None:
                    weights = model.get_weights()
                else:
                    model.set_weights(weights)
                optimizer = keras.optimizers.Adam(parts["learning_rate"])
                optimizer.build(model.trainable_variables)
                trainer = GraphTrainer(model=model, losses=parts["losses"](), optimizer=optimizer)
                losses[label] = []
                for _ in range(ctx.mode["check_steps"]):
                    step = trainer.run_train_batch(images, targets)
                    losses[label].append({name: float(value) for name, value in step.items()})
                # Where it ran: the weights, and the step's output (a tensor lives where it was made).
                placed[label] = f"weights {model.trainable_variables[0].value.device}, loss {step['total'].device}"
            del trainer, model, optimizer, step
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
    (a_label, a), (b_label, b) = losses.items()
    a_total, b_total = np.array([s["total"] for s in a]), np.array([s["total"] for s in b])
    relative = {name: max(abs(x[name] - y[name]) / max(abs(y[name]), 1e-12) for x, y in zip(a, b)) for name in a[0]}
    return {"passed": bool(np.allclose(a_total, b_total, rtol=LOSS_RTOL)), "rtol": LOSS_RTOL,
            "max_relative_difference": relative["total"], "max_relative_difference_by_part": relative,
            "losses": losses, "devices": placed, "batch_size": count, "steps": ctx.mode["check_steps"],
            "tf32": False, "compared": "total loss of each step, np.allclose(gpu, cpu, rtol)"}


def input_pipeline(ctx: Context) -> dict[str, Any]:
    """The period iterator training uses (InputPipeline.epochs), alone: records read from
    disk, decoded, augmented (the plan's [train] augment, or Augmentation's defaults when
    the plan has none), targets assigned, batched, prefetched."""
    import attrs

    from detplug.core.data.pipeline import InputPipeline, parallel_calls
    from detplug.core.plan.augmentation import Augmentation

    parts = ctx.parts
    plan, chain = parts["plan"], parts["checked"].chain
    augmentation = plan.train.augmentation or Augmentation()
    pipeline = InputPipeline(image=chain.image, labels=chain.labels, anchors=chain.anchors,
                             assignment=plan.assignment)
    batches = iter(pipeline.epochs(parts["prepared"].train_files, range(1, 100_000), batch_size=ctx.batch_size,
                                   training=True, seed=0, augment_for=lambda epoch: augmentation))

    def run(steps: int) -> None:
        for _ in range(steps):
            next(batches)

    begun = time.perf_counter()
    run(3)
    warmup = time.perf_counter() - begun
    result = rates({"pipeline": (run, ctx.mode["pipeline_batches"])}, images_per_step=ctx.batch_size,
                   target=ctx.target_seconds(), min_rounds=ctx.mode["min_rounds"])["pipeline"]
    result.update(warmup_seconds=warmup, batch_size=ctx.batch_size, augmentation=attrs.asdict(augmentation),
                  augmentation_from="plan" if plan.train.augmentation else "Augmentation() defaults (plan has none)",
                  train_images=parts["prepared"].images("train"), parallel_calls=parallel_calls())
    return result


def bare_step(ctx: Context) -> dict[str, Any]:
    """benchmarks/trainers.py's bare tf.function step (Adam, plain float32) on a fresh copy
    of the model, against the float32 graph trainer (its optimizer is the same Adam at the
    same rate: the plan's first period sets nothing else), in interleaved rounds."""
    graph = needs_float32(ctx)
    bare = trainers.bare_runner(ctx.parts)
    begun = time.perf_counter()
    bare(2)
    warmup = time.perf_counter() - begun
    steps = ctx.mode["chunk_steps"]
    found = rates({"graph": (graph["run"], steps), "bare": (bare, steps)}, images_per_step=ctx.batch_size,
                  target=ctx.target_seconds(1.5), min_rounds=ctx.mode["min_rounds"])
    return {"images_per_second": found["bare"]["images_per_second"],
            "graph_images_per_second": found["graph"]["images_per_second"],
            "ratio": found["graph"]["images_per_second"] / found["bare"]["images_per_second"],
            "rounds": found["bare"]["rounds"], "samples": {name: found[name]["samples"] for name in found},
            "warmup_seconds": warmup, "batch_size": ctx.batch_size,
            "optimizer": type(graph["trainer"].optimizer).__name__}


def steps_per_execution(ctx: Context) -> dict[str, Any]:
    """The float32 graph trainer (trainer.steps_per_execution) at 1 and at 8 steps per call,
    on one tf.data iterator of the in-memory batch (a call of 8 takes its batches inside
    the graph, so it needs an iterator, not a list)."""
    import tensorflow as tf

    graph = needs_float32(ctx)
    trainer = graph["trainer"]
    batches = iter(tf.data.Dataset.from_tensors(ctx.parts["batch"]).repeat())
    base = epoch_runner(trainer, ctx.parts["learning_rate"], lambda steps: batches)

    def at(per_call: int) -> Callable[[int], None]:
        def run(steps: int) -> None:
            trainer.steps_per_execution = per_call
            try:
                base(steps)
            finally:
                trainer.steps_per_execution = 1

        return run

    begun = time.perf_counter()
    at(1)(2)
    at(8)(16)  # traces the loop of 8 steps
    warmup = time.perf_counter() - begun
    found = rates({"k1": (at(1), 16), "k8": (at(8), 16)}, images_per_step=ctx.batch_size,
                  target=ctx.target_seconds(1.5), min_rounds=ctx.mode["min_rounds"])
    return {"images_per_second": found["k8"]["images_per_second"],
            "k1_images_per_second": found["k1"]["images_per_second"],
            "k8_images_per_second": found["k8"]["images_per_second"],
            "ratio": found["k8"]["images_per_second"] / found["k1"]["images_per_second"],
            "rounds": found["k8"]["rounds"], "samples": {name: found[name]["samples"] for name in found},
            "warmup_seconds": warmup, "batch_size": ctx.batch_size, "policy": "float32"}


def mirrored(ctx: Context) -> dict[str, Any]:
    """MirroredStrategy on the one GPU (model, optimizer and trainer built in its scope, fed
    by strategy.experimental_distribute_dataset as training feeds it), against the float32
    graph trainer under the default strategy fed by a plain iterator of the same batch."""
    import tensorflow as tf

    from detplug.core.train import distribute

    graph = needs_float32(ctx)
    strategy = distribute.make_strategy("mirrored")
    with strategy.scope():
        trainer = graph_trainer(ctx.parts)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensors(ctx.parts["batch"]).repeat().with_options(options)
    distributed = iter(strategy.experimental_distribute_dataset(dataset))
    plain = iter(dataset)
    rate = ctx.parts["learning_rate"]
    run = epoch_runner(trainer, rate, lambda steps: distributed)
    default = epoch_runner(graph["trainer"], rate, lambda steps: plain)
    begun = time.perf_counter()
    run(2)
    default(2)
    warmup = time.perf_counter() - begun
    steps = ctx.mode["chunk_steps"]
    found = rates({"mirrored": (run, steps), "default": (default, steps)}, images_per_step=ctx.batch_size,
                  target=ctx.target_seconds(1.5), min_rounds=ctx.mode["min_rounds"])
    return {"images_per_second": found["mirrored"]["images_per_second"],
            "default_images_per_second": found["default"]["images_per_second"],
            "ratio": found["mirrored"]["images_per_second"] / found["default"]["images_per_second"],
            "replicas": strategy.num_replicas_in_sync, "devices": distribute.replica_devices(strategy),
            "rounds": found["mirrored"]["rounds"], "samples": {name: found[name]["samples"] for name in found},
            "warmup_seconds": warmup, "batch_size": ctx.batch_size, "policy": "float32"}


def needs_float32(ctx: Context) -> dict[str, Any]:
    """The float32 trainer of measurement 1, built now if that one was skipped or failed."""
    if ctx.float32 is None:
        precision_measurement(ctx, policy="float32", jit_compile=False)
    assert ctx.float32 is not None
    return ctx.float32


MEASUREMENTS: list[tuple[str, Callable[[Context], dict[str, Any]]]] = [
    ("graph_float32", graph_float32),
    ("graph_mixed_float16_xla", graph_mixed_float16_xla),
    ("cpu_gpu_losses", cpu_gpu_losses),
    ("input_pipeline", input_pipeline),
    ("graph_mixed_float16", graph_mixed_float16),
    ("bare_step", bare_step),
    ("steps_per_execution", steps_per_execution),
    ("mirrored", mirrored),
]


def measure(name: str, function: Callable[[Context], dict[str, Any]], ctx: Context, report: Report) -> None:
    estimate = ctx.mode["estimates"][name]
    if ctx.left() < estimate:
        report.data["skipped"][name] = f"{ctx.left():.0f} s were left; it needs about {estimate} s"
        print(f"gpu_check: skipped {name} ({report.data['skipped'][name]})", flush=True)
        return
    report.data["running"] = name
    report.write()
    print(f"gpu_check: {name} ...", flush=True)
    gc.collect()
    baseline = memory_reset(ctx.gpu)
    begun = time.perf_counter()
    try:
        result = function(ctx)
    except Exception as error:  # an OOM or a failed compile: recorded, and the next one runs
        traceback.print_exc()
        report.data["errors"][name] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:500]}"
        result = None
    seconds = time.perf_counter() - begun
    if result is not None:
        peak = memory_peak(ctx.gpu)
        result.update(
            seconds=seconds, load_average=list(os.getloadavg()), peak_memory_mib=peak, baseline_mib=baseline,
            peak_above_baseline_mib=None if peak is None or baseline is None else peak - baseline,
            host_max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        report.data["measurements"][name] = result
        shown = result.get("images_per_second")
        print(f"gpu_check: {name}: {seconds:.1f} s" + (f", {shown:.1f} images/s" if shown else "")
              + (f", ratio {result['ratio']:.3f}" if "ratio" in result else "")
              + (f", passed {result['passed']}" if "passed" in result else ""), flush=True)
    report.data["running"] = None
    report.write()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON file to write")
    parser.add_argument("--seconds", type=float, default=270.0,
                        help="time budget of the whole run; measurements that would not fit are skipped")
    parser.add_argument("--smoke", action="store_true",
                        help="every path at a tiny width, 128x128 and batch 2: proves the script, measures nothing")
    parser.add_argument("--cpu-ok", action="store_true", help="run without a GPU (with --smoke, on the CPU)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "detplug-gpu-check",
                        help="where the generated sample and its records are kept (reused by the next run)")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in MEASUREMENTS], metavar="NAME",
                        help="run these measurements only, in the usual order: "
                        + ", ".join(name for name, _ in MEASUREMENTS))
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    mode = SMOKE if args.smoke else FULL
    report = Report(args.out.absolute(), mode="smoke" if args.smoke else "full", seconds=args.seconds)
    report.data["only"] = args.only
    report.write()

    def stop(signum: int, frame: Any) -> None:  # timeout's SIGTERM: leave the figures so far
        report.data["errors"]["stopped"] = f"signal {signum} while running {report.data['running']}"
        report.write()
        os._exit(124)

    signal.signal(signal.SIGTERM, stop)

    import keras
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    report.data["tensorflow"] = tensorflow_info()
    report.data["device"] = device_info(gpu)
    if not gpu and not args.cpu_ok:
        report.data["errors"]["device"] = "TensorFlow lists no GPU"
        report.write()
        print("gpu_check: TensorFlow lists no GPU (tf.config.list_physical_devices('GPU') is empty); "
              "this check needs one (or --smoke --cpu-ok to try it on the CPU).", file=sys.stderr)
        return 2
    keras.utils.set_random_seed(0)
    work = args.work_dir / ("smoke" if args.smoke else "full")
    work.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    path, overrides = plan_file(work, mode)
    parts = trainers.build(str(path), work / "cache")
    chain = parts["checked"].chain
    report.data["model"] = {
        "plan": PLAN, "overrides": overrides, "image_size": [chain.image.height, chain.image.width],
        "classes": chain.labels.num_classes, "batch_size": parts["batch_size"],
        "learning_rate": parts["learning_rate"],
        "data": f"generated COCO-format sample: {mode['images']} images of {mode['source_size'][0]}x"
                f"{mode['source_size'][1]} with boxes of all {chain.labels.num_classes} COCO class names, "
                f"converted by the plan's coco dataset ({parts['prepared'].images('train')} train images)",
        "setup_seconds": time.perf_counter() - begun,
    }
    report.write()
    ctx = Context(mode, parts, gpu, deadline)
    for name, function in MEASUREMENTS:
        if args.only is None or name in args.only:
            measure(name, function, ctx, report)
    report.data["complete"] = not report.data["skipped"] and not report.data["errors"]
    report.data["seconds"] = args.seconds - ctx.left()
    report.write()
    print(json.dumps(report.data["checks"], indent=2, default=str))
    print(f"gpu_check: wrote {report.path} (complete: {str(report.data['complete']).lower()})")
    return 0 if report.data["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
