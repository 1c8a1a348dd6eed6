"""One run folder, one writer: the OS lock on a run folder, with real processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

from detplug.core.errors import RunFolderBusy
from detplug.core.train.run_folder import WRITER_LOCK, RunFolder

HOLD = """
import time
from detplug.core.train.run_folder import RunFolder
with RunFolder(__import__("pathlib").Path({folder!r})).writer():
    print("holding", flush=True)
    time.sleep(120)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another real process holding ``folder``'s writer lock (as a training run does)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(folder=str(folder))],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_run_on_a_locked_folder_stops_at_once_naming_the_holder(finished, tmp_path):
    plan, _, cache = finished
    workdir = tmp_path / "run"
    holder = hold_lock(workdir)
    try:
        started = time.monotonic()
        second = run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache))
        assert second.returncode == 2 and time.monotonic() - started < 30
        assert (f"run folder {workdir} is being trained by pid {holder.pid} on host {socket.gethostname()} since "
                in second.stderr)
        assert "wait for that run to end or stop it, or train into another --workdir" in second.stderr
        assert not (workdir / "checkpoints").exists()  # it touched nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_no_lock(tmp_path):
    holder = hold_lock(tmp_path)
    with pytest.raises(RunFolderBusy, match=f"pid {holder.pid} on host"):
        with RunFolder(tmp_path).writer():
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / WRITER_LOCK).read_text()  # its note stays behind
    with RunFolder(tmp_path).writer():  # the OS released its lock
        assert f"pid {os.getpid()} " in (tmp_path / WRITER_LOCK).read_text()


def test_a_locked_folders_finished_checkpoints_can_be_used(finished, tmp_path):
    plan, run, cache = finished
    workdir = tmp_path / "run"
    shutil.copytree(run, workdir)
    image = next((cache / "synthetic").rglob("*.png"))
    holder = hold_lock(workdir)
    try:
        result = run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache),
                         "--predict", str(image), "--out", str(tmp_path / "drawn"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert (tmp_path / "drawn" / f"{image.stem}.png").is_file()
    finally:
        holder.kill()
        holder.wait()
