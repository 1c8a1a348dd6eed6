"""detplug: train YOLOv3-style detectors from parts that snap together.

The public face for plugin authors; importing it never imports TensorFlow.
"""

from detplug.core.plan.specs import (
    PLUGIN_API_VERSION,
    Chain,
    Component,
    DatasetSpec,
    DecodedSpec,
    FeatureSpec,
    HeadSpec,
    ImageSpec,
    LabelSpec,
    NoParams,
    SpecError,
)
from detplug.hookspecs import hookimpl

__all__ = [
    "PLUGIN_API_VERSION",
    "Chain",
    "Component",
    "DatasetSpec",
    "DecodedSpec",
    "FeatureSpec",
    "HeadSpec",
    "ImageSpec",
    "LabelSpec",
    "NoParams",
    "SpecError",
    "hookimpl",
]
