"""glibc's allocator told to keep the network's large buffers instead of returning them.

PyTorch on the CPU allocates every activation of a forward pass afresh. glibc serves
allocations above its mmap threshold straight from the kernel and unmaps them on free,
and trims freed heap above its trim threshold; either way every tile faults the same
hundreds of megabytes back in, and the process spends a large share of its time in the
kernel (system time). Fixed thresholds where glibc's own tuning would settle for these
sizes (map only blocks above 32 MiB, trim only above 128 MiB of free heap) keep the pages
between tiles. The price is that up to that much freed memory stays with the process.

Any ``MALLOC_*_THRESHOLD_`` variable switches glibc's dynamic tuning off, which is why a
Dask worker (``MALLOC_TRIM_THRESHOLD_=65536``) needs ``override=True``; a user's own
setting is otherwise respected. On other C libraries (musl, macOS, Windows) this does
nothing.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_applied = False


def keep_freed_memory(override: bool = False) -> bool:
    """Set the thresholds once per process; True when they are in force (now or before)."""
    global _applied
    if _applied:
        return True
    if not override and any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
