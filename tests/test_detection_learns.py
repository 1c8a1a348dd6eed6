"""A small plan learns to detect: trained on one synthetic split, it finds the objects of
images it never saw (the held-out split) far above chance, every stride gets ground truth,
and the run reports as a user reads it: one plain line per epoch in a log, then the AP
table, the drawn predictions and the commands that use the result."""

from __future__ import annotations

import csv
import json
import re

import pytest

pytestmark = pytest.mark.slow(seconds=150)


def last_row(learned: dict) -> dict[str, str]:
    with open(learned["workdir"] / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))[-1]


def test_a_small_plan_detects_objects_in_images_it_never_trained_on(learned):
    manifest = json.loads(next((learned["cache"] / "records").glob("synthetic-*/manifest.json")).read_text())
    assert manifest["splits"]["train"]["images"] == 160 and manifest["splits"]["val"]["images"] == 40
    row = last_row(learned)
    # kitti_ap on the 40 held-out images: chance is ~0; measured 0.53 (Car 0.15 at IoU 0.7,
    # Pedestrian 0.80, Cyclist 0.63) on a 2-core CPU.
    assert float(row["mAP_moderate_AP40"]) >= 0.3, row


def test_every_stride_gets_positives_and_the_run_says_how_many(learned):
    report = [line for line in learned["stdout"].splitlines() if line.startswith("targets of epoch 1")]
    assert len(report) == 1, learned["stdout"][-3000:]
    counts = dict(part.split(": ") for part in report[0].split("positives per stride ")[1].split("; "))
    assert sorted(counts, key=int) == ["8", "16", "32"]
    assert all(int(count.replace(",", "")) > 0 for count in counts.values())
    assert "warning" not in learned["stdout"]


def test_progress_in_a_log_file_is_one_plain_line_per_epoch(learned):
    out = learned["stdout"]
    assert "\r" not in out and "\x1b" not in out and "\x08" not in out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == [f"epoch {epoch}/6" for epoch in range(1, 7)]
    assert all(", lr " in line and "images/s" in line for line in epoch_lines)


def test_a_run_ends_with_the_ap_table_the_drawn_predictions_and_the_commands(learned):
    lines = learned["stdout"].rstrip().splitlines()
    grid = learned["workdir"] / "predictions" / "ep06.png"
    assert grid.is_file()
    table_start = lines.index("kitti_ap on the val split after epoch 6:")
    tail = lines[table_start:]
    assert tail[1].startswith("class") and "moderate AP40" in tail[1]
    assert any(line.startswith("kitti_ap mAP_moderate_AP40: ") for line in tail)
    assert f"drawn val predictions: {grid}" in tail
    commands = tail[tail.index("use the result:") + 1:]
    assert [command.split()[2] for command in commands] == ["evaluate", "predict", "export"]
    assert all(command.strip().startswith(f"python run.py {command.split()[2]} --plan {learned['plan']} --workdir "
                                          f"{learned['workdir']}") for command in commands)


def test_the_run_says_first_what_it_does_then_the_rate_in_force_and_the_metric_of_every_epoch(learned):
    lines = learned["stdout"].splitlines()
    assert re.fullmatch(rf"training plan 'learns': 2 periods, 6 epochs, on CPU \(\d+ threads?\), into "
                        rf"{re.escape(str(learned['workdir']))}", lines[0]), lines[0]
    # 40 val images against 160 training images: about 2 x 40 / 160 = 50% of an epoch, so every 5 epochs.
    assert ('evaluation on synth\'s val split: every 5 epochs and after the last (eval_every = "auto": evaluating 40 '
            'images costs about 50% of an epoch of 160 training images, so every 5 epochs keeps it under 10%)') in lines
    # Cosine after one warmup epoch of 20 steps (160 images, batch 8): step 0 runs at 2e-3 / 20.
    headers = [line for line in lines if line.startswith("== period ")]
    assert "learning rate 0.0001 at its first step (cosine from 0.002 to 2e-05 after 1 warmup epoch)" in headers[0]
    assert "learning rate 1e-05 at its first step (cosine from 0.0002 to 2e-06 after 1 warmup epoch)" in headers[1]
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    evaluated = [bool(re.search(r", mAP_moderate_AP40 \d+\.\d\d%, lr ", line)) for line in epoch_lines]
    assert evaluated == [False, False, False, False, True, True], epoch_lines  # epoch 5, and the last
    with open(learned["workdir"] / "history.csv", newline="") as handle:
        assert [bool(row["mAP_moderate_AP40"]) for row in csv.DictReader(handle)] == evaluated
    assert not any(line.startswith("class ") for line in lines[:lines.index(epoch_lines[-1])])  # one table, at the end
