"""What detplug says on a console: the ``detplug`` logger tree and the command line's handler.

Every module logs to ``logging.getLogger(__name__)``, a logger under ``detplug``. Importing
detplug configures nothing but the NullHandler the package adds (the logging HOWTO's advice
to libraries), so a program that embeds detplug decides what is shown and where:
``logging.getLogger("detplug").setLevel(logging.WARNING)`` silences it, a handler of its own
redirects it. The command line attaches :class:`ConsoleHandler` for one ``main()``
(:func:`console`), which prints each message as it is, on the stream print put it on.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

ROOT = "detplug"
#: ``extra=`` for a message that goes to stderr though it is no error: a stop signal's notice,
#: a checkpoint skipped as unreadable (what was on stderr before logging stays there).
ON_STDERR = {"console_stream": "stderr"}


class ConsoleHandler(logging.Handler):
    """Each message as it is: info and warnings on stdout, where print put them; errors,
    :data:`ON_STDERR` messages and debug lines on stderr (so ``--verbose`` leaves a table that
    ``list --verbose`` or ``--json`` prints on stdout as it is).

    It looks ``sys.stdout`` and ``sys.stderr`` up as it writes, not when it is made, so that
    ``contextlib.redirect_stdout`` (tests, embedding programs) catches what it prints."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    @staticmethod
    def stream_for(record: logging.LogRecord) -> TextIO:
        on_stderr = (record.levelno >= logging.ERROR or record.levelno <= logging.DEBUG
                     or getattr(record, "console_stream", None) == "stderr")
        return sys.stderr if on_stderr else sys.stdout

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.stream_for(record)
            stream.write(self.format(record) + "\n")
            stream.flush()
        except BrokenPipeError:  # `run.py list | head`: main() ends quietly, as it did with print
            raise
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console(level: int = logging.INFO) -> Iterator[ConsoleHandler]:
    """Messages of ``level`` and above on the console while the block runs: the ``detplug``
    logger is set to ``level`` and given a :class:`ConsoleHandler` unless it has one (``main()``
    called twice in one process prints each line once), and does not pass them on to the root
    logger's handlers; all is put back afterwards."""
    logger = logging.getLogger(ROOT)
    handler = next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)
    added = handler is None
    if handler is None:
        handler = ConsoleHandler()
        logger.addHandler(handler)
    previous, propagated = logger.level, logger.propagate
    logger.setLevel(level)
    # The console is the program's output: a handler that a library put on the root logger
    # (TensorFlow's absl sets one up when it is imported) would print every line again.
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.setLevel(previous)
        logger.propagate = propagated
        if added:
            logger.removeHandler(handler)


@contextlib.contextmanager
def warnings_only_unless_verbose() -> Iterator[None]:
    """Only warnings and errors from detplug while the block runs, unless debug messages were
    asked for (``--verbose``): a multi-worker cluster's other workers would repeat the chief."""
    logger = logging.getLogger(ROOT)
    previous = logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(previous)
