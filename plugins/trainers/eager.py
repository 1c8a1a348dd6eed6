"""The eager trainer: each batch runs op by op, so any tensor can be printed or debugged."""

from __future__ import annotations

from typing import Any

from detplug.core.train.trainer import StepFunction, Trainer


class EagerTrainer(Trainer):
    def compile_step(self, step: StepFunction) -> StepFunction:
        return self.across_replicas(step)


def eager_trainer(params: Any, *, model, losses, optimizer, variables=None) -> EagerTrainer:
    return EagerTrainer(model=model, losses=losses, optimizer=optimizer, variables=variables)
