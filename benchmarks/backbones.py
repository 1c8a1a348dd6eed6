"""Throughput of each backbone with YOLOv3's head, at kitti_simple's input size, on this machine.

    python benchmarks/backbones.py [--quick] [--batch 4] [--steps 5] [--size 192 640]

Every backbone is built at its published size (width and depth 1; the keras
applications as keras builds them, random weights) with the ``yolov3_fpn``
head at width 1 and kitti_simple's three classes. Per model, all in this one
run so the ratios hold on a noisy machine:

- params: every weight (Keras' count_params, BN statistics included);
- GFLOPs/img: TensorFlow's profiler (``tf.compat.v1.profiler``, float_operation)
  on the inference graph of a concrete function (the one timed, divided by its
  batch), backbone alone and with the head. TF counts a multiply-add as 2 FLOPs; batch norm, activations
  and adds are counted too, where TF registers a FLOP count for the op;
- forward img/s: ``model(images, training=False)`` in a tf.function;
- train img/s: forward, a stand-in loss (the mean square of the raw head
  outputs: the real losses cost the same for every backbone and little next to
  the convolutions), gradients and an Adam update, in one tf.function. The
  update is TensorFlow's fused ``ResourceApplyAdam``, one op per variable:
  keras' Adam (what detplug trains with) does the same arithmetic in about ten
  ops per variable, which made building each training graph take 2-4x longer
  (10-20 s more per backbone here) for the same convolutions.

Timings are the median of ``--steps`` timed steps after one warm-up step
(the first call of a graph traces and optimises it). ``--quick`` is batch 1
and 2 timed steps: most of its minutes go to building and optimising the ten
graphs, not to the timed steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # the profiler's v1 deprecation notices

from detplug.core.plan.anchors import anchor_pixels, anchors_to_ratios  # noqa: E402
from detplug.core.plan.specs import Chain, ImageSpec, LabelSpec  # noqa: E402
from detplug.plugins.backbones import (  # noqa: E402
    CSPDARKNET53,
    DARKNET53,
    EFFICIENTNETB0,
    MOBILENETV2,
    RESNET50,
    DarknetParams,
    KerasAppParams,
    MobileNetV2Params,
)
from detplug.plugins.heads import YOLOV3_FPN, YoloV3HeadParams  # noqa: E402
from detplug.registry import load_factory  # noqa: E402

#: kitti_simple's input size and classes.
KITTI_SIMPLE_SIZE = (192, 640)
KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")

BACKBONES = {
    "darknet53": (DARKNET53, DarknetParams()),
    "cspdarknet53": (CSPDARKNET53, DarknetParams()),
    "resnet50": (RESNET50, KerasAppParams()),
    "mobilenetv2": (MOBILENETV2, MobileNetV2Params()),
    "efficientnetb0": (EFFICIENTNETB0, KerasAppParams()),
}


def build(name: str, height: int, width: int) -> tuple[keras.Model, keras.Model]:
    """(backbone, backbone + yolov3_fpn head) through the registry's factories and specs."""
    image = ImageSpec(height, width)
    chain = Chain(image=image, labels=LabelSpec(KITTI_CLASSES, 50),
                  anchors=anchors_to_ratios(anchor_pixels("coco_yolov3"), image))
    component, params = BACKBONES[name]
    backbone = load_factory(component)(params, chain)
    chain = chain.evolve(features=component.spec(params, chain))
    head = load_factory(YOLOV3_FPN)(YoloV3HeadParams(), chain)
    inputs = keras.Input((height, width, 3))
    return backbone, keras.Model(inputs, head(backbone(inputs)), name=f"{name}_yolov3")


def total_gflops(concrete: Any) -> float:
    """TensorFlow's profiler count of the float operations of a concrete function's graph, in 1e9."""
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    return profile.total_float_ops / 1e9


def inference(model: keras.Model, batch: int, height: int, width: int) -> Any:
    """``model(images, training=False)`` as a concrete function of a (batch, height, width, 3) image."""
    forward = tf.function(lambda images: model(images, training=False))
    return forward.get_concrete_function(tf.TensorSpec((batch, height, width, 3), tf.float32))


def images_per_second(step: Callable[[], Any], batch: int, steps: int) -> float:
    """Median images/s over ``steps`` timed calls after one warm-up call."""
    _wait(step())  # warm-up: the first call of a graph also optimises it
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        _wait(step())
        seconds.append(time.perf_counter() - started)
    return batch / statistics.median(seconds)


def _wait(result: Any) -> None:
    # Reading a value back blocks until the step has run.
    for tensor in tf.nest.flatten(result):
        tensor.numpy()
        break


class FusedAdam:
    """Adam as one fused TensorFlow op per variable (see the module docstring)."""

    def __init__(self, variables: list, learning_rate: float = 1e-4, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        # keras.Variable wraps a tf.Variable; the fused op needs its resource handle.
        self.variables = [variable.value for variable in variables]
        self.first_moments = [tf.Variable(tf.zeros_like(variable)) for variable in self.variables]
        self.second_moments = [tf.Variable(tf.zeros_like(variable)) for variable in self.variables]
        self.iterations = tf.Variable(0.0)
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon

    def apply(self, gradients: list) -> None:
        self.iterations.assign_add(1.0)
        beta_1_power = tf.pow(self.beta_1, self.iterations)
        beta_2_power = tf.pow(self.beta_2, self.iterations)
        for variable, gradient, first, second in zip(self.variables, gradients, self.first_moments,
                                                      self.second_moments):
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=first.handle, v=second.handle, beta1_power=beta_1_power,
                beta2_power=beta_2_power, lr=self.learning_rate, beta1=self.beta_1, beta2=self.beta_2,
                epsilon=self.epsilon, grad=gradient,
            )


def measure(name: str, *, height: int, width: int, batch: int, steps: int) -> dict[str, Any]:
    backbone, model = build(name, height, width)
    images = tf.constant(np.random.default_rng(0).random((batch, height, width, 3), np.float32))
    optimizer = FusedAdam(model.trainable_variables)

    # FLOPs scale with the batch exactly, so the timed graph is the one profiled.
    forward = inference(model, batch, height, width)

    @tf.function
    def train_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.square(output)) for output in outputs.values()])
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(gradients)
        return loss

    return {
        "backbone": name,
        "params_m": model.count_params() / 1e6,
        "backbone_gflops": total_gflops(inference(backbone, 1, height, width)),
        "total_gflops": total_gflops(forward) / batch,
        "forward_ips": images_per_second(lambda: forward(images), batch, steps),
        "train_ips": images_per_second(train_step, batch, steps),
    }


def print_table(rows: list[dict[str, Any]], *, height: int, width: int, batch: int, steps: int) -> None:
    print(f"\nbackbone + yolov3_fpn (width 1, 3 classes) at {height}x{width}, batch {batch}, "
          f"median of {steps} steps; TF {tf.__version__}, {os.cpu_count()} CPUs")
    print("| backbone       | params (M) | GFLOPs/img backbone | GFLOPs/img total | forward img/s | train img/s |")
    print("|----------------|-----------:|--------------------:|-----------------:|--------------:|------------:|")
    for row in rows:
        print(f"| {row['backbone']:<14} | {row['params_m']:>10.1f} | {row['backbone_gflops']:>19.1f} | "
              f"{row['total_gflops']:>16.1f} | {row['forward_ips']:>13.2f} | {row['train_ips']:>11.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, 2 timed steps: the whole table in minutes")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=KITTI_SIMPLE_SIZE, metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    args = parser.parse_args(argv)
    batch, steps = (1, 2) if args.quick else (args.batch, args.steps)
    height, width = args.size
    rows = []
    for name in args.backbones:
        started = time.perf_counter()
        rows.append(measure(name, height=height, width=width, batch=batch, steps=steps))
        print(f"{name}: measured in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        keras.backend.clear_session()
    print_table(rows, height=height, width=width, batch=batch, steps=steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
