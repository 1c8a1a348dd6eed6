"""core/build.py: every component is built through one function that holds its kind to the
factory contract, and names the component when the factory breaks it."""

from __future__ import annotations

import attrs
import pytest

from detplug.core.build import BuildError, build, build_dataset, build_model_part
from detplug.core.plan.specs import Chain, ImageSpec
from detplug.plugins.backbones import DARKNET53, DarknetParams
from detplug.plugins.datasets import SYNTHETIC, SyntheticParams
from detplug.plugins.evaluators import KITTI_AP, KittiAPParams


def old_contract_dataset(params, *, data_root, cache_dir):
    """A dataset factory written before skip_bad and force were part of the contract."""
    raise AssertionError("must not be called")


def dataset_returning_a_folder_name(params, *, data_root, cache_dir, skip_bad=False, force=False):
    return "records/kitti"


def backbone_returning_a_dict(params, chain):
    return {"8": None}


def test_a_factory_that_cannot_take_the_contract_arguments_is_named_before_it_runs(tmp_path):
    old = attrs.evolve(SYNTHETIC, name="old", factory="test_build:old_contract_dataset")
    with pytest.raises(BuildError, match=r"dataset 'old' \(test_build:old_contract_dataset\): its factory cannot be "
                                         r"called with \(params, data_root, cache_dir, skip_bad, force\)"):
        build_dataset(old, SyntheticParams(), data_root=None, cache_dir=tmp_path, skip_bad=True)


def test_a_factory_that_returns_the_wrong_thing_is_named(tmp_path):
    liar = attrs.evolve(SYNTHETIC, name="liar", factory="test_build:dataset_returning_a_folder_name")
    with pytest.raises(BuildError, match=r"dataset 'liar' .*returned str, not a PreparedData"):
        build_dataset(liar, SyntheticParams(), data_root=None, cache_dir=tmp_path)
    chain = Chain(image=ImageSpec(64, 64))
    backbone = attrs.evolve(DARKNET53, name="dicty", factory="test_build:backbone_returning_a_dict")
    with pytest.raises(BuildError, match=r"backbone 'dicty' .*returned dict, not a keras.Model"):
        build_model_part(backbone, DarknetParams(), chain)


def test_a_builtin_evaluator_passes_the_same_check():
    evaluator = build(KITTI_AP, KittiAPParams(), classes=("Car",))
    assert callable(evaluator.evaluate)
