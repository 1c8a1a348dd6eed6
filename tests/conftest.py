"""Fixtures that make tiny real plans and data; no mocks of TensorFlow."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import run_cli, shared_folder, write_learning_plan, write_switch_plan, write_tiny_plan


@pytest.fixture(autouse=True)
def console() -> Iterator[None]:
    """What detplug says on the console, as the command line shows it: tests call its functions
    directly and read their lines with capsys (run.main attaches the same handler, once)."""
    from detplug.core.console import console

    with console(logging.INFO):
        yield


@pytest.fixture
def tiny_plan(tmp_path: Path) -> Path:
    return write_tiny_plan(tmp_path)


def _trained(write_plan: Callable[[Path], Path]) -> Callable[[Path], None]:
    """Builds a shared folder: the plan ``write_plan`` writes there, trained through the CLI,
    its output kept in stdout.txt."""
    def build(folder: Path) -> None:
        plan = write_plan(folder)
        result = run_cli("--plan", str(plan), "--workdir", str(folder / "run"), "--cache-dir", str(folder / "cache"))
        assert result.returncode == 0, result.stderr[-3000:]
        (folder / "stdout.txt").write_text(result.stdout)

    return build


@pytest.fixture(scope="session")
def learned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The learning plan (helpers.LEARNING_PLAN) trained once through the CLI for the session."""
    folder = shared_folder(tmp_path_factory, "learned", _trained(write_learning_plan))
    return {"plan": folder / "learns.toml", "workdir": folder / "run", "cache": folder / "cache",
            "folder": folder, "stdout": (folder / "stdout.txt").read_text()}


@pytest.fixture(scope="session")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The tiny plan's 1+1 epochs trained once through the CLI for the session: (plan, run
    folder, cache); its output is run folder/../stdout.txt. Copy the run folder to change it."""
    def write(folder: Path) -> Path:  # with its pictures, which test_training_curves.py looks at
        plan = write_tiny_plan(folder)
        plan.write_text(plan.read_text().replace("plots = false\n", "plots = true\n"))
        return plan

    folder = shared_folder(tmp_path_factory, "finished", _trained(write))
    return folder / "tiny.toml", folder / "run", folder / "cache"


@pytest.fixture(scope="session")
def switched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """helpers.SWITCH_PLAN (5 classes at 64x96, then 3 at 96x128) trained once through the CLI
    for the session, deterministic and with EMA; copy the run folder to change it."""
    def write(folder: Path) -> Path:
        plan = write_switch_plan(folder)
        plan.write_text(plan.read_text().replace("seed = 0\n", "seed = 0\ndeterministic = true\nema = true\n"))
        return plan

    folder = shared_folder(tmp_path_factory, "switched", _trained(write))
    return {"plan": folder / "switch.toml", "workdir": folder / "run", "cache": folder / "cache",
            "folder": folder, "stdout": (folder / "stdout.txt").read_text()}


#: Seconds each shared trained run takes to build on a 2-core machine (its setup time in
#: ``--durations``), paid by the first test that asks for it.
SHARED_BUILD_SECONDS = {"learned": 170, "exported": 110, "finished": 90, "switched": 85, "straight": 60,
                        "killed_after_epoch_2": 40}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, so that the xdist workers do not end with one of them alone on
    a long test while the others have finished. A test's length is its
    ``@pytest.mark.slow(seconds=N)`` (measured on a 2-core machine), plus the build of a
    shared run when it is that run's longest user, which then builds it early.

    ``--dist worksteal`` first hands each worker a contiguous slice of this order, and a
    worker that runs out steals from the end of another's. So the order deals the tests out
    round-robin, longest first: each slice starts with its own share of the long ones."""

    def own_seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("seconds", 10))

    seconds = {item.nodeid: own_seconds(item) for item in items}
    for fixture, build in SHARED_BUILD_SECONDS.items():
        users = [item for item in items if fixture in getattr(item, "fixturenames", ())]
        if users:
            seconds[max(users, key=lambda item: seconds[item.nodeid]).nodeid] += build
    ordered = sorted(items, key=lambda item: seconds[item.nodeid], reverse=True)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    items[:] = [item for start in range(workers) for item in ordered[start::workers]]
