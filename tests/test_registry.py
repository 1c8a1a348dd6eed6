"""Plugins are found through entry points; broken, clashing or disabled ones are reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_plugin_package, pythonpath_env, run_cli

from detplug.registry import Registry, RegistryError

BACKBONE = '''
from attrs import frozen
from detplug import Component, FeatureSpec, hookimpl
PLUGIN_API = {api}

@frozen
class Params:
    width: float = 1.0

def spec(params, chain):
    return {{8: FeatureSpec(8, 16), 16: FeatureSpec(16, 32), 32: FeatureSpec(32, 64)}}

COMPONENT = Component(kind="backbone", name="{name}", summary="a test backbone", params=Params, spec=spec,
                      factory="nowhere:build")

@hookimpl
def detplug_components():
    return [COMPONENT]
'''

RAISES_ON_IMPORT = "raise ImportError('No module named tensorflow_addons')\n"

BAD_HOOKIMPL = '''
from detplug import hookimpl
PLUGIN_API = 1

@hookimpl
def detplug_epoch_end(run, epoch, logs, extra):
    pass
'''

MISSPELT_HOOK = '''
from detplug import hookimpl
PLUGIN_API = 1

@hookimpl
def detplug_epoch_ends(run, epoch, logs):
    pass
'''


def discover_with(folder: Path, monkeypatch) -> Registry:
    """Built-ins plus the packages installed in ``folder``, found through their dist-info."""
    monkeypatch.syspath_prepend(str(folder))
    return Registry.discover()


def test_third_party_backbone_is_listed_with_its_distribution_and_version(tmp_path, monkeypatch):
    make_plugin_package(tmp_path, "detplug-extra", {"extra_bb": BACKBONE.format(api=1, name="extra")}, version="2.3")
    registry = discover_with(tmp_path, monkeypatch)
    found = registry.get("backbone", "extra")
    assert (found.provider.distribution, found.provider.version, found.provider.entry_point) == \
        ("detplug-extra", "2.3", "extra_bb")
    assert registry.get("backbone", "darknet53").provider.distribution == "detplug"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (RAISES_ON_IMPORT, "ImportError: No module named tensorflow_addons"),
        (BAD_HOOKIMPL, "PluginValidationError"),
        (MISSPELT_HOOK, "'detplug_epoch_ends', which is not a detplug hook"),
        (BACKBONE.format(api=2, name="future"), "requires plugin API 2, detplug provides 1"),
        ("from detplug import hookimpl\n", "declares no PLUGIN_API"),
    ],
    ids=["import-error", "bad-hookimpl", "misspelt-hook", "api-version", "no-api"],
)
def test_broken_plugin_is_reported_with_distribution_and_skipped(code, expected, tmp_path, monkeypatch, request):
    # A module name of its own per case: Python caches imported modules by name.
    name = "broken_" + request.node.callspec.id.replace("-", "_")
    make_plugin_package(tmp_path, "detplug-broken", {name: code}, version="0.9")
    make_plugin_package(tmp_path, "detplug-good", {"good_plugin": BACKBONE.format(api=1, name="good")})
    registry = discover_with(tmp_path, monkeypatch)
    [error] = registry.load_errors
    assert (error.provider.distribution, error.provider.version, error.provider.entry_point) == \
        ("detplug-broken", "0.9", name)
    assert expected in error.error
    assert registry.get("backbone", "good")  # the others still work
    with pytest.raises(RegistryError, match=f"--strict-plugins: plugin '{name}'"):
        registry.raise_for_load_errors()


def test_unknown_name_mentions_the_plugin_that_failed_to_load(tmp_path, monkeypatch):
    make_plugin_package(tmp_path, "detplug-broken", {"broken_plugin": RAISES_ON_IMPORT})
    registry = discover_with(tmp_path, monkeypatch)
    with pytest.raises(RegistryError) as error:
        registry.get("backbone", "tinynet")
    assert "plugin 'broken_plugin' (detplug-broken 0.1) failed to load" in str(error.value)


def test_same_name_from_two_distributions_is_an_error_naming_both(tmp_path, monkeypatch):
    make_plugin_package(tmp_path, "detplug-one", {"one_bb": BACKBONE.format(api=1, name="twin")}, version="1.0")
    make_plugin_package(tmp_path, "detplug-two", {"two_bb": BACKBONE.format(api=1, name="twin")}, version="2.0")
    registry = discover_with(tmp_path, monkeypatch)
    with pytest.raises(RegistryError) as error:
        registry.get("backbone", "twin")
    assert "detplug-one 1.0" in str(error.value) and "detplug-two 2.0" in str(error.value)
    assert registry.get("backbone", "darknet53")  # everything else still works


def test_the_identical_plugin_registered_twice_is_harmless(tmp_path, monkeypatch):
    make_plugin_package(tmp_path, "detplug-dup", {"dup_bb": BACKBONE.format(api=1, name="dup")},
                        entry_points={"dup_a": "dup_bb", "dup_b": "dup_bb"})
    registry = discover_with(tmp_path, monkeypatch)
    assert registry.get("backbone", "dup").provider.distribution == "detplug-dup"
    assert registry.load_errors == [] and registry.clashes == {}


def test_disable_plugins_by_entry_point_name_never_imports_them(tmp_path, monkeypatch):
    make_plugin_package(tmp_path, "detplug-broken", {"broken_plugin": RAISES_ON_IMPORT})
    monkeypatch.setenv("DETPLUG_DISABLE_PLUGINS", "broken_plugin, heads")
    registry = discover_with(tmp_path, monkeypatch)
    assert registry.load_errors == []
    assert {p.entry_point for p in registry.disabled} == {"broken_plugin", "heads"}
    with pytest.raises(RegistryError, match="plugin 'heads' \\(detplug .*\\) is disabled"):
        registry.get("head", "yolov3_fpn")


def test_disable_autoload_keeps_only_the_built_ins(tmp_path, monkeypatch):
    make_plugin_package(tmp_path, "detplug-extra", {"extra_bb": BACKBONE.format(api=1, name="extra")})
    monkeypatch.setenv("DETPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = discover_with(tmp_path, monkeypatch)
    assert {r.provider.distribution for r in registry.all()} == {"detplug"}
    assert [p.entry_point for p in registry.disabled] == ["extra_bb"]


def test_list_shows_failed_plugins_in_their_own_section_and_strict_makes_them_fatal(tmp_path):
    env = pythonpath_env(make_plugin_package(tmp_path, "detplug-broken", {"broken_plugin": RAISES_ON_IMPORT}))
    listing = run_cli("--list", env=env)
    assert listing.returncode == 0 and " darknet53 " in listing.stdout
    section = listing.stdout.split("plugins that failed to load (skipped):")[1]
    assert "broken_plugin (detplug-broken 0.1): ImportError: No module named tensorflow_addons" in section
    strict = run_cli("--list", "--strict-plugins", env=env)
    assert strict.returncode == 2 and "broken_plugin" in strict.stderr
