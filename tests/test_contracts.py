"""Every built-in component meets its kind's contract (detplug.testing), and the checks
catch components that do not.

The built-ins are found through the registry, as a plan finds them, so a new
built-in is checked without touching this file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from detplug.core.plan.specs import Chain, Component, ImageSpec
from detplug.registry import Registry
from detplug.testing import (
    ContractError,
    check_component,
    check_dataset_prepares,
    check_loss,
    check_manifest_without_tensorflow,
    check_params_defaults,
    check_serialization,
    check_spec_matches_keras,
    check_trainer,
    default_chains,
)

BUILT_INS = [
    pytest.param(item.component, id=f"{item.component.kind}-{item.component.name}")
    for item in Registry.discover().all()
    if item.provider.distribution == "detplug"
]

#: Keras models are built at these values of the params that scale them, where a
#: component has such a param: Darknet-53 at width 1 costs seconds per build and a
#: 160 MB save. The defaults themselves are checked by check_params_defaults.
SMALL = {"width": 0.25, "depth": 0.34}


def small_params(component: Component):
    """The component's params at SMALL where it has such fields; None (its defaults) otherwise."""
    names = attrs.fields_dict(component.params)
    scaled = {name: value for name, value in SMALL.items() if name in names}
    return component.params(**scaled) if scaled else None


@pytest.mark.parametrize("component", BUILT_INS)
def test_built_in_component_meets_its_contract(component: Component):
    ran = check_component(component, params=small_params(component))
    assert "check_params_defaults" in ran and "check_manifest_without_tensorflow" in ran


def test_every_kind_has_a_built_in_to_check():
    kinds = {param.values[0].kind for param in BUILT_INS}
    assert kinds == {"dataset", "backbone", "head", "decoder", "loss", "trainer", "evaluator"}


def test_synthetic_dataset_prepares_records_that_match_its_spec(tmp_path):
    from detplug.plugins.datasets import SYNTHETIC, SyntheticParams

    params = SyntheticParams(image_size=(64, 96), source_size=(64, 96), images=4, max_boxes=4)
    prepared = check_dataset_prepares(SYNTHETIC, params, cache_dir=tmp_path)
    assert prepared.image_size == (64, 96)


# -- what the checks run on --


def test_default_chains_hold_exactly_what_is_upstream_of_each_kind():
    assert default_chains("dataset") == (Chain(),)
    backbone, head, decoder, loss = (default_chains(kind)[0] for kind in ("backbone", "head", "decoder", "loss"))
    assert backbone.image == ImageSpec(64, 96) and backbone.features is None
    assert sorted(head.features) == [8, 16, 32] and head.head is None
    assert sorted(decoder.head) == [8, 16, 32] and decoder.decoded is None
    assert sorted(loss.decoded) == [8, 16, 32]
    assert [chain.image for chain in default_chains("head")] == [ImageSpec(64, 96), ImageSpec(96, 128)]


def test_importing_detplug_testing_does_not_import_tensorflow():
    code = "import sys, detplug.testing; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


# -- the checks catch broken components --
#
# Each broken component is a real little plugin: a manifest module and a Keras
# module written to tmp_path and imported from there, as a third party's would be.

MANIFEST = '''
from attrs import frozen, field
from detplug import Chain, Component, FeatureSpec, NoParams

@frozen
class Params:
    width: float = 1.0

def spec(params, chain):
    image = chain.require("image", "backbone")
    return {{stride: FeatureSpec(stride, {channels}) for stride in (8, 16, 32)}}

BACKBONE = Component(kind="backbone", name="{name}", summary="broken on purpose", params=Params,
                     spec=spec, factory="{module}_keras:build")
'''

KERAS_BACKBONE = '''
import keras
from keras import layers

{extra}

def build(params, chain):
    image = chain.image
    inputs = keras.Input((image.height, image.width, 3))
    x, features = inputs, {{}}
    for stride in (2, 4, 8, 16, 32):
        x = layers.Conv2D({channels}, 3, strides=2, padding="same")(x)
        if stride >= 8:
            features[str(stride)] = {wrap}
    return keras.Model(inputs, features)
'''


def broken_backbone(tmp_path: Path, monkeypatch, name: str, *, declared: int = 16, built: int = 16,
                    extra: str = "", wrap: str = "x", manifest_extra: str = "") -> Component:
    """A backbone whose spec declares ``declared`` channels and whose Keras model gives ``built``."""
    module = f"contract_{name}"
    (tmp_path / f"{module}.py").write_text(
        manifest_extra + MANIFEST.format(channels=declared, name=name, module=module))
    (tmp_path / f"{module}_keras.py").write_text(
        KERAS_BACKBONE.format(channels=built, extra=textwrap.dedent(extra), wrap=wrap))
    monkeypatch.syspath_prepend(str(tmp_path))
    return __import__(module).BACKBONE


def test_spec_declaring_16_channels_for_a_model_giving_32_is_a_contract_error(tmp_path, monkeypatch):
    component = broken_backbone(tmp_path, monkeypatch, "wrong_channels", declared=16, built=32)
    with pytest.raises(ContractError) as raised:
        check_component(component)
    message = str(raised.value)
    assert message.startswith("backbone 'wrong_channels': check_spec_matches_keras (image 64x96x3")
    assert "its spec declares shape (8, 12, 16), its Keras model gives (8, 12, 32)" in message
    assert isinstance(raised.value, AssertionError)
    assert raised.value.expected["8"] == (8, 12, 16) and raised.value.found["8"] == (8, 12, 32)


def test_model_built_for_one_image_size_fails_at_the_second_default_size(tmp_path, monkeypatch):
    # A static reshape to the first default size: right at 64x96, wrong at 96x128.
    wrap = "layers.Reshape((64 // stride, 96 // stride, 16))(layers.Resizing(64 // stride, 96 // stride)(x))"
    component = broken_backbone(tmp_path, monkeypatch, "one_size", wrap=wrap)
    first, second = default_chains("backbone")
    check_spec_matches_keras(component, first)
    with pytest.raises(ContractError, match=r"image 96x128x3.*declares shape \(12, 16, 16\), .* gives \(8, 12, 16\)"):
        check_spec_matches_keras(component, second)


def test_unregistered_custom_layer_fails_serialization_naming_the_class(tmp_path, monkeypatch):
    extra = '''
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x
    '''
    component = broken_backbone(tmp_path, monkeypatch, "unregistered", extra=extra, wrap="Doubler()(x)")
    check_spec_matches_keras(component, default_chains("backbone")[0])
    with pytest.raises(ContractError, match=r"check_serialization .*Doubler is not registered; decorate it with "
                                            r"@keras.saving.register_keras_serializable"):
        check_serialization(component, default_chains("backbone")[0])


def test_custom_layer_registered_under_keras_default_package_fails_serialization(tmp_path, monkeypatch):
    extra = '''
    @keras.saving.register_keras_serializable()
    class Tripler(keras.layers.Layer):
        def call(self, x):
            return 3.0 * x
    '''
    component = broken_backbone(tmp_path, monkeypatch, "default_package", extra=extra, wrap="Tripler()(x)")
    with pytest.raises(ContractError, match="registered under Keras' default package 'Custom'"):
        check_serialization(component, default_chains("backbone")[0])


def test_manifest_importing_keras_fails_the_no_tensorflow_check(tmp_path, monkeypatch):
    component = broken_backbone(tmp_path, monkeypatch, "heavy_manifest", manifest_extra="import keras\n")
    with pytest.raises(ContractError, match=r"backbone 'heavy_manifest': check_manifest_without_tensorflow: "
                                            r"importing contract_heavy_manifest imports keras \(from .*contract_heavy_manifest.py line 1\)"):
        check_manifest_without_tensorflow(component)


def _component(kind: str, params: type, spec=lambda params, chain: None, factory="math:sqrt") -> Component:
    return Component(kind=kind, name="broken", summary="broken on purpose", params=params, spec=spec,
                     factory=factory)


def test_params_field_without_default_fails_naming_the_field():
    @attrs.frozen
    class Params:
        size: int

    with pytest.raises(ContractError, match=r"fields \['size'\] have no default"):
        check_params_defaults(_component("trainer", Params))


def test_mutable_params_class_fails():
    @attrs.define
    class Params:
        size: int = 3

    with pytest.raises(ContractError, match="Params is mutable; declare it with @attrs.frozen"):
        check_params_defaults(_component("trainer", Params))


def test_params_a_plan_cannot_express_fail_the_round_trip():
    @attrs.frozen
    class Params:
        size: int = 3.5  # the default breaks the field's own type

    with pytest.raises(ContractError, match=r"do not read back: field 'size': expected int, found 3.5"):
        check_params_defaults(_component("trainer", Params))


def test_loss_returning_a_scalar_instead_of_one_value_per_image_fails(tmp_path, monkeypatch):
    (tmp_path / "contract_scalar_loss.py").write_text(
        "import tensorflow as tf\n"
        "def build(params, chain):\n"
        "    return lambda pred, target, boxes: tf.reduce_sum(pred['raw'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from detplug.core.plan.specs import NoParams

    component = _component("loss", NoParams, spec=lambda p, c: (8, 16, 32), factory="contract_scalar_loss:build")
    with pytest.raises(ContractError, match=r"loss 'broken': check_loss .*stride 8, zero predictions and targets: "
                                            r"the loss must give one value per image"):
        check_loss(component, default_chains("loss")[0])


def test_loss_that_is_nan_on_zero_padding_fails(tmp_path, monkeypatch):
    (tmp_path / "contract_nan_loss.py").write_text(
        "import tensorflow as tf\n"
        "def build(params, chain):\n"
        "    # mean over positive cells: 0 / 0 on an image without objects\n"
        "    return lambda pred, target, boxes: (tf.reduce_sum(target[..., 4] * pred['raw'][..., 4], axis=[1, 2, 3])\n"
        "                                        / tf.reduce_sum(target[..., 4], axis=[1, 2, 3]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from detplug.core.plan.specs import NoParams

    component = _component("loss", NoParams, spec=lambda p, c: (8, 16, 32), factory="contract_nan_loss:build")
    with pytest.raises(ContractError, match="zero predictions and targets: the loss is not finite"):
        check_loss(component, default_chains("loss")[0])


def test_trainer_whose_validation_counts_the_blank_images_of_a_filled_up_batch_fails(tmp_path, monkeypatch):
    # A val_step of its own that hands every image of the batch to the losses.
    (tmp_path / "contract_blind_trainer.py").write_text(
        "from detplug.core.train.trainer import Trainer\n"
        "class BlindTrainer(Trainer):\n"
        "    def compile_step(self, step):\n"
        "        return self.across_replicas(step)\n"
        "    def val_step(self, images, targets):\n"
        "        targets = {key: value for key, value in targets.items() if key != 'real'}\n"
        "        return self.losses(self.model(images, training=False), targets)[1]\n"
        "def build(params, **kwargs):\n"
        "    return BlindTrainer(**kwargs)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from detplug.core.plan.specs import NoParams

    component = _component("trainer", NoParams, factory="contract_blind_trainer:build")
    with pytest.raises(ContractError, match=r"a validation batch's blank images \(targets\['real'\] False\) must be "
                                            r"left out of its losses"):
        check_trainer(component, default_chains("trainer")[0])
