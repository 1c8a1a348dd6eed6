"""Builds components: the one place a factory is called, and the contract it keeps.

What each kind's factory (``Component.factory``, ``"module:callable"``) is
called with and must return -- the one contract per kind:

dataset
    ``factory(params, *, data_root, cache_dir, skip_bad, force) -> PreparedData``
    (:mod:`detplug.core.data.prepared`): converts its source into TFRecord shards plus
    ``manifest.json`` (or reuses records whose source fingerprint matches) and says where
    they are. ``data_root`` is ``--data-root`` or None. A bad image stops with a DataError
    listing its problems (file:line); ``skip_bad`` leaves bad images out and lists them in
    the manifest; ``force`` converts again. Params inherit ``RecordParams``; the spec
    gives a DatasetSpec.
backbone
    ``factory(params, chain) -> keras.Model`` from the image
    (batch, h, w, 3), float32 in [0, 1], to ``{str(stride): (batch, h/stride, w/stride, channels)}``.
head
    ``factory(params, chain) -> keras.Model`` from the backbone's dict to
    ``{str(stride): (batch, h/stride, w/stride, anchors, 5 + classes)}``.
decoder
    ``factory(params, chain) -> keras layer`` from the head's dict to
    ``{str(stride): {"yxhw", "objectness", "category", "raw"}}`` (see DecodedSpec).
loss
    ``factory(params, chain) -> callable(pred, target, boxes) -> (batch,) tensor``
    for one stride: ``pred`` is that stride's decoded dict, ``target`` the
    (batch, h/s, w/s, anchors, 5 + classes) target tensor (yxhw, objectness,
    one-hot classes), ``boxes`` every box of each image, (batch, max_boxes, 4)
    yxhw, zero-padded, ignore regions included. Each image's value is its share of
    the batch's loss (:mod:`detplug.core.model.losses`).
trainer
    ``factory(params, *, model, losses, optimizer, variables) -> Trainer``
    (:class:`detplug.core.train.trainer.Trainer`); ``variables`` are the weights to
    update. It is called inside the run's ``strategy.scope()`` (tf.distribute); a
    Trainer keeps that strategy and runs each batch with ``strategy.run``.
evaluator
    ``factory(params, *, classes: tuple[str, ...]) -> Evaluator``
    (:mod:`detplug.core.evaluate.contract`); ``classes`` are the names the model detects.
    Its ``evaluate(truths: list[ImageTruth], detections: list[ImageDetections]) ->
    EvaluationResult`` compares boxes x1, y1, x2, y2 in original-image pixels, with class
    names as the label files spell them (neighbouring classes and DontCare included). Its
    spec raises SpecError when it can evaluate none of the dataset's classes.

Each ``build_*`` below calls the factory with exactly these arguments and checks
what it returns, so a plugin that breaks the contract is named at once rather
than failing later deep inside Keras. Nothing here imports TensorFlow at module
level: building a dataset or an evaluator does not start it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detplug.core.errors import DetplugError
from detplug.core.plan.specs import Chain, Component
from detplug.registry import load_factory

if TYPE_CHECKING:
    import keras

    from detplug.core.data.prepared import PreparedData
    from detplug.core.evaluate.contract import Evaluator
    from detplug.core.model.losses import LossFn
    from detplug.core.train.trainer import Trainer


class BuildError(DetplugError):
    """A factory was called against its kind's contract or returned the wrong thing."""


def _is_keras_layer(built: Any) -> bool:
    import keras

    return isinstance(built, keras.Layer)


def _is_prepared(built: Any) -> bool:
    from detplug.core.data.prepared import PreparedData

    return isinstance(built, PreparedData)


def _is_trainer(built: Any) -> bool:
    from detplug.core.train.trainer import Trainer

    return isinstance(built, Trainer)


#: What each kind's factory must return: (a test, how to say it).
RETURNS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (_is_prepared, "a PreparedData (detplug.core.data.prepared)"),
    "backbone": (_is_keras_layer, "a keras.Model"),
    "head": (_is_keras_layer, "a keras.Model"),
    "decoder": (_is_keras_layer, "a Keras layer"),
    "loss": (callable, "a callable(pred, target, boxes)"),
    "trainer": (_is_trainer, "a Trainer (detplug.core.train.trainer)"),
    "evaluator": (lambda built: callable(getattr(built, "evaluate", None)),
                  "an object with evaluate(truths, detections)"),
}


def build(component: Component, params: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``component``'s factory with ``params`` and its kind's arguments, and check the
    result; BuildError naming the component when either side breaks the contract."""
    factory = load_factory(component)
    where = f"{component.kind} '{component.name}' ({component.factory})"
    try:
        inspect.signature(factory).bind(params, *args, **kwargs)
    except TypeError as error:
        given = ", ".join(["params", *(["chain"] if args else []), *kwargs])
        raise BuildError(
            f"{where}: its factory cannot be called with ({given}) as the {component.kind} contract says "
            f"({error}); update the plugin that provides it (see detplug/core/build.py)"
        ) from None
    except ValueError:  # a builtin or C callable without a signature: let the call tell
        pass
    built = factory(params, *args, **kwargs)
    test, wanted = RETURNS[component.kind]
    if not test(built):
        raise BuildError(f"{where}: its factory returned {type(built).__name__}, not {wanted}; "
                         f"fix the factory (see detplug/core/build.py)")
    return built


def build_dataset(component: Component, params: Any, *, data_root: Path | None, cache_dir: Path,
                  skip_bad: bool = False, force: bool = False) -> PreparedData:
    return build(component, params, data_root=data_root, cache_dir=cache_dir, skip_bad=skip_bad, force=force)


def build_model_part(component: Component, params: Any, chain: Chain) -> keras.Layer:
    """A backbone, head or decoder."""
    return build(component, params, chain)


def build_loss(component: Component, params: Any, chain: Chain) -> LossFn:
    return build(component, params, chain)


def build_trainer(component: Component, params: Any, *, model: keras.Model, losses: Any,
                  optimizer: keras.optimizers.Optimizer, variables: list[Any]) -> Trainer:
    return build(component, params, model=model, losses=losses, optimizer=optimizer, variables=variables)


def build_evaluator(component: Component, params: Any, *, classes: tuple[str, ...]) -> Evaluator:
    return build(component, params, classes=tuple(classes))
