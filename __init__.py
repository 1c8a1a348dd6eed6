"""detplug: train YOLOv3-style detectors from parts that snap together.

The public face for plugin authors; importing it never imports TensorFlow.
"""

import logging

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

# What detplug says goes to the `detplug` logger tree; as a library it configures no output of
# its own (the command line attaches one: core/console.py), so an embedding program decides.
logging.getLogger(__name__).addHandler(logging.NullHandler())

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
