"""Folders built aside and moved into place only when complete.

Processes that share a cache (several runs, the workers of a multi-worker run)
may build the same folder at once; each builds its own copy, and a reader
only ever sees a finished one. No TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from detplug.core.data.prepared import MANIFEST_NAME


@contextlib.contextmanager
def staging(final: Path, *, replace: bool = False, done_marker: str = MANIFEST_NAME) -> Iterator[Path]:
    """Build into a temporary sibling of ``final``; on success move it into place.

    ``done_marker`` is the file a finished folder holds (the manifest, for
    records). An existing ``final`` without it (an interrupted or damaged
    conversion) is replaced. A finished ``final`` is replaced only when
    ``replace`` (a forced conversion), and only once the new one is complete,
    so a conversion that fails never costs the records already there.
    Otherwise, if another process finished ``final`` meanwhile, its folder is
    kept and ours is discarded: both hold the same records.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{os.getpid()}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if final.exists() and (replace or not (final / done_marker).is_file()):
        retired = final.with_name(f".{final.name}.{os.getpid()}.old")
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(final, retired)
        shutil.rmtree(retired)
    try:
        os.rename(temporary, final)
    except OSError:
        if not (final / done_marker).is_file():
            raise
        shutil.rmtree(temporary, ignore_errors=True)
