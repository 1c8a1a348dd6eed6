"""Faults of the disk as sentences: a full disk, a read-only file system, a denied write.

Every place that writes a run's or a dataset's files does it inside :func:`writing`,
which names what it writes and where. An OSError (or a TensorFlow error) that the disk
caused becomes a :class:`DiskError` saying which folder, what was being written, why, and
what to do; the writers put files in place only when complete, so nothing already
written is lost. Other errors pass through unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from detplug.core.errors import DetplugError


class DiskError(DetplugError):
    """A write failed because of the disk (full, read-only, permission denied)."""


#: errno -> (what happened, what to do)
_CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space on it, or write somewhere else (--workdir, --cache-dir, --out)"),
    errno.EDQUOT: ("the disk quota is used up", "free space in your quota, or write somewhere else"),
    errno.EROFS: ("the file system is read-only", "write somewhere else (--workdir, --cache-dir, --out)"),
    errno.EACCES: ("permission was denied", "make the folder writable for this user, or write somewhere else"),
    errno.EPERM: ("the operation was not permitted", "make the folder writable for this user, or write somewhere else"),
}
#: The same causes as TensorFlow's C++ file system words them (its errors carry no errno).
_TF_WORDS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
    "Operation not permitted": errno.EPERM,
}


def _cause(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno in _CAUSES:
        return error.errno
    if type(error).__module__.startswith("tensorflow"):
        text = str(error)
        return next((code for words, code in _TF_WORDS.items() if words in text), None)
    return None


@contextlib.contextmanager
def writing(what: str, where: str | Path) -> Iterator[None]:
    """Turn a disk fault inside the block into a DiskError naming ``what`` and ``where``."""
    try:
        yield
    except DetplugError:
        raise
    except Exception as error:
        code = _cause(error)
        if code is None:
            raise
        happened, advice = _CAUSES[code]
        raise DiskError(f"cannot write {what} in {where}: {happened}; {advice}. Nothing already written was "
                        f"lost: files are put in place only when complete") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never a mix."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with writing(path.name, path.parent):
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
