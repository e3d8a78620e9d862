"""Keep freed memory in the process: CPU training otherwise spends a third of its time in page faults.

glibc hands every block above its mmap threshold (128 KiB to 32 MiB, adapting) to the kernel on
``free`` and maps fresh zeroed pages on the next ``malloc``. A CPU training step allocates and
frees the same activation tensors (tens to hundreds of MB at 160 px) every step, so each step
re-faults them in: measured on 2 cores, 25 demo pretraining steps took 53 s wall with 34 s of
system time, and 34 s with 2 s after :func:`keep_freed_memory`. The price is that the process
keeps its peak heap instead of returning it, which is what a training or encoding run wants; peak
memory grows too (8 steps of an unlocked EfficientNet-Lite0 at 96 px: 3.62 GiB against 3.09 GiB
resident, in 19.4 s against 29.9 s). ``OPHCLIP_KEEP_FREED_MEMORY=0`` keeps glibc's defaults, for
runs that are short of memory rather than of time.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap and are reused
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: give the heap's top back only above 2 GiB


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False (and nothing done) off glibc or when opted out."""
    if os.environ.get("OPHCLIP_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
