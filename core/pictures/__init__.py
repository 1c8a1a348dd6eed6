"""Pictures a detection engineer looks at: training curves, PR curves, the data as the
trainer sees it. Drawn with matplotlib's Agg backend (no display needed, the fonts it
ships) and Pillow, never while TensorFlow waits on them inside the training loop.

Each module draws one kind of picture; this one holds what they share: a figure that
needs no display, and a PNG written whole or not at all. They may import core.disk,
core.errors and core.evaluate (its contract, its colours and grids), numpy, Pillow and
matplotlib; never TensorFlow, so that a picture costs no TensorFlow start-up. The command
line (core/cli) and the logger plugins import them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from detplug.core.disk import writing

#: Pixels per inch of every picture: a figure of W x H inches is a PNG of 100 W x 100 H pixels.
DPI = 100


def figure(width: float, height: float) -> tuple[Any, Any]:
    """A matplotlib Figure of ``width`` x ``height`` inches and its canvas, on the Agg
    backend: no display, no global pyplot state, safe in any thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, FigureCanvasAgg(fig)


def save_png(picture: Any, path: Path, what: str) -> Path:
    """Write ``picture`` (a matplotlib Figure or a Pillow Image) to ``path`` as a PNG, whole
    or not at all (a temporary file renamed into place); a disk fault is one sentence
    naming ``what``."""
    path = Path(path)
    with writing(what, path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        try:
            if hasattr(picture, "savefig"):
                picture.savefig(temporary, format="png")
            else:
                picture.save(temporary, format="PNG")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return path
