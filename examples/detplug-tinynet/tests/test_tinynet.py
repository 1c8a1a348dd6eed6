"""detplug-tinynet meets detplug's contracts: run against the installed package.

    pip install ./examples/detplug-tinynet && pytest examples/detplug-tinynet/tests
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from detplug_tinynet import logger
from detplug_tinynet.plugin import TINYNET, TinyNetParams

from detplug import Chain, ImageSpec, SpecError
from detplug.registry import Registry
from detplug.testing import check_component, check_params_defaults


def test_tinynet_meets_the_detplug_backbone_contract():
    ran = check_component(TINYNET)
    assert any(name.startswith("check_serialization") for name in ran)


def test_tinynet_meets_the_contract_at_other_params():
    check_component(TINYNET, params=TinyNetParams(width=0.25, channels=(16, 24, 40)))


def test_tinynet_params_have_defaults_and_read_back_from_plan_values():
    check_params_defaults(TINYNET)


def test_tinynet_rejects_an_image_not_divisible_by_32():
    with pytest.raises(SpecError) as raised:
        TINYNET.spec(TinyNetParams(), Chain(image=ImageSpec(100, 96)))
    assert raised.value.field == "image size" and raised.value.found == "100x96"
    assert raised.value.upstream == "dataset"


def test_tinynet_params_name_a_bad_channels_value():
    with pytest.raises(ValueError, match="'channels' must be three positive integers"):
        TinyNetParams(channels=(16, 32))


def test_installed_plugins_load_and_register_tinynet_with_its_distribution():
    registry = Registry.discover()
    assert [error for error in registry.load_errors if error.provider.distribution == "detplug-tinynet"] == []
    registered = registry.get("backbone", "tinynet")
    assert registered.component is TINYNET
    assert (registered.provider.distribution, registered.provider.version) == ("detplug-tinynet", "0.1.0")


def test_plan_dir_ships_the_synthetic_plan():
    dirs = [Path(d) for found in Registry.discover().hook.detplug_plan_dirs() for d in found]
    assert any((folder / "tinynet_synthetic.toml").is_file() for folder in dirs)


def test_logger_writes_one_json_line_per_epoch_and_drops_epochs_trained_again(tmp_path):
    run = SimpleNamespace(folder=SimpleNamespace(path=tmp_path), start_epoch=0)
    for epoch in (1, 2, 3):
        logger.detplug_epoch_end(run=run, epoch=epoch, logs={"total": 1.0 / epoch, "period": 1})
    lines = [json.loads(line) for line in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3] and lines[1]["total"] == 0.5

    logger.detplug_train_start(run=SimpleNamespace(folder=run.folder, start_epoch=1))
    kept = [json.loads(line) for line in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in kept] == [1]
