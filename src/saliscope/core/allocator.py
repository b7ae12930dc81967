"""Keep freed tensor memory in the process, so that a CPU run stops paying the kernel for fresh pages.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB, adjusted as it goes) with
a fresh ``mmap`` and returns it to the kernel on ``free``. A CNN's activations on a chunk of rows are tens
to hundreds of MiB each, so every pass maps them anew and the kernel zero-fills each 4 KiB page on first
touch. On a 2-core CPU (``bench/allocator.py``) a gradient row of the default model in chunks of 16 takes
28.1 ms with glibc as it comes and 20.5 ms with freed blocks kept, a forward row in chunks of 32 11.6 and
8.5 ms. PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the same reason; two ``mallopt``
settings give glibc's allocator the same habit without preloading a library.

It is the process's allocator, so the library never changes it by itself: the ``saliscope`` command and its
Ray workers call :func:`keep_freed_memory`, and a notebook or script may. The cost is memory: freed blocks
stay with the process (up to the trim threshold at the top of the heap) instead of going back to the system,
so its resident size stays near its peak, and a CPU ``Cost.peak_memory_bytes`` (the rise of resident memory)
sees only the pages a call adds to what the process holds. ``SALISCOPE_CPU_ALLOCATOR=system`` leaves the
allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV = "SALISCOPE_CPU_ALLOCATOR"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
_KEEP_BYTES = 1 << 30  # blocks below 1 GiB come from the heap; up to 1 GiB free at its top is kept
_applied = False


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed blocks below 1 GiB for reuse (see the module's text). Returns whether
    the setting is in force: False off glibc (macOS, Windows, musl), where ``SALISCOPE_CPU_ALLOCATOR=system``,
    or where glibc refuses it. Calling it again changes nothing."""
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV, "").strip().lower() == "system":
        return False
    if not on_glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Both: with the mmap threshold raised alone, a freed block at the top of the heap would go straight back to
    # the kernel (setting either switches off glibc's own adjustment, leaving the trim threshold at 128 KiB).
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES))
    return _applied


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, whose ``mallopt`` :func:`keep_freed_memory` sets."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
