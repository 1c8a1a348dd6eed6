"""`run.py --list` shows every registered component without importing TensorFlow."""

import json
import subprocess
import sys

from helpers import RUN_PY, run_cli

BUILT_INS = {
    ("dataset", "kitti"), ("dataset", "synthetic"), ("backbone", "darknet53"), ("head", "yolov3_fpn"),
    ("decoder", "yolo"), ("loss", "ciou"), ("loss", "objectness"), ("loss", "category"),
    ("trainer", "eager"), ("trainer", "graph"),
}


def test_list_prints_kind_name_provider_and_summary():
    result = run_cli("--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    darknet = next(line for line in lines if " darknet53 " in line)
    assert darknet.startswith("backbone") and "detplug 0.1.0" in darknet and "Darknet-53" in darknet


def test_list_json_holds_every_built_in_component_with_its_distribution():
    result = run_cli("--list", "--json")
    listing = json.loads(result.stdout)
    found = {(c["kind"], c["name"]) for c in listing["components"]}
    assert BUILT_INS <= found
    assert all(c["distribution"] == "detplug" for c in listing["components"] if (c["kind"], c["name"]) in BUILT_INS)
    assert listing["load_errors"] == []


def test_list_one_kind_and_verbose_params():
    result = run_cli("--list", "backbone", "--verbose")
    assert result.returncode == 0
    assert "darknet53" in result.stdout and "kitti" not in result.stdout
    assert "width: float = 1.0" in result.stdout
    assert "factory: detplug.plugins.backbones.darknet:darknet53_from_params" in result.stdout


def test_list_unknown_kind_is_one_clear_error():
    result = run_cli("--list", "backbones")
    assert result.returncode == 2
    assert "no component kind 'backbones'" in result.stderr and "backbone" in result.stderr


def test_run_without_plan_or_list_explains_what_to_give():
    result = subprocess.run([sys.executable, str(RUN_PY)], capture_output=True, text=True)
    assert result.returncode == 2 and "--plan" in result.stderr
