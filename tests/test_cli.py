"""The command line: subcommands that declare only their own options, and the older flag
forms that keep working and mean the same command."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import RUN_PY, make_plugin_package, pythonpath_env, run_cli, write_tiny_plan

from detplug.core.cli import main as cli
from detplug.run import parse_args


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["--plan", "kitti_simple"], ["train", "--plan", "kitti_simple"]),
        (["--plan", "p", "--set", "a.b=1", "--strategy", "mirrored", "--workdir", "w", "--restart", "--skip-bad"],
         ["train", "--plan", "p", "--set", "a.b=1", "--strategy", "mirrored", "--workdir", "w", "--restart",
          "--skip-bad"]),
        (["--plan", "p", "--check"], ["check", "--plan", "p"]),
        (["--list"], ["list"]),
        (["--list", "backbone", "--verbose", "--json", "out.json"],
         ["list", "backbone", "--verbose", "--json", "out.json"]),
        (["--plan", "p", "--prepare", "--skip-bad", "--verify", "--force-prepare", "--data-root", "d"],
         ["prepare", "--plan", "p", "--skip-bad", "--verify", "--force", "--data-root", "d"]),
        (["--plan", "p", "--evaluate", "--checkpoint", "best", "--json", "ap.json"],
         ["evaluate", "--plan", "p", "--checkpoint", "best", "--json", "ap.json"]),
        (["--plan", "p", "--predict", "a.png", "b/", "--out", "o"], ["predict", "--plan", "p", "a.png", "b/", "--out", "o"]),
        (["--plan", "p", "--export", "exported"], ["export", "--plan", "p", "exported"]),
        (["--plan", "p", "--anchors", "--write"], ["anchors", "--plan", "p", "--write"]),
        (["--kitti-eval", "labels", "results", "--json", "k.json"], ["kitti-eval", "labels", "results", "--json", "k.json"]),
        (["--plan", "p", "--import-weights", "yolov3.weights", "--out", "o.weights.h5"],
         ["import-weights", "--plan", "p", "yolov3.weights", "--out", "o.weights.h5"]),
    ],
)
def test_an_older_flag_form_means_the_same_command_as_its_subcommand(old, new):
    before, after = vars(parse_args(old)), vars(parse_args(new))
    assert before["command"] == after["command"] and before["handlers"] == after["handlers"]
    for key, value in after.items():
        assert before[key] == value, key


def test_evaluate_predict_and_export_together_run_one_after_the_other():
    args = parse_args(["--plan", "p", "--evaluate", "--predict", "x.png", "--export", "out"])
    assert args.handlers == [cli.evaluate, cli.predict, cli.export]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plan", "p", "--check", "--evaluate"], "--check and --evaluate cannot be combined"),
        (["--plan", "p", "--prepare", "--anchors"], "--prepare and --anchors cannot be combined"),
        (["--list", "--kitti-eval", "a", "b"], "--list and --kitti-eval cannot be combined"),
        (["--plan", "p", "--write"], "--write means nothing with training; it goes with --anchors"),
        (["--plan", "p", "--check", "--checkpoint", "best"], "--checkpoint means nothing with --check"),
        (["--list", "--plan", "p"], "--list takes no --plan"),
        (["--plan", "p", "--import-weights", "yolov3.weights"], "--import-weights needs --out OUT.weights.h5"),
        (["--set", "a=1"], "give --plan NAME"),
        (["train", "--plan", "p", "--write"], "unrecognized arguments: --write"),
        (["check", "--checkpoint", "best", "--plan", "p"], "unrecognized arguments: --checkpoint"),
    ],
)
def test_options_that_mean_nothing_together_are_an_error(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_each_subcommand_help_shows_only_its_own_options():
    def help_of(command: str) -> str:
        return subprocess.run([sys.executable, str(RUN_PY), command, "--help"], capture_output=True, text=True,
                              check=True).stdout

    train, check, kitti = help_of("train"), help_of("check"), help_of("kitti-eval")
    assert "--restart" in train and "--write" not in train and "--checkpoint" not in train
    assert "--static" in check and "--restart" not in check and "--checkpoint" not in check
    assert "--data-root" in check and "--workdir" in check  # where things are: every plan command
    assert "LABEL_DIR" in kitti and "--plan" not in kitti
    overview = subprocess.run([sys.executable, str(RUN_PY), "--help"], capture_output=True, text=True).stdout
    assert all(command in overview for command in cli.COMMANDS)


def test_list_and_check_static_print_what_they_found(capsys):
    assert cli.main(["list", "decoder"]) == 0
    assert "yolov4" in capsys.readouterr().out
    assert cli.main(["check", "--plan", "kitti_simple", "--static"]) == 0
    out = capsys.readouterr().out
    assert "spec chain" in out and "not built (--static)" in out


def test_a_plan_not_found_names_the_plugins_that_failed_to_load(tmp_path):
    env = pythonpath_env(make_plugin_package(tmp_path / "site", "detplug-broken", {
        "broken_plans": "raise ImportError('needs somelib, which is not installed')\n"}))
    result = run_cli("--plan", "their_plan", "--check", env=env)
    assert result.returncode != 0
    assert "no plan named 'their_plan'" in result.stderr
    assert ("plugin 'broken_plans' (detplug-broken 0.1) failed to load and may provide plan 'their_plan': "
            "ImportError: needs somelib, which is not installed") in result.stderr


@pytest.mark.slow(seconds=40)
def test_tensorflow_start_up_noise_is_hidden_unless_asked_for(tmp_path):
    """CUDA probing on a machine without a GPU, oneDNN notices: TensorFlow's C++ runtime
    writes them to stderr at start-up. Hidden by default; --verbose-tf shows them."""
    plan = write_tiny_plan(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    runs = {flag: subprocess.run([sys.executable, str(RUN_PY), "check", "--plan", str(plan), *flag], env=env,
                                 capture_output=True, text=True, timeout=300)
            for flag in ((), ("--verbose-tf",))}
    quiet, verbose = runs[()], runs[("--verbose-tf",)]
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout == verbose.stdout and "symbolic Keras model" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr[-2000:]
    assert re.search(r"^[IWE]\d{4} ", verbose.stderr, re.M) or "absl::InitializeLog" in verbose.stderr
