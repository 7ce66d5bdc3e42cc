"""npgpt's log: library code writes through ``logging.getLogger(__name__)`` (every logger is a child
of ``"npgpt"``) and never prints; whoever runs it decides where the lines go.

- The command line (:mod:`npgpt.cli`) shows them with :func:`to_console` for the length of a command:
  info and debug lines on stdout, warnings and errors on stderr, message only; ``-q`` keeps warnings
  and errors, ``-v`` adds debug lines.
- A library call with ``verbose=True`` (``BPETokenizer.train``, ``train_word2vec``, ...) shows its
  info lines the same way for the length of the call, unless the application has configured the
  ``"npgpt"`` logger itself, whose handlers then decide. With ``verbose=False`` those lines are
  debug lines.
- Otherwise Python's own rule holds: warnings reach stderr (``logging.lastResort``), the rest is
  dropped. npgpt adds no handler on import (not even a ``NullHandler``, which would hide warnings).
"""
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LIBRARY = "npgpt"


class _Below(logging.Filter):
    """Passes records below ``level`` (the stdout half of :func:`to_console`)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def console_handlers() -> list[logging.Handler]:
    """Two plain handlers: records below WARNING to stdout, the rest to stderr (each line one write)."""
    out, err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    out.addFilter(_Below(logging.WARNING))
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
    return [out, err]


@contextmanager
def to_console(level: int = logging.INFO) -> Iterator[logging.Logger]:
    """For the block: npgpt's records of ``level`` and above go to the console (:func:`console_handlers`)
    and not on to the root logger; afterwards the ``"npgpt"`` logger is as it was."""
    logger = logging.getLogger(LIBRARY)
    saved = logger.level, logger.propagate, list(logger.handlers)
    handlers = console_handlers()
    logger.setLevel(level)
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def configured() -> bool:
    """Whether the application has set up the ``"npgpt"`` logger (a handler or a level of its own)."""
    logger = logging.getLogger(LIBRARY)
    return bool(logger.handlers) or logger.level != logging.NOTSET


@contextmanager
def shown(verbose: bool) -> Iterator[int]:
    """``with shown(verbose) as level: log.log(level, ...)``: the level for a call's progress lines
    (INFO when ``verbose``, else DEBUG), shown on the console for the call when ``verbose`` and
    nobody configured npgpt's logger."""
    if not verbose:
        yield logging.DEBUG
    elif configured():
        yield logging.INFO
    else:
        with to_console(logging.INFO):
            yield logging.INFO
