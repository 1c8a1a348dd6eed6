"""What detplug says goes through Python's logging: an embedding program silences or
redirects it, --quiet drops the info lines, the other workers of a cluster say only warnings."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_cli, write_tiny_plan

from detplug.core.cli.listing import print_check
from detplug.core.console import ConsoleHandler, console, warnings_only_unless_verbose
from detplug.core.plan.check import static_check
from detplug.core.plan.plan_file import load_plan, resolve_components
from detplug.registry import Registry
from detplug.run import parse_commands


class Kept(logging.Handler):
    """An embedding program's own handler: it keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def detplug_logger() -> Iterator[logging.Logger]:
    """The `detplug` logger, its level and handlers put back after the test."""
    logger = logging.getLogger("detplug")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def _static_check(plan: Path) -> None:
    loaded = load_plan(plan)
    print_check(static_check(loaded, resolve_components(loaded, Registry.discover())), symbolic=False)


def _only_warnings(text: str) -> bool:
    return all(line.startswith("warning: ") for line in text.splitlines())


def test_an_embedding_program_silences_detplug_by_its_logger_level(tmp_path, capsys, detplug_logger):
    plan = write_tiny_plan(tmp_path)
    _static_check(plan)
    assert "spec chain (pure Python):" in capsys.readouterr().out  # the console shows the check...
    detplug_logger.setLevel(logging.WARNING)
    _static_check(plan)
    # ...until the program turns detplug's info off: the tiny plan's anchor warnings remain.
    said = capsys.readouterr()
    assert said.err == "" and said.out and _only_warnings(said.out)


def test_an_embedding_program_redirects_detplug_to_a_handler_of_its_own(tmp_path, capsys, detplug_logger):
    kept = Kept()
    detplug_logger.handlers[:] = [kept]
    detplug_logger.setLevel(logging.INFO)
    _static_check(write_tiny_plan(tmp_path))
    assert capsys.readouterr() == ("", "")
    said = {record.getMessage(): record.name for record in kept.records}
    assert said["spec chain (pure Python):"] == "detplug.core.cli.listing"
    assert all(name.startswith("detplug.") for name in said.values())


def test_importing_detplug_sets_up_no_output_of_its_own(tmp_path):
    code = ("import logging, detplug.run; logger = logging.getLogger('detplug'); "
            "print([type(h).__name__ for h in logger.handlers], logger.level, logging.getLogger().handlers)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "['NullHandler'] 0 []", result.stderr


def test_quiet_drops_the_info_lines_and_keeps_the_errors(tmp_path):
    plan = write_tiny_plan(tmp_path)
    said = run_cli("check", "--plan", str(plan), "--static")
    assert said.returncode == 0 and "spec chain (pure Python):" in said.stdout
    quiet = run_cli("check", "--plan", str(plan), "--static", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout and _only_warnings(quiet.stdout)
    # The older flag form takes it too; an error is still said, on stderr.
    failed = run_cli("--plan", str(tmp_path / "missing.toml"), "--check", "--static", "--quiet")
    assert failed.returncode == 2 and failed.stdout == "" and failed.stderr.startswith("error: ")


def test_verbose_adds_debug_lines_on_stderr_and_list_keeps_its_own_meaning():
    plain = run_cli("list", "backbone")
    verbose = run_cli("list", "backbone", "--verbose")
    assert plain.stderr == "" and "plugin 'backbones' (detplug " in verbose.stderr
    # list --verbose still shows each component's params and factory; the table stays on stdout.
    assert "factory: " in verbose.stdout and "factory: " not in plain.stdout
    assert "components\n" not in verbose.stdout


def test_quiet_and_verbose_together_are_one_sentence(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_commands(["check", "--plan", "p", "--quiet", "--verbose"])
    assert stopped.value.code == 2
    assert "--quiet and --verbose cannot be combined; give one of them" in capsys.readouterr().err


def test_the_console_is_attached_once_however_often_main_runs(detplug_logger):
    def consoles() -> int:
        return sum(isinstance(handler, ConsoleHandler) for handler in detplug_logger.handlers)

    with console(logging.WARNING), console(logging.DEBUG):  # main() inside a program that attached one
        assert consoles() == 1 and detplug_logger.level == logging.DEBUG
    assert consoles() == 1 and detplug_logger.level == logging.INFO  # the tests' console (conftest.py)
    detplug_logger.handlers[:] = [h for h in detplug_logger.handlers if not isinstance(h, ConsoleHandler)]
    detplug_logger.setLevel(logging.NOTSET)
    for _ in range(2):  # main() twice in one process: each time one console, gone afterwards
        with console():
            assert consoles() == 1 and detplug_logger.level == logging.INFO
        assert consoles() == 0 and detplug_logger.level == logging.NOTSET


def test_other_workers_say_only_warnings_unless_verbose(capsys, detplug_logger):
    worker = logging.getLogger("detplug.core.train.training")
    with warnings_only_unless_verbose():
        worker.info("epoch 1/2: loss 3.1")
        worker.warning("warning: stride 32 received no positive")
    assert capsys.readouterr().out == "warning: stride 32 received no positive\n"
    with console(logging.DEBUG), warnings_only_unless_verbose():
        worker.info("epoch 1/2: loss 3.1")
    assert capsys.readouterr().out == "epoch 1/2: loss 3.1\n"


def test_a_handler_a_library_put_on_the_root_logger_does_not_print_detplug_lines_again(tmp_path):
    # A library may give the root logger a handler (any module-level logging.info() call does):
    # detplug's console lines must not reach it too, or each line prints twice, the second time
    # as "INFO:detplug...". A kitti_simple training run printed every line twice before.
    import io

    library_handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(library_handler)
    try:
        result = run_cli("check", "--plan", str(write_tiny_plan(tmp_path)), "--static")
    finally:
        logging.getLogger().removeHandler(library_handler)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()  # the check said what it found, on the console alone
    assert library_handler.stream.getvalue() == ""
