"""Contract checks for detplug components, like scikit-learn's ``check_estimator``.

A plugin author runs them on each component they ship; detplug runs the same
checks on its own built-ins (tests/test_contracts.py)::

    from detplug.testing import check_component
    from my_pkg.detplug_plugin import MY_BACKBONE

    def test_my_backbone_meets_the_detplug_contract():
        check_component(MY_BACKBONE)

:func:`check_component` runs every check that applies to the component's
kind on ready-made chains (:func:`default_chains`); each check is public too.
A broken contract raises :class:`ContractError` (an ``AssertionError``, so
pytest shows a failed test) whose message names the component, the check, the
expected and the found value.

Importing this package never imports TensorFlow, so a plugin's manifest tests
may import it; the checks that build Keras models import it when they run.

    _common    ContractError, default chains, building a component
    _static    params, manifest imports, dataset spec, declared shapes (no TensorFlow)
    _keras     declared spec against the built Keras model; save and load
    _runtime   losses, trainers and datasets run on concrete tensors
    _runner    check_component
"""

from detplug.core.plan.shapes import built_shapes, expected_shapes, shape_mismatches
from detplug.testing._common import ContractError, check_factory_importable, default_chains, describe_chain
from detplug.testing._keras import check_serialization, check_spec_matches_keras, symbolic_inputs
from detplug.testing._runner import check_component
from detplug.testing._runtime import check_dataset_prepares, check_loss, check_trainer
from detplug.testing._static import check_dataset_spec, check_manifest_without_tensorflow, check_params_defaults

__all__ = [
    "ContractError",
    "built_shapes",
    "check_component",
    "check_dataset_prepares",
    "check_dataset_spec",
    "check_factory_importable",
    "check_loss",
    "check_manifest_without_tensorflow",
    "check_params_defaults",
    "check_serialization",
    "check_spec_matches_keras",
    "check_trainer",
    "default_chains",
    "describe_chain",
    "expected_shapes",
    "shape_mismatches",
    "symbolic_inputs",
]
