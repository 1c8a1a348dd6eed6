"""The graph trainer: each batch runs as one tf.function graph, optionally XLA-compiled."""

from __future__ import annotations

import tensorflow as tf

from detplug.core.train.distribute import check_xla_fits
from detplug.core.train.trainer import StepFunction, StepsFunction, Trainer
from detplug.plugins.trainers import GraphParams


class GraphTrainer(Trainer):
    def __init__(self, *, jit_compile: bool = False, **kwargs) -> None:
        self.jit_compile = jit_compile
        super().__init__(**kwargs)

    def compile_step(self, step: StepFunction) -> StepFunction:
        # As keras.Model.fit does: XLA compiles what one replica runs, and strategy.run
        # calls it from a plain tf.function (reduce_retracing: multi-scale training changes
        # the input size every few batches).
        if self.jit_compile:
            check_xla_fits(self.strategy)
            step = tf.function(step, jit_compile=True, reduce_retracing=True)
        return tf.function(self.across_replicas(step), reduce_retracing=True)

    def compile_steps(self, run_batch: StepFunction, *, sets_rate: bool) -> StepsFunction:
        # One graph for a call's steps: the host reads the losses once per call
        # ([train] steps_per_execution), as keras.Model.fit does with steps_per_execution.
        return tf.function(self.steps_loop(run_batch, sets_rate=sets_rate), reduce_retracing=True)


def graph_trainer(params: GraphParams, *, model, losses, optimizer, variables=None) -> GraphTrainer:
    return GraphTrainer(jit_compile=params.jit_compile, model=model, losses=losses, optimizer=optimizer,
                        variables=variables)
