"""A third-party plugin package, pip-installed for real, plugs into every part of detplug:
its backbone is listed with its distribution, the plan it ships is found and checked,
it trains, and its logger writes through the training hooks.

The package is examples/detplug-tinynet, installed with pip into a --target folder
that the subprocesses get on PYTHONPATH: exactly what an installed distribution
looks like to importlib.metadata, without touching the test environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, run_cli

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "detplug-tinynet"


def _can_build_wheels_offline() -> str | None:
    """Why pip cannot build the example without the network, or None when it can."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (pip install 'setuptools>=70.1')"
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {setuptools.__version__} needs the 'wheel' package to build wheels"
    return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The environment (PYTHONPATH) under which detplug-tinynet is installed."""
    reason = _can_build_wheels_offline()
    if reason:
        pytest.skip(f"cannot build the example package offline: {reason}")
    root = tmp_path_factory.mktemp("tinynet")
    # pip builds in the source tree (build/, *.egg-info): build a copy, keep the repository clean.
    source = root / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def test_list_shows_the_plugin_backbone_with_its_distribution(installed):
    result = run_cli("--list", "--json", env=installed)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    tinynet = [c for c in listing["components"] if (c["kind"], c["name"]) == ("backbone", "tinynet")]
    assert [(c["distribution"], c["version"]) for c in tinynet] == [("detplug-tinynet", "0.1.0")]
    assert listing["load_errors"] == []


def test_disabling_the_plugin_entry_point_by_name_hides_its_backbone(installed):
    result = run_cli("--list", "--json", env={**installed, "DETPLUG_DISABLE_PLUGINS": "tinynet"})
    assert result.returncode == 0, result.stderr
    names = {c["name"] for c in json.loads(result.stdout)["components"]}
    assert "tinynet" not in names and "darknet53" in names


def test_plan_shipped_by_the_plugin_is_found_and_passes_the_check(installed, tmp_path):
    result = run_cli("--plan", "tinynet_synthetic", "--check", env=installed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tinynet_synthetic.toml" in result.stdout
    assert "tinynet" in result.stdout and "detplug-tinynet 0.1.0" in result.stdout
    assert "every declared spec matches the built tensor shapes" in result.stdout


def test_plugin_plan_trains_and_the_plugin_logger_writes_one_line_per_epoch(installed, tmp_path):
    workdir = tmp_path / "run"
    result = run_cli(
        "--plan", "tinynet_synthetic", "--workdir", str(workdir), "--cache-dir", str(tmp_path / "cache"),
        "--set", "datasets.synthetic.images=16", "--set", "train.batch_size=4",
        env=installed, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (workdir / "epochs.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4, 5]
    assert all(line["total"] > 0 and line["val_total"] > 0 for line in lines)
    # The built-in logger ran beside it: the plugin adds to the hooks, it replaces nothing.
    assert len((workdir / "history.csv").read_text().splitlines()) == 1 + len(lines)
    assert 'detplug-tinynet = "0.1.0"' in (workdir / "plan.lock.toml").read_text()


def test_the_example_package_own_tests_pass_against_the_installed_package(installed, tmp_path):
    # Run from a folder that does not hold the source package, so the tests import the
    # installed copy: a missing package-data file or entry point fails here.
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(EXAMPLE / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **installed},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
