"""The checks that build the component with Keras: declared spec against built shapes,
and save/load. TensorFlow is imported when a check runs, not with this module."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from detplug.core.plan.shapes import MODEL_KINDS, built_shapes, expected_shapes, shape_mismatches
from detplug.core.plan.specs import Chain, Component
from detplug.testing._common import (
    BATCH,
    ContractError,
    build,
    describe_chain,
    params_or_defaults,
    spec_output,
)


def check_spec_matches_keras(component: Component, chain: Chain, *, params: Any = None) -> Any:
    """The declared spec equals the shapes of the Keras model the factory builds on
    ``keras.Input`` tensors shaped as the chain says: same dict keys, same shape
    after the batch axis. Returns the built model (or layer)."""
    check = f"check_spec_matches_keras ({describe_chain(chain)})"
    params = params_or_defaults(component, params)
    declared = spec_output(component, params, chain, check)
    built = _build_keras(component, params, chain, check)
    inputs = symbolic_inputs(component.kind, chain)
    try:
        outputs = built(inputs)
    except Exception as error:
        raise ContractError(component, check, f"its Keras model fails on inputs shaped "
                                              f"{_input_shapes(inputs)}: {type(error).__name__}: {error}") from error
    # A model kind's chain holds the image (default_chains gives it to every kind but dataset).
    assert chain.image is not None, "the chain holds no image"
    expected = expected_shapes(component.kind, declared, chain.image)
    problems = shape_mismatches(expected, outputs)
    if problems:
        raise ContractError(
            component, check,
            "; ".join(problems) + "; the spec function and the factory disagree",
            expected=expected, found=built_shapes(outputs),
        )
    return built


def symbolic_inputs(kind: str, chain: Chain) -> Any:
    """``keras.Input`` tensors shaped as the chain says a ``kind`` receives them."""
    import keras

    # Keras matches a dict input by its tensor's name, so each Input is named by its key.
    image = chain.image
    assert image is not None, "the chain holds no image"
    if kind == "backbone":
        return keras.Input((image.height, image.width, image.channels), name="image")
    if kind == "head":
        assert chain.features is not None, "the chain holds no features"
        return {
            str(stride): keras.Input((image.height // stride, image.width // stride, spec.channels),
                                     name=str(stride))
            for stride, spec in sorted(chain.features.items())
        }
    if kind == "decoder":
        assert chain.head is not None, "the chain holds no head outputs"
        return {
            str(stride): keras.Input(
                (image.height // stride, image.width // stride, spec.anchors, spec.channels_per_anchor),
                name=str(stride))
            for stride, spec in sorted(chain.head.items())
        }
    raise ValueError(f"kind '{kind}' takes no Keras inputs; the model kinds are {MODEL_KINDS}")


def check_serialization(component: Component, chain: Chain, *, params: Any = None,
                        tmp_dir: str | os.PathLike | None = None) -> None:
    """The built model saves to a ``.keras`` file and loads back (with Keras' safe mode,
    in which a ``Lambda`` layer does not load) giving the same outputs. Every layer
    class outside Keras must be registered with
    ``keras.saving.register_keras_serializable(package=...)`` under its own package."""
    check = f"check_serialization ({describe_chain(chain)})"
    built = _build_keras(component, params_or_defaults(component, params), chain, check)
    check_built_model_serializes(component, built, chain, tmp_dir=tmp_dir)


def check_built_model_serializes(component: Component, built: Any, chain: Chain, *,
                                 tmp_dir: str | os.PathLike | None = None) -> None:
    """:func:`check_serialization` on a model (or decoder layer) already built for ``chain``."""
    import keras
    import numpy as np

    check = f"check_serialization ({describe_chain(chain)})"
    inputs = symbolic_inputs(component.kind, chain)
    model = built if isinstance(built, keras.Model) else keras.Model(inputs, built(inputs))
    _check_registered(component, check, model)
    values = _concrete_inputs(inputs, np.random.default_rng(0))
    before = _flatten(model(values))
    with tempfile.TemporaryDirectory(dir=tmp_dir) as folder:
        path = Path(folder) / f"{component.name}.keras"
        try:
            model.save(path)
            loaded = keras.saving.load_model(path)
        except Exception as error:
            raise ContractError(
                component, check,
                f"its model does not survive save and load_model: {type(error).__name__}: "
                f"{_first_line(error)}; give custom layers get_config() and register them with "
                f"@keras.saving.register_keras_serializable(package=<your distribution>)",
            ) from error
    after = _flatten(loaded(values))
    if sorted(after) != sorted(before):
        raise ContractError(component, check, "the loaded model gives other outputs",
                            expected=sorted(before), found=sorted(after))
    for key, value in before.items():
        if not np.allclose(value, after[key], rtol=1e-4, atol=1e-5):
            raise ContractError(
                component, check,
                f"output '{key}' differs after save and load (largest difference "
                f"{float(np.max(np.abs(value - after[key]))):.3g}); a layer's weights or config "
                f"are not saved",
            )


def _check_registered(component: Component, check: str, model: Any) -> None:
    import keras

    for layer in _all_layers(model):
        cls = type(layer)
        if cls.__module__.split(".")[0] == "keras":
            continue
        registered = keras.saving.get_registered_name(cls)
        if registered == cls.__name__ or keras.saving.get_registered_object(registered) is not cls:
            raise ContractError(
                component, check,
                f"layer class {cls.__module__}.{cls.__name__} is not registered; decorate it with "
                f"@keras.saving.register_keras_serializable(package=<your distribution>) so a "
                f"saved model loads without custom_objects",
                expected="a registered name 'package>Class'", found=registered,
            )
        if registered.startswith("Custom>"):
            raise ContractError(
                component, check,
                f"layer class {cls.__name__} is registered under Keras' default package 'Custom'; "
                f"give package=<your distribution> so it cannot clash with another plugin's "
                f"{cls.__name__}", expected="package=<your distribution>", found=registered,
            )


def _all_layers(layer: Any) -> Iterable[Any]:
    yield layer
    for child in getattr(layer, "layers", []):
        yield from _all_layers(child)


def _build_keras(component: Component, params: Any, chain: Chain, check: str) -> Any:
    import keras

    built = build(component, params, chain, check)
    wanted = keras.Model if component.kind in ("backbone", "head") else keras.layers.Layer
    if not isinstance(built, wanted):
        raise ContractError(component, check, f"a {component.kind} factory must return a {wanted.__name__}",
                            expected=wanted.__name__, found=type(built).__name__)
    return built


def _input_shapes(inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return {key: tuple(tensor.shape) for key, tensor in inputs.items()}
    return tuple(inputs.shape)


def _concrete_inputs(inputs: Any, rng: Any) -> Any:
    def fill(tensor: Any) -> Any:
        shape = (BATCH, *tensor.shape[1:])
        return rng.uniform(-1.0, 1.0, size=shape).astype("float32")

    if isinstance(inputs, Mapping):
        return {key: fill(tensor) for key, tensor in inputs.items()}
    return fill(inputs)


def _flatten(outputs: Any, prefix: str = "") -> dict[str, Any]:
    import numpy as np

    if isinstance(outputs, Mapping):
        flat: dict[str, Any] = {}
        for key, value in outputs.items():
            flat.update(_flatten(value, f"{prefix}{key}/"))
        return flat
    if isinstance(outputs, (list, tuple)):
        flat = {}
        for index, value in enumerate(outputs):
            flat.update(_flatten(value, f"{prefix}{index}/"))
        return flat
    return {prefix.rstrip("/") or "output": np.asarray(outputs)}


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
