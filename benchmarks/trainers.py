"""Train-step throughput of detplug's trainers against a bare tf.function step and keras fit,
and of the real training loop.

    python benchmarks/trainers.py [--plan kitti_simple] [--steps 10] [--rounds 3] [--only steps]

The bare step, the trainers and fit run the same model, losses and batch (kept in
memory, so the input pipeline is not measured there). The real loop is the graph
trainer's epoch loop as training runs it: batches from the records on disk through
the plan's augmentation and target assignment, the per-step learning rate, progress
and NaN guard. All run interleaved round by round in one process; the table gives
images/s (median over rounds) and the ratios the issues set as goals: graph >= 0.95x
bare, >= 1.2x fit, >= 2.5x eager; real loop >= 0.9x bare. It also compares the graph
trainer at [train] steps_per_execution 1 and 8 on one in-memory iterator: on a CPU the
host's wait per step is small beside the step; the GPU script (benchmarks/gpu_check.sh)
measures it where it matters.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(plan_name: str, cache_dir: Path) -> dict[str, Any]:
    """The plan's model factory, loss combination, and one real batch of its data."""
    from detplug.core.data.pipeline import make_dataset
    from detplug.core.model.assemble import build_losses, build_model
    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components
    from detplug.registry import Registry, load_factory

    plan = load_plan(find_plan(plan_name))
    checked = static_check(plan, resolve_components(plan, Registry.discover()))
    period = plan.periods[0]
    item = checked.resolved[f"datasets.{period.dataset}"]
    prepared = load_factory(item.component)(item.params, data_root=None, cache_dir=cache_dir)
    chain = checked.chain
    batch = next(iter(make_dataset(prepared.train_files, image=chain.image, labels=chain.labels,
                                   anchors=chain.anchors, batch_size=period.settings.batch_size, training=True)))
    return {
        "plan": plan,
        "checked": checked,
        "prepared": prepared,
        "model": lambda: build_model(checked),
        "losses": lambda: build_losses(checked, period.losses),
        "batch": batch,
        "batch_size": period.settings.batch_size,
        "learning_rate": period.learning_rate,
    }


def bare_runner(parts: dict[str, Any]) -> Callable[[int], None]:
    """The hand-written step a user would write without detplug."""
    import keras
    import tensorflow as tf

    model, losses = parts["model"](), parts["losses"]()
    optimizer = keras.optimizers.Adam(parts["learning_rate"])
    images, targets = parts["batch"]

    @tf.function
    def step(images, targets):
        with tf.GradientTape() as tape:
            total, _ = losses(model(images, training=True), targets)
        gradients = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return total

    def run(steps: int) -> None:
        for _ in range(steps):
            total = step(images, targets)
        float(total)

    return run


def quiet_epochs(trainer: Any, batches_for: Callable[[int], Any], rate: float) -> Callable[[int], None]:
    """``run(steps)``: one epoch of ``steps`` steps of ``trainer`` on ``batches_for(steps)`` at
    learning rate ``rate``, its progress output silenced."""

    def run(steps: int) -> None:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            trainer.train_epoch(batches_for(steps), steps, epoch=1, learning_rate_at=lambda step: rate)

    return run


def trainer_runner(parts: dict[str, Any], trainer_name: str) -> Callable[[int], None]:
    """detplug's trainer through its epoch loop (learning rate per step, progress, NaN guard)."""
    import keras

    from detplug.plugins.trainers.eager import EagerTrainer
    from detplug.plugins.trainers.graph import GraphTrainer

    trainer_class = {"graph": GraphTrainer, "eager": EagerTrainer}[trainer_name]
    trainer = trainer_class(model=parts["model"](), losses=parts["losses"](),
                            optimizer=keras.optimizers.Adam(parts["learning_rate"]))
    rate = parts["learning_rate"]

    return quiet_epochs(trainer, lambda steps: [parts["batch"]] * steps, rate)


def steps_runner(parts: dict[str, Any], per_call: int) -> Callable[[int], None]:
    """The graph trainer at ``per_call`` steps per tf.function call ([train]
    steps_per_execution), on batches from an in-memory tf.data iterator."""
    import keras
    import tensorflow as tf

    from detplug.plugins.trainers.graph import GraphTrainer

    trainer = GraphTrainer(model=parts["model"](), losses=parts["losses"](),
                           optimizer=keras.optimizers.Adam(parts["learning_rate"]))
    trainer.steps_per_execution = per_call
    batches = iter(tf.data.Dataset.from_tensors(parts["batch"]).repeat())
    rate = parts["learning_rate"]

    return quiet_epochs(trainer, lambda steps: batches, rate)


def loop_runner(parts: dict[str, Any]) -> Callable[[int], None]:
    """The graph trainer's epoch loop on the period iterator training uses: records read
    from disk, augmented as the plan says, targets assigned, prefetched."""
    import keras

    from detplug.core.data.integrity import guarded
    from detplug.core.data.pipeline import InputPipeline
    from detplug.plugins.trainers.graph import GraphTrainer

    plan, chain, prepared = parts["plan"], parts["checked"].chain, parts["prepared"]
    trainer = GraphTrainer(model=parts["model"](), losses=parts["losses"](),
                           optimizer=keras.optimizers.Adam(parts["learning_rate"]))
    pipeline = InputPipeline(image=chain.image, labels=chain.labels, anchors=chain.anchors,
                             assignment=plan.assignment)
    augmentation = plan.train.augmentation
    batches = guarded(pipeline.epochs(prepared.train_files, range(1, 10_000), batch_size=parts["batch_size"],
                                      training=True, seed=plan.train.run.seed,
                                      augment_for=lambda epoch: augmentation or False), prepared.train_files)
    rate = parts["learning_rate"]

    return quiet_epochs(trainer, lambda steps: batches, rate)


def fit_runner(parts: dict[str, Any]) -> Callable[[int], None]:
    """keras.Model.fit on the same model and losses (the loss plugged in via compute_loss)."""
    import keras
    import tensorflow as tf

    detector, losses = parts["model"](), parts["losses"]()

    class FitModel(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.detector = detector

        def call(self, images, training=False):
            return self.detector(images, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            total, _ = losses(y_pred, y)
            return total

    model = FitModel()
    model.compile(optimizer=keras.optimizers.Adam(parts["learning_rate"]), jit_compile=False)
    images, targets = parts["batch"]

    def run(steps: int) -> None:
        data = tf.data.Dataset.from_tensors((images, targets)).repeat(steps)
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)

    return run


RUNNERS: dict[str, Callable[[dict[str, Any]], Callable[[int], None]]] = {
    "bare_step_ips": lambda parts: bare_runner(parts),
    "graph_ips": lambda parts: trainer_runner(parts, "graph"),
    "eager_ips": lambda parts: trainer_runner(parts, "eager"),
    "fit_ips": lambda parts: fit_runner(parts),
    "loop_ips": lambda parts: loop_runner(parts),
    "k1_ips": lambda parts: steps_runner(parts, 1),
    "k8_ips": lambda parts: steps_runner(parts, 8),
}
#: --only steps: the steps_per_execution comparison alone.
GROUPS = {"steps": ("k1_ips", "k8_ips")}


def measure_trainers(plan: str = "kitti_simple", *, steps: int = 10, rounds: int = 3,
                     cache_dir: Path | None = None, parts: dict[str, Any] | None = None,
                     names: tuple[str, ...] = tuple(RUNNERS)) -> dict[str, float]:
    """images/s of each way to train (``names``: some of RUNNERS), median over interleaved
    rounds, after one warm-up each."""
    from detplug.core.train.training import default_cache_dir

    parts = parts or build(plan, cache_dir or default_cache_dir())
    runners = {name: RUNNERS[name](parts) for name in names}
    # The eager trainer is several times slower: fewer steps keep the run short. The
    # several-steps trainer runs whole calls of 8.
    step_counts = {name: max(2, steps // 3) if name == "eager_ips" else steps for name in runners}
    step_counts["k1_ips"] = step_counts["k8_ips"] = 8 * max(1, round(steps / 8))
    warm_up: dict[str, float] = {}
    for name, run in runners.items():
        started = time.perf_counter()
        # Trace, optimise the graph, build the optimizer's slots; the two step counts take
        # their first 8 steps, one call of 8 or eight calls of 1.
        first = 8 if name in ("k1_ips", "k8_ips") else 1
        run(first)
        warm_up[name] = time.perf_counter() - started
        run(first)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run(step_counts[name])
            samples[name].append(step_counts[name] * parts["batch_size"] / (time.perf_counter() - started))
    results = {name: statistics.median(values) for name, values in samples.items()}
    if "k1_ips" in warm_up and "k8_ips" in warm_up:
        results["k1_first_call_s"], results["k8_first_call_s"] = warm_up["k1_ips"], warm_up["k8_ips"]
    return results


def print_steps(results: dict[str, float]) -> None:
    print(f"steps_per_execution 1: {results['k1_ips']:.2f} images/s, 8: {results['k8_ips']:.2f} images/s "
          f"(8 / 1 = {results['k8_ips'] / results['k1_ips']:.3f}; in-memory batches from a tf.data iterator); "
          f"first 8 steps, traced and optimised (1 / 8 per call): {results['k1_first_call_s']:.1f} s / "
          f"{results['k8_first_call_s']:.1f} s")


def print_table(results: dict[str, float]) -> None:
    graph = results["graph_ips"]
    print(f"{'train step':<24} {'images/s':>9} {'graph / this':>13}")
    for name, label in (("bare_step_ips", "bare tf.function step"), ("graph_ips", "detplug graph trainer"),
                        ("fit_ips", "keras Model.fit"), ("eager_ips", "detplug eager trainer"),
                        ("loop_ips", "real training loop")):
        print(f"{label:<24} {results[name]:>9.2f} {graph / results[name]:>13.2f}")
    print_steps(results)
    goals = [("graph >= 0.95x bare", graph >= 0.95 * results["bare_step_ips"]),
             ("graph >= 1.2x fit", graph >= 1.2 * results["fit_ips"]),
             ("graph >= 2.5x eager", graph >= 2.5 * results["eager_ips"]),
             ("loop >= 0.9x bare", results["loop_ips"] >= 0.9 * results["bare_step_ips"])]
    print("goals: " + ", ".join(f"{goal} {'met' if met else 'MISSED'}" for goal, met in goals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="kitti_simple")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(GROUPS), help="measure one comparison alone")
    args = parser.parse_args()
    if args.only:
        print_steps(measure_trainers(args.plan, steps=args.steps, rounds=args.rounds, names=GROUPS[args.only]))
    else:
        print_table(measure_trainers(args.plan, steps=args.steps, rounds=args.rounds))


if __name__ == "__main__":
    main()
