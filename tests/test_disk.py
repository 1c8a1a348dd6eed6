"""Faults of the disk are sentences: a real full tmpfs and a real read-only one.

Mounting needs root, which CI has (the tests run as root there); elsewhere these tests
are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                reason="mounting a tmpfs needs root and mount(8)")


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs: too small for a checkpoint of the tiny plan's model (~10 MB)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


@pytest.mark.slow(seconds=35)
def test_a_full_disk_stops_training_with_one_sentence_and_leaves_nothing_half_written(finished, small_disk):
    plan, _, cache = finished
    workdir = small_disk / "run"
    result = run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache))
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error == (f"error: cannot write checkpoint 'epoch-0001' in {workdir / 'checkpoints'}: the disk is full; "
                     f"free space on it, or write somewhere else (--workdir, --cache-dir, --out). Nothing already "
                     f"written was lost: files are put in place only when complete")
    assert "Traceback" not in result.stderr
    assert not list((workdir / "checkpoints").iterdir())  # the half-written checkpoint is gone
    # history.csv has no row past the last written checkpoint (none): the row follows the save.
    history = workdir / "history.csv"
    assert not history.exists() or len(history.read_text().splitlines()) <= 1, history.read_text()


def test_a_read_only_run_folder_or_output_folder_is_one_sentence(finished, small_disk):
    plan, run, cache = finished
    workdir = small_disk / "run"
    workdir.mkdir()
    remount_read_only(small_disk)
    trained = run_cli("--plan", str(plan), "--workdir", str(workdir), "--cache-dir", str(cache))
    assert trained.returncode == 2
    assert trained.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot write the writer lock .writer.lock in {workdir}: the file system is read-only; write "
        f"somewhere else")

    image = next((cache / "synthetic").rglob("*.png"))
    predicted = run_cli("--plan", str(plan), "--workdir", str(run), "--cache-dir", str(cache),
                        "--predict", str(image), "--out", str(small_disk / "drawn"))
    assert predicted.returncode == 2, predicted.stderr[-3000:]
    assert predicted.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot write the predictions folder in {small_disk}: the file system is read-only")


def test_a_full_cache_disk_stops_the_conversion_with_one_sentence(finished, small_disk):
    plan, _, _ = finished
    result = run_cli("--plan", str(plan), "--prepare", "--cache-dir", str(small_disk / "cache"),
                     "--set", "datasets.synth.images=200", "--set", "datasets.synth.source_size=[256, 512]")
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert "the disk is full" in line and line.startswith("error: cannot write ") and "Traceback" not in result.stderr


def test_a_read_only_tensorboard_folder_is_one_sentence(small_disk):
    from types import SimpleNamespace

    from detplug.core.disk import DiskError
    from detplug.core.train.run_folder import RunFolder
    from detplug.plugins.loggers import tensorboard

    folder = RunFolder(small_disk / "run")
    folder.path.mkdir()
    remount_read_only(small_disk)
    with pytest.raises(DiskError) as raised:
        tensorboard.detplug_epoch_end(run=SimpleNamespace(folder=folder), epoch=1, logs={"total": 1.0})
    assert str(raised.value).startswith(
        f"cannot write the TensorBoard log in {folder.tensorboard}: the file system is read-only; write somewhere else")
