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
from detplug.core.plan.check import CheckedPlan, training_sizes
from detplug.core.plan.plan_file import Resolved
from detplug.core.plan.shapes import expected_shapes, shape_mismatches
from detplug.core.plan.specs import Chain, ImageSpec


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
    parts = DetectorParts(model=model, backbone=backbone, head=head_model, decoder=decoder)
    sizes = sorted({size for index, period in enumerate(checked.plan.periods)
                    if period.dataset == checked.model_dataset for size in training_sizes(checked, index)})
    if sizes:
        _accept_any_size(model)
        for size in sizes:
            _verify_size(checked, parts, size)
    return parts


def _accept_any_size(layer: Any) -> None:
    """Let a functional model (and those nested in it) take inputs of other spatial sizes
    than it was built for: Keras checks the built shape otherwise. The layers themselves
    must cope, which _verify_size checks."""
    if isinstance(layer, keras.Model):
        layer.input_spec = None
        for inner in layer.layers:
            _accept_any_size(inner)


def _verify_size(checked: CheckedPlan, parts: DetectorParts, size: tuple[int, int]) -> None:
    """The model run symbolically at a multi-scale ``size`` must give each stride's grid."""
    chain = checked.chain
    assert chain.image is not None and chain.head is not None  # static_check fills in every link
    image = ImageSpec(size[0], size[1], chain.image.channels)
    tensors: Any = keras.Input((image.height, image.width, image.channels), name="image")
    for key, model in (("model.backbone", parts.backbone), ("model.head", parts.head),
                       ("model.decoder", parts.decoder)):
        item = checked.resolved[key]
        try:
            tensors = model(tensors)
        except Exception as error:  # Keras raises several types for a shape it cannot take
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckError(f"{item.component.kind} '{item.component.name}' ({key}) cannot run at the "
                             f"multi-scale size {image.height}x{image.width} ({message}); it is built for "
                             f"{chain.image.height}x{chain.image.width} only: train it without multi_scale") from None
    decoded_spec = chain.decoded
    assert decoded_spec is not None
    _verify(checked.resolved["model.decoder"], tensors, decoded_spec, image)


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
