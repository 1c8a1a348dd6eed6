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
from detplug.core.cli.commands import HANDLERS
from detplug.core.cli.parser import SUBCOMMANDS
from detplug.run import parse_args, parse_commands


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
        (["--plan=p", "--show-data", "--images", "4", "--period", "2", "--set=a.b=-1"],
         ["show-data", "--plan", "p", "--images", "4", "--period", "2", "--set", "a.b=-1"]),
        (["--data", "d", "--image-size", "384", "1248", "--epochs", "50", "--batch", "16"],
         ["train", "--data", "d", "--image-size", "384", "1248", "--epochs", "50", "--batch", "16"]),
        (["--plan", "p", "--predict", "a.png", "--format", "coco", "--coco-gt", "gt.json"],
         ["predict", "--plan", "p", "a.png", "--format", "coco", "--coco-gt", "gt.json"]),
        # Options the older form never had reach it from the subcommand's declaration.
        (["--plan", "p", "--check", "--static", "--strategy", "tpu"], ["check", "--plan", "p", "--static",
                                                                       "--strategy", "tpu"]),
    ],
)
def test_an_older_flag_form_means_the_same_command_as_its_subcommand(old, new):
    assert parse_commands(old) == parse_commands(new)


def test_evaluate_predict_and_export_together_run_one_after_the_other():
    commands = parse_commands(["--plan", "p", "--evaluate", "--predict", "x.png", "--export", "out", "--checkpoint",
                               "best", "--json", "ap.json", "--format", "tflite"])
    assert commands == [parse_args(["evaluate", "--plan", "p", "--checkpoint", "best", "--json", "ap.json"]),
                        parse_args(["predict", "--plan", "p", "x.png", "--checkpoint", "best"]),
                        parse_args(["export", "--plan", "p", "out", "--checkpoint", "best", "--format", "tflite"])]


def test_every_subcommand_has_its_function():
    assert HANDLERS.keys() == SUBCOMMANDS.keys()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plan", "p", "--check", "--evaluate"], "--check and --evaluate cannot be combined"),
        (["--plan", "p", "--prepare", "--anchors"], "--prepare and --anchors cannot be combined"),
        (["--list", "--kitti-eval", "a", "b"], "--list and --kitti-eval cannot be combined"),
        (["--plan", "p", "--write"], "--write means nothing with training; it goes with --anchors"),
        (["--plan", "p", "--check", "--checkpoint", "best"], "--checkpoint means nothing with --check"),
        (["--list", "--plan", "p"], "--plan means nothing with --list; it goes with training, --check"),
        (["--plan", "p", "--import-weights", "yolov3.weights"], "required: --out"),
        (["--set", "a=1"], "give --plan NAME"),
        (["--plan", "p", "--export", "d", "--format", "coco"], "--format coco means nothing with --export; it goes "
                                                               "with --predict"),
        (["--plan", "p", "--evaluate", "--predict", "x", "--write"], "--write means nothing with --evaluate "
                                                                     "--predict; it goes with --anchors"),
        (["--plan", "p", "--predict", "a", "--predict", "b"], "--predict and --predict cannot be combined"),
        (["--plan", "p", "--chek"], "unrecognized arguments: --chek"),
        (["--plan", "p", "--check", "extra"], "unrecognized arguments: extra"),
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
    assert all(command in overview for command in SUBCOMMANDS)


def test_the_older_forms_help_is_its_subcommands(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_commands(["--plan", "p", "--check", "--help"])
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("usage: detplug check ")


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


def readme_commands() -> list[list[str]]:
    """The arguments of every command in the README's sh blocks (``run.py ...`` or ``detplug
    ...``), each with its [optional] parts left out and again with them in (the first of
    a|b|c, and 1 for N); lines of alternatives (``prepare | evaluate``) or ``...`` are no command."""
    text = (RUN_PY.parent / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            match = re.search(r"(?:run\.py|^\s*detplug)\s+(.*?)\s*(?:#.*)?$", line)
            if match is None or " | " in match.group(1) or "..." in match.group(1):
                continue
            for inlined in (lambda m: "", lambda m: re.sub(r"\|\S+", "", m.group(1))):
                arguments = match.group(1)
                while "[" in arguments:
                    arguments = re.sub(r"\[([^\[\]]*)\]", inlined, arguments)
                found.append(["1" if word == "N" else word for word in arguments.split()])  # --images N
    return found


def test_every_command_the_readme_shows_parses_and_the_older_forms_mean_a_subcommand():
    commands = readme_commands()
    assert len(commands) > 40 and ["--plan", "kitti_simple"] in commands
    for argv in commands:
        parsed = parse_commands(argv)
        assert all(args.command in SUBCOMMANDS for args in parsed), argv
