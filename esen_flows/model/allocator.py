"""Keep freed host memory for reuse: the CPU forward and backward of eSEN allocate and free
edge tensors of tens of MB many times per call.

glibc serves an allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed, and trims the top of the heap beyond its trim threshold;
either way the next tensor of that size page-faults on every 4 kB page it touches. On 2 cores
this made a (20k, 9, 64) float32 ``bmm`` 9x slower than a (10k, 9, 64) one, and the small eSEN
config about 20 % slower on a 256-atom cell. ``keep_freed_memory`` tells glibc to serve every
allocation from the heap and not to trim it, so freed blocks are reused; the peak resident memory
is unchanged (the same tensors are alive at the peak), but memory freed after the peak stays with
the process until it ends. Set ``ESEN_FLOWS_KEEP_FREED_MEMORY=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Freed memory at the top of the heap kept before glibc returns it (bytes; the int limit).
TRIM_THRESHOLD = 2**31 - 1

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks (process-wide, once). True when applied.

    Nothing happens (False) off glibc, or when ``ESEN_FLOWS_KEEP_FREED_MEMORY`` is ``0``.
    """
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if os.environ.get("ESEN_FLOWS_KEEP_FREED_MEMORY", "1") != "0" and _is_glibc():
        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):
            applied = False
    _state["applied"] = applied
    return applied


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
