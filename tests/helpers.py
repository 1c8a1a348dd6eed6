"""Helpers for tests: tiny real plans, and run.py in this process or a fresh one."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUN_PY = REPO / "run.py"

#: The smallest plan that trains: one residual block per Darknet stage (tracing the step, not
#: its arithmetic, is most of a tiny run's time: 22 s against 29 s at depth 0.34, 2-core CPU),
#: and no pictures ([train] plots; the shared `finished` run draws them).
TINY_PLAN = """
name = "tiny"

[model]
backbone = {{ name = "darknet53", width = 0.125, depth = 0.1 }}
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
plots = false

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


#: A small plan that learns to detect in about two minutes on a 2-core CPU: kitti_simple's
#: recipe (YOLOv5's assignment and loss balance, fitted anchors, Adam with warmup and cosine)
#: on 160 synthetic training images for six epochs. Evaluated on its 40 held-out images.
LEARNING_PLAN = """
name = "learns"

[model]
backbone = { name = "darknet53", width = 0.25, depth = 0.34 }
head = { name = "yolov3_fpn", width = 0.25 }
decoder = { name = "yolov4", scale_xy = 2.0 }
anchors = { 8 = [[4, 12], [7, 20], [11, 13]], 16 = [[16, 9], [11, 32], [23, 20]], 32 = [[18, 50], [38, 34], [64, 45]] }
assign = { anchor_ratio = 4.0, neighbours = true }

[datasets.synth]
name = "synthetic"
image_size = [96, 320]
images = 200

[loss_combos.standard]
ciou = 0.05
objectness = { weight = 0.075, iou_target = true }
category = 0.02

[train]
trainer = "graph"
batch_size = 8
seed = 0
bn_momentum = 0.9
schedule = "cosine"
warmup_epochs = 1

[evaluation]
evaluator = "kitti_ap"

[[periods]]
dataset = "synth"
epochs = 5
learning_rate = 2e-3
losses = "standard"
save = true

[[periods]]
dataset = "synth"
epochs = 1
learning_rate = 2e-4
losses = "standard"
save = true
"""


#: Two periods on datasets of different classes and image sizes: five classes of shapes at
#: 64x96 (a YOLO folder that write_yolo_shapes draws), then the synthetic KITTI sample's
#: three at 96x128. The eager trainer: two steps an epoch cost less than tracing them.
SWITCH_PLAN = """
name = "switch"

[model]
backbone = {{ name = "darknet53", width = 0.125, depth = 0.1 }}
head = {{ name = "yolov3_fpn", width = 0.125 }}
decoder = {{ name = "yolo" }}
anchors = {{ 8 = [[8, 8], [12, 16], [16, 12]], 16 = [[24, 24], [32, 20], [20, 32]], 32 = [[40, 40], [56, 40], [40, 56]] }}

[datasets.shapes]
name = "yolo_txt"
root = "{root}"
image_size = [64, 96]

[datasets.synth]
name = "synthetic"
image_size = [96, 128]
images = 10
source_size = [96, 128]
max_boxes = 12

[loss_combos.standard]
ciou = 1.0
objectness = 1.0
category = 1.0

[train]
trainer = "eager"
batch_size = 4
seed = 0
plots = false

[evaluation]
evaluator = "coco_map"

[[periods]]
dataset = "shapes"
epochs = 1
learning_rate = 1e-3
losses = "standard"
save = true

[[periods]]
dataset = "synth"
epochs = 2
learning_rate = 1e-4
losses = "standard"
save = true
"""

SHAPE_NAMES = ("red", "green", "blue", "yellow", "cyan")


def write_yolo_shapes(root: Path, *, train: int = 8, val: int = 2, seed: int = 0) -> Path:
    """A YOLO folder (images/ and labels/ per split, data.yaml) of 96x64 images holding one to
    three filled rectangles, each of one of SHAPE_NAMES' colours."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = Image.new("RGB", (96, 64), (90, 90, 90))
            draw, lines = ImageDraw.Draw(image), []
            for _ in range(int(rng.integers(1, 4))):
                kind, w, h = int(rng.integers(5)), int(rng.integers(10, 40)), int(rng.integers(10, 40))
                x, y = int(rng.integers(0, 96 - w)), int(rng.integers(0, 64 - h))
                draw.rectangle([x, y, x + w, y + h], fill=colours[kind])
                lines.append(f"{kind} {(x + w / 2) / 96:.5f} {(y + h / 2) / 64:.5f} {w / 96:.5f} {h / 64:.5f}")
            image.save(root / "images" / split / f"{index:04d}.png")
            (root / "labels" / split / f"{index:04d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"names: [{', '.join(SHAPE_NAMES)}]\n")
    return root


def voc_xml(filename: str, objects: list[tuple], *, size: tuple[int, int] | None = None) -> str:
    """A Pascal VOC annotation as LabelImg writes it. ``objects``: (name, (xmin, ymin, xmax, ymax))
    or (name, box, difficult); a box's values are written as given (1-based, as the devkit's);
    difficult None leaves the element out; ``size`` is (height, width)."""
    parts = [f"<annotation>\n  <folder>images</folder>\n  <filename>{filename}</filename>\n"]
    if size is not None:
        parts.append(f"  <size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>\n")
    for name, box, *difficult in objects:
        flag = difficult[0] if difficult else 0
        parts.append(f"  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n")
        if flag is not None:
            parts.append(f"    <difficult>{flag}</difficult>\n")
        corners = "".join(f"<{key}>{value}</{key}>" for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box,
                                                                           strict=True))
        parts.append(f"    <bndbox>{corners}</bndbox>\n  </object>\n")
    return "".join(parts) + "</annotation>\n"


def write_mobilenet_weights(folder: Path, input_shape: tuple[int, int, int]) -> Path:
    """A local Keras weights file of MobileNetV2 (alpha 0.35, no top) whose first convolution's
    kernel is all 0.125, as a keras.applications backbone's ``weights`` param takes one."""
    import keras
    import numpy as np

    source = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=input_shape)
    kernel = source.get_layer("Conv1").kernel
    kernel.assign(np.full(kernel.shape, 0.125, "float32"))
    path = folder / "mobilenetv2_035_notop.weights.h5"
    source.save_weights(path)
    return path


def write_switch_plan(folder: Path) -> Path:
    path = folder / "switch.toml"
    path.write_text(SWITCH_PLAN.format(root=write_yolo_shapes(folder / "shapes")))
    return path


def write_learning_plan(folder: Path) -> Path:
    path = folder / "learns.toml"
    path.write_text(LEARNING_PLAN)
    return path


def write_tiny_plan(folder: Path, *, trainer: str = "graph", images: int = 12, epochs1: int = 1,
                    epochs2: int = 1, name: str = "tiny.toml") -> Path:
    path = folder / name
    path.write_text(TINY_PLAN.format(trainer=trainer, images=images, epochs1=epochs1, epochs2=epochs2))
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600,
            fresh_process: bool = False) -> subprocess.CompletedProcess:
    """``python run.py ARGS``, as a user runs it: its exit code, stdout and stderr.

    It runs in this test process (``run.main(ARGS)``), which keeps TensorFlow imported and
    autograph's conversions cached from one run to the next: a tiny training run takes 11 s
    here against 18 s in a fresh process. A fresh process is started when the test needs one:
    ``env`` (plugins on PYTHONPATH, environment variables read at start-up), a run that is
    killed or signalled, or ``fresh_process=True``. ``timeout`` bounds a fresh process only."""
    if env is not None or fresh_process:
        return run_in_fresh_process(*args, cwd=cwd, env=env, timeout=timeout)
    return run_in_this_process(*args, cwd=cwd)


def run_in_fresh_process(*args: str, cwd: Path | None = None, env: dict | None = None,
                         timeout: float = 600) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` in a fresh process."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def run_in_this_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``run.main(ARGS)`` with stdout and stderr captured, in ``cwd``, and its exit status as a
    process would give it (an uncaught exception is 1, its traceback on stderr). The process-wide
    state a run sets (Keras' session and layer names, the dtype policy, op determinism) is put
    back as a fresh process has it, before and after, so runs do not see each other's."""
    import traceback

    from detplug.core.cli.main import main

    _reset_process_state()
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors, --help
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - what a process would print before exiting 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
        _reset_process_state()
    return subprocess.CompletedProcess([sys.executable, str(RUN_PY), *args], code, out.getvalue(), err.getvalue())


def _reset_process_state() -> None:
    """What a fresh process starts with, where a run changes it for the rest of its process."""
    if "tensorflow" not in sys.modules:
        return
    import keras
    from tensorflow.python.framework import config as tf_config

    keras.backend.clear_session()  # layer names (conv2d, conv2d_1, ...) count from zero again
    keras.config.set_dtype_policy("float32")  # [train] mixed_precision
    if tf_config.is_op_determinism_enabled():  # [train] deterministic
        tf_config.disable_op_determinism()


def make_plugin_package(folder: Path, distribution: str, modules: dict[str, str], *, version: str = "0.1",
                        entry_points: dict[str, str] | None = None) -> Path:
    """A real little installed package in ``folder``: the modules (name -> code) plus a
    ``*.dist-info`` whose entry_points.txt registers them under group ``detplug``
    (entry-point name -> module; by default each module under its own name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for module, code in modules.items():
        (folder / f"{module}.py").write_text(code)
    dist_info = folder / f"{distribution.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    entry_points = entry_points or {module: module for module in modules}
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[detplug]\n{lines}")
    return folder


def pythonpath_env(folder: Path) -> dict[str, str]:
    """The environment under which a fresh ``run.py`` discovers packages in ``folder``."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def hook_plugin_env(folder: Path, name: str, code: str) -> dict[str, str]:
    """A plugin package holding only ``code`` (hook implementations); see make_plugin_package."""
    return pythonpath_env(make_plugin_package(folder, name, {name: code}))


def shared_folder(tmp_path_factory: Any, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build`` fills once per test session, whichever xdist worker asks
    first: the workers share one base folder, and a lock makes any other wait for it. A
    module-scoped fixture would be built once per worker that runs one of its tests."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's own
    folder = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def kill_at(hook: str, condition: str) -> str:
    """Plugin code that SIGKILLs its own process in ``hook`` when ``condition`` holds,
    after every other implementation of the hook (the loggers) has run."""
    arguments = {"detplug_epoch_end": "run, epoch, logs", "detplug_period_start": "run, period, index"}[hook]
    return (
        "import os, signal\n"
        "from detplug import hookimpl\n"
        "PLUGIN_API = 1\n"
        "@hookimpl(trylast=True)\n"
        f"def {hook}({arguments}):\n"
        f"    if {condition}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )


def signal_at_step(signal_name: str, epoch: int, step: int) -> str:
    """Plugin code that sends its own process a real ``signal_name`` (SIGTERM, SIGINT) just
    before step ``step`` (from 0) of epoch ``epoch`` runs."""
    return (
        "import os, signal\n"
        "from detplug.core.train import trainer\n"
        "PLUGIN_API = 1\n"
        "_train_epoch = trainer.Trainer.train_epoch\n"
        "def train_epoch(self, dataset, steps, *, epoch, learning_rate_at=None, first_step=0, **kwargs):\n"
        "    def rate(at):\n"
        f"        if epoch == {epoch} and at - first_step == {step}:\n"
        f"            os.kill(os.getpid(), signal.{signal_name})\n"
        "        return learning_rate_at(at)\n"
        "    return _train_epoch(self, dataset, steps, epoch=epoch, learning_rate_at=rate, first_step=first_step,\n"
        "                        **kwargs)\n"
        "trainer.Trainer.train_epoch = train_epoch\n"
    )


def kill_inside_checkpoint_write(name: str) -> str:
    """Plugin code that SIGKILLs run.py after ``name``'s checkpoint files are written
    into their temporary folder, before the folder is renamed into place."""
    return (
        "import os, signal\n"
        "from detplug.core.train import checkpoints\n"
        "PLUGIN_API = 1\n"
        "_write = checkpoints.CheckpointStore._write\n"
        "def _write_then_die(self, checkpoint, name):\n"
        f"    if name == {name!r}:\n"
        "        checkpoint.write(str(self.folder / f'.tmp-{name}-{os.getpid()}' / checkpoints.PREFIX))\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return _write(self, checkpoint, name)\n"
        "checkpoints.CheckpointStore._write = _write_then_die\n"
    )


def read_weights(path: Path) -> dict[str, Any]:
    """Every array of a Keras ``.weights.h5`` file, by its path in the file."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda key, item: arrays.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset)
                          else None)
    return arrays
