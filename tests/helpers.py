"""Helpers for tests: tiny real plans, and run.py in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_PY = REPO / "run.py"

TINY_PLAN = """
name = "tiny"

[model]
backbone = {{ name = "darknet53", width = 0.125, depth = 0.34 }}
head = {{ name = "yolov3_fpn", width = 0.125 }}
decoder = {{ name = "yolo" }}
anchors = "coco_yolov3"

[datasets.synth]
name = "synthetic"
image_size = [64, 96]
images = {images}
source_size = [64, 96]
max_boxes = 12

[loss_combos.standard]
ciou = 1.0
objectness = 1.0
category = 1.0

[train]
trainer = "{trainer}"
batch_size = 4
seed = 0

[[periods]]
dataset = "synth"
epochs = {epochs1}
learning_rate = 1e-3
losses = "standard"
save = true

[[periods]]
dataset = "synth"
epochs = {epochs2}
learning_rate = 1e-4
losses = "standard"
save = true
"""


def write_tiny_plan(folder: Path, *, trainer: str = "graph", images: int = 12, epochs1: int = 1,
                    epochs2: int = 1, name: str = "tiny.toml") -> Path:
    path = folder / name
    path.write_text(TINY_PLAN.format(trainer=trainer, images=images, epochs1=epochs1, epochs2=epochs2))
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` in a fresh process, as a user runs it."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
