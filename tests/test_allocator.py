"""cat_seg.utils.allocator: glibc keeps freed memory for reuse unless AHS_MALLOC=system."""
import ctypes
import os
import subprocess
import sys

import pytest

from cat_seg.utils.allocator import reuse_freed_memory


def _is_glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version
    except AttributeError:
        return False
    return True


def test_system_choice_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("AHS_MALLOC", "system")
    assert reuse_freed_memory() is False


def test_bad_choice_names_the_variable(monkeypatch):
    monkeypatch.setenv("AHS_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="AHS_MALLOC='jemalloc'.*reuse.*system"):
        reuse_freed_memory()


# A probe for a fresh process: in_heap() is True when a 64 MiB block comes from the heap (below
# its break) rather than from a fresh mmap, i.e. when glibc keeps freed memory for reuse.
IN_HEAP = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p\n"
    "libc.malloc.argtypes = (ctypes.c_size_t,); libc.sbrk.argtypes = (ctypes.c_ssize_t,)\n"
    "def in_heap():\n"
    "    block = libc.malloc(64 << 20)\n"
    "    inside = block < libc.sbrk(0)\n"
    "    libc.free(ctypes.c_void_p(block))\n"
    "    return inside\n"
)


@pytest.mark.skipif(not _is_glibc(), reason="the settings exist in glibc only")
def test_large_blocks_come_from_the_heap_after_the_call():
    # In a fresh process: a 64 MiB block is mmapped by default (its address far from the heap's
    # break), and served from the heap (below the break) once the settings are applied.
    script = (
        "import ctypes, sys\n"
        "from cat_seg.utils.allocator import reuse_freed_memory\n"
        + IN_HEAP +
        "before = in_heap()\n"
        "applied = reuse_freed_memory()\n"
        "print(before, applied, in_heap())\n")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["False", "True", "True"]


@pytest.mark.skipif(not _is_glibc(), reason="the settings exist in glibc only")
def test_the_library_leaves_malloc_alone_and_entry_points_pass_it_on():
    # Importing cat_seg and building a model's config (what a program using the library does)
    # keeps glibc's defaults; an entry point's set-up changes them, for its workers too.
    script = (
        "import ctypes, os\n"
        "import cat_seg\n"
        "from cat_seg.utils.console import prepare_entry_point\n"
        + IN_HEAP +
        "cat_seg.build_config('configs/synthetic/quickstart.yaml')\n"
        "library = in_heap()\n"
        "prepare_entry_point(console=False)\n"
        "print(library, in_heap(), os.environ.get('MALLOC_MMAP_MAX_'))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=root).stdout.split()
    assert out == ["False", "True", "0"]
