"""Declared spec against built Keras outputs: one comparison, used by ``--check``
(core/model/assemble.py) and by plugin authors' contract checks (detplug.testing).

No TensorFlow import: the built outputs are only asked for ``.shape``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detplug.core.plan.specs import ImageSpec

#: The kinds whose factories build Keras models, in chain order.
MODEL_KINDS = ("backbone", "head", "decoder")


def expected_shapes(kind: str, declared: Mapping[int, Any], image: ImageSpec) -> dict[str, tuple[int, ...]]:
    """What a model kind's declared spec says its Keras outputs are, without the batch axis.

    Keys are ``"8"`` for backbone and head outputs, ``"8/yxhw"`` for a decoder's
    nested dict, as :func:`built_shapes` flattens the built outputs.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for stride, spec in sorted(declared.items()):
        grid = (image.height // stride, image.width // stride)
        if kind == "backbone":
            shapes[str(stride)] = (*grid, spec.channels)
        elif kind == "head":
            shapes[str(stride)] = (*grid, spec.anchors, spec.channels_per_anchor)
        elif kind == "decoder":
            for name, channels in spec.channels().items():
                shapes[f"{stride}/{name}"] = (*grid, spec.anchors, channels)
        else:
            raise ValueError(f"kind '{kind}' has no Keras output shapes; the model kinds are {MODEL_KINDS}")
    return shapes


def built_shapes(outputs: Any) -> dict[str, tuple] | None:
    """The built outputs' shapes without the batch axis, nested dicts flattened to
    ``"outer/inner"`` keys; None when the outputs are not a dict."""
    if not isinstance(outputs, Mapping):
        return None
    shapes: dict[str, tuple] = {}
    for key, value in outputs.items():
        if isinstance(value, Mapping):
            for inner, tensor in value.items():
                shapes[f"{key}/{inner}"] = tuple(tensor.shape[1:])
        else:
            shapes[str(key)] = tuple(value.shape[1:])
    return shapes


def shape_mismatches(expected: Mapping[str, tuple], outputs: Any) -> list[str]:
    """Each way the built ``outputs`` differ from the ``expected`` shapes, in words; empty when equal."""
    found = built_shapes(outputs)
    if found is None:
        return [f"its Keras model gives {type(outputs).__name__}, but the contract is a dict "
                f"keyed by stride {_strides_of(expected)}"]
    if sorted(found) != sorted(expected):
        return [f"keys: its spec declares {sorted(expected)}, its Keras model gives {sorted(found)}"]
    return [
        f"output '{key}': its spec declares shape {shape}, its Keras model gives {found[key]}"
        for key, shape in expected.items() if tuple(found[key]) != tuple(shape)
    ]


def _strides_of(expected: Mapping[str, tuple]) -> list[str]:
    return sorted({key.split("/")[0] for key in expected}, key=int)
