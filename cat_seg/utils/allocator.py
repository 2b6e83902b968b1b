"""Keep freed CPU memory for reuse: glibc malloc settings for PyTorch on the CPU.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above its
mmap threshold (32 MiB at most) by a fresh ``mmap`` and unmaps it on ``free``, so every large
temporary — the CAT-Seg head's Swin MLP activation for 171 classes is (171·576, 512) floats,
200 MB — is page-faulted in anew, zero-filled by the kernel, on every forward. On a 2-core CPU
that is a third of the head's time (docs/benchmarks.md, "Where the time goes").
``M_MMAP_MAX = 0`` serves large blocks from the heap instead, and a high ``M_TRIM_THRESHOLD``
keeps the freed heap, so the next forward reuses the same pages. The price: the process keeps
its high-water mark resident instead of returning it to the system between forwards.

Processes started by this project's entry points (training, evaluation, the demos and
tools/analyze_model.py) call :func:`reuse_freed_memory` once; ``AHS_MALLOC=system`` in the
environment leaves the C library's defaults. The same settings can be given to any process with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`` in its environment (glibc reads them at
start-up): that is how a comparison gives another program the same allocator.
"""
import ctypes
import logging
import os

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2 ** 31 - 1

ENV_VARIABLE = "AHS_MALLOC"

logger = logging.getLogger(__name__)


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring).

    Returns True when the settings were applied; False when ``AHS_MALLOC=system`` asks for the
    defaults or the C library is not glibc (macOS, musl: nothing to change there).
    """
    choice = os.environ.get(ENV_VARIABLE, "reuse")
    if choice not in ("reuse", "system"):
        raise ValueError(f"{ENV_VARIABLE}={choice!r}: expected 'reuse' (default) or 'system'")
    if choice == "system":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. Trim first: it also freezes glibc's dynamic mmap threshold.
    applied = mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1 and mallopt(_M_MMAP_MAX, 0) == 1
    if applied:
        logger.debug("glibc malloc: large blocks from the heap, freed memory kept for reuse")
    return applied
