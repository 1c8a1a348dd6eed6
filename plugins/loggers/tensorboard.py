"""TensorBoard scalars under runs/<plan>/tb, one point per epoch for every logged number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detplug import hookimpl
from detplug.core.disk import writing

PLUGIN_API = 1

_writers: dict[Path, Any] = {}


def _writer(folder: Path) -> Any:
    import tensorflow as tf  # only once training runs: listing must not import TensorFlow

    if folder not in _writers:
        _writers[folder] = tf.summary.create_file_writer(str(folder))
    return _writers[folder]


@hookimpl
def detplug_epoch_end(run: Any, epoch: int, logs: dict[str, float]) -> None:
    import tensorflow as tf

    with writing("the TensorBoard log", run.folder.tensorboard):
        writer = _writer(run.folder.tensorboard)
        with writer.as_default(step=epoch):
            for name, value in logs.items():
                tf.summary.scalar(name, float(value))
        writer.flush()


@hookimpl
def detplug_evaluation_end(run: Any, epoch: int, metrics: dict[str, float], grid: Path) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    if not grid.is_file():
        return
    with Image.open(grid) as image:
        pixels = np.asarray(image.convert("RGB"))[None]
    with writing("the TensorBoard log", run.folder.tensorboard):
        writer = _writer(run.folder.tensorboard)
        with writer.as_default(step=epoch):
            tf.summary.image("validation predictions", pixels)
        writer.flush()


@hookimpl
def detplug_train_end(run: Any) -> None:
    writer = _writers.pop(run.folder.tensorboard, None)
    if writer is not None:
        writer.close()
