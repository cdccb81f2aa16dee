"""Keep freed host memory for reuse: the CPU forward and backward of eSEN allocate and free
edge tensors of tens of MB many times per call.

glibc serves an allocation above its mmap threshold with a fresh ``mmap`` and returns it with
``munmap`` when freed, and trims the top of the heap beyond its trim threshold; either way the
next tensor of that size page-faults on every 4 kB page it touches. The threshold starts at
128 kB and rises only as such blocks are freed, so many tensors of a forward pass page-fault.
``keep_freed_memory`` fixes the threshold at its largest, 32 MB (blocks below it come from the
heap and are reused), and keeps up to 2 GB of freed heap instead of trimming it. Larger blocks
still get their own mappings: serving them from the heap too (``M_MMAP_MAX`` 0) was a little
faster but fragmented it, and eSEN-30M-OAM on 64 cells of 8 atoms then ran out of a 23 GB
machine that it fits without. The peak resident memory is otherwise unchanged, but heap memory
freed after the peak stays with the process. ``ESEN_FLOWS_KEEP_FREED_MEMORY=0`` leaves the
allocator alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks of at least this many bytes get their own mapping (glibc's largest threshold).
MMAP_THRESHOLD = 32 * 2**20
#: Freed memory at the top of the heap kept before glibc returns it (bytes; the int limit).
TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks (process-wide, once). True when applied.

    Nothing happens (False) off glibc, or when ``ESEN_FLOWS_KEEP_FREED_MEMORY`` is ``0``.
    """
    applied = False
    if os.environ.get("ESEN_FLOWS_KEEP_FREED_MEMORY", "1") != "0" and _is_glibc():
        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):
            applied = False
    return applied


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
