"""Start TensorFlow without its C++ start-up noise, and say where the steps will run.

On a machine without a GPU, importing TensorFlow prints CUDA probing ("Could not find
cuda drivers", "failed call to cuInit") and notices (oneDNN, CPU instructions) straight to
the process's stderr, before any Python logging is set up: they say nothing wrong, and
they bury the first lines a user should read. By default TensorFlow is imported, and its
devices listed, with file descriptor 2 pointed at /dev/null, and ``TF_CPP_MIN_LOG_LEVEL``
defaults to 2 (warnings and errors of the C++ runtime later on still show). ``--verbose-tf``
or a ``TF_CPP_MIN_LOG_LEVEL`` of the user's own leaves all of it as TensorFlow prints it.
A failed import still raises its Python error, after stderr is back.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_tensorflow(*, verbose: bool = False) -> None:
    """Import TensorFlow and find its devices, quietly unless ``verbose`` or the user set
    ``TF_CPP_MIN_LOG_LEVEL``; a no-op once TensorFlow is imported."""
    if "tensorflow" in sys.modules:
        return
    quiet = not verbose and LOG_LEVEL_VARIABLE not in os.environ
    if not quiet:
        return
    os.environ[LOG_LEVEL_VARIABLE] = "2"
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def where_steps_run() -> str:
    """``GPU:0 (NVIDIA H200)`` or ``CPU (2 threads)``: the devices TensorFlow will train on."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for index, gpu in enumerate(gpus):
            details = tf.config.experimental.get_device_details(gpu)
            names.append(f"GPU:{index}" + (f" ({details['device_name']})" if details.get("device_name") else ""))
        return ", ".join(names)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"
