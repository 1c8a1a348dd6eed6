"""The whole detection path is right: the shipped synthetic_overfit plan fits its own
training images to COCO AP50 >= 0.8 (targets, decoder, losses, NMS and AP agreeing)."""

from __future__ import annotations

import csv

import pytest

from helpers import run_cli


@pytest.mark.slow(seconds=270)
def test_synthetic_overfit_plan_reaches_ap50_of_at_least_0_8(tmp_path):
    workdir = tmp_path / "run"
    result = run_cli("--plan", "synthetic_overfit", "--workdir", str(workdir), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(workdir / "history.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    assert float(last["AP50"]) >= 0.8, f"AP50 {last['AP50']} (mAP {last['mAP']})"
    assert (workdir / "predictions" / f"ep{int(last['epoch']):02d}.png").is_file()
    assert (workdir / "checkpoints" / "best.weights.h5").is_file()
