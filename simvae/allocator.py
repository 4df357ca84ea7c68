"""Keep freed memory inside the process on Linux (glibc), so big tensors do not page-fault each step.

A training step allocates and frees the same multi-megabyte activations every time. With
glibc's defaults a freed block above the trim threshold goes back to the kernel, and the
next step touches fresh pages: one page fault per 4 KiB, every step. On this project's
development VM, keeping freed memory took the batched augmentation from 15 ms to 4.5 ms
(microbenchmark) and the profiled ReLU backward from 25 ms to 9 ms per step; on the whole
step the gain was within that machine's run-to-run noise. The PyTorch CPU tuning guides get
the same effect with jemalloc or tcmalloc (LD_PRELOAD); ``mallopt`` needs no extra library
and can be set after start-up:

    M_MMAP_THRESHOLD = 32 MiB   blocks below it come from the heap, not fresh mmap pages
    M_TRIM_THRESHOLD = 1 GiB    free heap is kept for reuse up to this much

Process-wide and harmless elsewhere: on other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this option on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_done = False


def retain_freed_memory() -> bool:
    """Apply the two ``mallopt`` settings once; True when they took effect (glibc on Linux)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to set
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
