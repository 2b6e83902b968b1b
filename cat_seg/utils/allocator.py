"""Keep freed CPU memory for reuse: glibc malloc settings for PyTorch on the CPU.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block above its
mmap threshold (32 MiB at most) by a fresh ``mmap`` and unmaps it on ``free``, so every large
temporary — the CAT-Seg head's Swin MLP activation for 171 classes is (171·576, 512) floats,
200 MB — is page-faulted in anew, zero-filled by the kernel, on every forward. On a 2-core CPU
that is a third of the head's time (docs/benchmarks.md, "Where the time goes").
``M_MMAP_MAX = 0`` serves large blocks from the heap instead, and a high ``M_TRIM_THRESHOLD``
keeps the freed heap, so the next forward reuses the same pages. The price: the process keeps
its high-water mark resident instead of returning it to the system between forwards.

Only entry points call :func:`reuse_freed_memory` (``ahs-seg``, train_net.py and tools/*.py,
through :func:`cat_seg.utils.console.prepare_entry_point`): it changes the whole process, which
a library function must not do to a program that imports ``cat_seg``. ``AHS_MALLOC=system`` in
the environment leaves the C library's defaults. The same settings can be given to any process with
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


# glibc's start-up variables of the same settings (read once, when a process starts).
CHILD_ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(_INT_MAX)}


def reuse_freed_memory(children: bool = False) -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring). For entry points only.

    ``children=True`` also puts the settings into this process's environment, so the worker
    processes it starts later (detectron2's ``launch``, data loader workers started by spawn)
    run with them too; values already set there are kept.
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
    if applied and children:
        for name, value in CHILD_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    if applied:
        logger.debug("glibc malloc: large blocks from the heap, freed memory kept for reuse")
    return applied
