"""Builds the Keras model, the loss combinations and the optimizer from a checked plan.

While the model is built, every component's declared spec is compared with
the real tensor shapes its Keras code gives: the symbolic half of ``--check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import keras

from detplug.core.build import build_loss, build_model_part
from detplug.core.errors import CheckError
from detplug.core.model.losses import LossCombination
from detplug.core.plan.check import CheckedPlan
from detplug.core.plan.plan_file import Resolved
from detplug.core.plan.shapes import expected_shapes, shape_mismatches
from detplug.core.plan.specs import Chain


def build_component(item: Resolved, chain: Chain) -> Any:
    """A backbone, head or decoder of the plan, through :mod:`detplug.core.build`."""
    return build_model_part(item.component, item.params, chain)


@attrs.frozen
class DetectorParts:
    """The assembled model and the Keras objects of its parts (for freezing)."""

    model: keras.Model
    backbone: Any
    head: Any
    decoder: Any


def build_model(checked: CheckedPlan) -> keras.Model:
    """Image -> backbone -> head -> decoder, as one functional Keras model."""
    return build_parts(checked).model


def build_parts(checked: CheckedPlan) -> DetectorParts:
    chain, resolved = checked.chain, checked.resolved
    image = chain.image
    # static_check fills in every link of a checked plan's chain.
    assert image is not None
    assert chain.features is not None and chain.head is not None and chain.decoded is not None
    inputs = keras.Input((image.height, image.width, image.channels), name="image")

    backbone = build_component(resolved["model.backbone"], chain)
    features = backbone(inputs)
    _verify(resolved["model.backbone"], features, chain.features, image)
    head_model = build_component(resolved["model.head"], chain)
    head = head_model(features)
    _verify(resolved["model.head"], head, chain.head, image)
    decoder = build_component(resolved["model.decoder"], chain)
    decoded = decoder(head)
    _verify(resolved["model.decoder"], decoded, chain.decoded, image)
    model = keras.Model(inputs, decoded, name=checked.plan.name)
    return DetectorParts(model=model, backbone=backbone, head=head_model, decoder=decoder)


def _verify(item: Resolved, outputs: Any, declared: Mapping[int, Any], image: Any) -> None:
    """The component's declared spec against the Keras tensors it built."""
    problems = shape_mismatches(expected_shapes(item.component.kind, declared, image), outputs)
    if problems:
        raise CheckError(f"{item.component.kind} '{item.component.name}' ({item.ref.key}): "
                         f"{'; '.join(problems)}; the spec function and the factory disagree")


def build_losses(checked: CheckedPlan, combo_name: str) -> LossCombination:
    """The plan's loss combination ``combo_name`` as one callable."""
    losses = {}
    for loss_name, (weight, ref) in checked.plan.loss_combos[combo_name].items():
        item = checked.resolved[ref.key]
        losses[loss_name] = (weight, build_loss(item.component, item.params, checked.chain))
    return LossCombination(losses=losses)


def count_parameters(model: keras.Model) -> int:
    """Every weight, trainable or not (batch-norm statistics included), as Keras counts them."""
    return int(model.count_params())
