"""What an entry point (``ahs-seg``, ``train_net.py``, ``tools/*.py``) sets up for its process.

The library only logs (``logging.getLogger(__name__)``) and changes nothing process-wide, so a
program that imports ``cat_seg`` keeps its own logging and memory settings. A command line, which
owns its process, calls :func:`prepare_entry_point` once: ``cat_seg``'s INFO messages are shown
as plain lines on stdout (warnings and errors on stderr, prefixed with their level), and glibc
keeps freed memory for reuse (:mod:`cat_seg.utils.allocator`; ``AHS_MALLOC=system`` keeps the C
library's defaults).

A training or evaluation run's set-up (:func:`cat_seg.engine.launch.setup`) gives the ``cat_seg``
logger detectron2's ``log.txt`` in OUTPUT_DIR; under an entry point its lines keep these streams
on the terminal (:func:`console_for_run`), in the entry point's process and in rank 0 of the
worker processes it starts.
"""
import logging
import os
import sys
from typing import Optional

from .allocator import reuse_freed_memory

# Marks the handlers installed here, so a second call adds none.
_HANDLER_NAME = "ahs-seg-console"
# Set by an entry point's console for the worker processes it starts (detectron2's ``launch``
# with several GPUs spawns fresh interpreters): their rank 0 shows cat_seg's lines the same way.
CONSOLE_ENV = "AHS_SEG_CONSOLE"
# What prepare_entry_point did to glibc's allocator: None before (or without) it.
_allocator_kept: Optional[bool] = None


class _Below(logging.Filter):
    """Passes records below ``level`` (stdout gets INFO, stderr WARNING and up)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _CurrentStream(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stdout`` / ``sys.stderr`` is when a record is written,
    not the object it was when the handler was made: a caller that swaps the streams (a test's
    capture, ``contextlib.redirect_stdout``, a notebook) gets the lines, and a stream closed since
    is never written to."""

    def __init__(self, which: str):
        super().__init__()
        self._which = which  # "stdout" or "stderr"

    @property
    def stream(self):
        return getattr(sys, self._which)

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns one; the current one is used
        pass


class _WarningsLabelled(logging.Formatter):
    """``WARNING: message`` for warnings; errors as they are (they carry their own
    ``[command]`` prefix, as the messages of ``SystemExit`` do)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"WARNING: {text}" if record.levelno == logging.WARNING else text


def configure_console_logging(level: int = logging.INFO) -> None:
    """Show ``cat_seg``'s log records at ``level`` and above as plain lines, as ``print`` did:
    INFO on stdout, WARNING and up on stderr (warnings as ``WARNING: message``). Other
    libraries' records keep Python's default (warnings and up). Idempotent. During a training or
    evaluation run, :func:`console_for_run` keeps the ``cat_seg`` logger on these handlers."""
    root = logging.getLogger()
    if not console_configured():
        out = _CurrentStream("stdout")
        out.addFilter(_Below(logging.WARNING))
        out.setFormatter(logging.Formatter("%(message)s"))
        err = _CurrentStream("stderr")
        err.setLevel(logging.WARNING)
        err.setFormatter(_WarningsLabelled())
        for handler in (out, err):
            handler.set_name(_HANDLER_NAME)
            root.addHandler(handler)
    # The stdout handler's own level: a run's set-up lets the cat_seg logger emit DEBUG records
    # (for log.txt), which the terminal does not show.
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME and handler.level < logging.WARNING:
            handler.setLevel(level)
    logging.getLogger("cat_seg").setLevel(level)


def console_configured() -> bool:
    """Whether this process's entry point installed the console handlers."""
    return any(h.get_name() == _HANDLER_NAME for h in logging.getLogger().handlers)


def console_for_run(rank: int) -> bool:
    """Whether a run's ``cat_seg`` lines go to the console handlers of an entry point (True: the
    caller gives detectron2's ``setup_logger(name="cat_seg")`` ``configure_stdout=False,
    enable_propagation=True``, so its log.txt gets every line and the terminal shows them on the
    streams they had before the run: INFO on stdout, warnings and errors on stderr). True in
    rank 0 of an entry point's process or of a worker process it started (then configured
    here); False in other ranks and in a program that imports ``cat_seg`` without an entry point
    (detectron2's own stdout handler then, as detectron2 sets it up)."""
    if rank != 0:
        return False
    if console_configured():
        return True
    if os.environ.get(CONSOLE_ENV) == "1":
        configure_console_logging()
        return True
    return False


def prepare_entry_point(*, console: bool = True, allocator: bool = True) -> None:
    """The process-wide settings of a command line: console logging and, for the process and
    the worker processes it starts, glibc's keep-freed-memory settings (logged)."""
    global _allocator_kept
    if console:
        configure_console_logging()
        os.environ[CONSOLE_ENV] = "1"  # for the worker processes it starts
    if allocator:
        _allocator_kept = reuse_freed_memory(children=True)
        logging.getLogger(__name__).debug("glibc malloc: %s", allocator_state())


def allocator_state() -> str:
    """What this process's entry point did to glibc's allocator, in words (measurements say it:
    it changes time and memory)."""
    if _allocator_kept is None:
        return "as the process set it (no ahs-seg entry point ran)"
    return "freed memory kept for reuse" if _allocator_kept else "the C library's defaults"
