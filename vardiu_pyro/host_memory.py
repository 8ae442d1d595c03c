"""Keep freed host memory in the process, so that a CPU step's short-lived tensors cost no page faults.

A training step allocates and frees the same few megabytes of activations and gradients every
iteration (the default: about 4.5 MB, tensors of up to 1 MB each). glibc's allocator hands freed
memory at the top of its heap back to the operating system once more than its trim threshold is
free, and serves blocks above its mmap threshold with fresh mappings; either way the next step
touches new pages, and the kernel zero-fills each one on a page fault. Measured on a 2-core Intel
Xeon (2026-12-05, ``python benchmarks/host_memory.py``, README "Freed memory"): about 1,000 page
faults and 2 ms of kernel time in an 11 ms default step, which takes 0.85-0.89 of that time without
them. Raising both thresholds keeps those pages in the process for reuse: no faults after the first
steps, at the price of up to ``trim_threshold`` bytes of freed memory that stay resident.

Only glibc has these settings (``mallopt``); elsewhere (macOS, Windows, musl) ``retain_freed_memory``
does nothing and returns False. It applies to the whole process, for the rest of its life, which is
why ``python -m vardiu_pyro.fit`` calls it once at the start (``trainer.retain_freed_memory``).
CUDA tensors are not host memory: on a GPU this changes only the host side's small allocations.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["retain_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>: free memory at the heap's top above this goes back to the OS
M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>: blocks at least this large get their own mapping, unmapped when freed
INT_MAX = 2**31 - 1    # mallopt's value is a C int

MMAP_THRESHOLD = 32 * 2**20   # where glibc's own adjustment stops (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit); a default step's
                              # tensors (up to 1 MB) and an evaluation's distance blocks (5 MB) lie well below it
TRIM_THRESHOLD = 256 * 2**20  # freed memory kept resident at most: a few hundred steps' worth of the default's


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None  # musl and other C libraries: no such knobs
    return libc


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Ask glibc to keep freed memory for reuse (``mallopt``); returns whether it applied.

    ``mmap_threshold``: blocks below this many bytes come from the heap (reused) rather than from a
    mapping of their own (returned to the OS on every free). ``trim_threshold``: the heap keeps up
    to this many free bytes at its top instead of returning them. Setting either turns off glibc's
    own adjustment of the two, which raises them only as far as the largest block freed so far.
    """
    if not (0 < mmap_threshold <= INT_MAX and 0 < trim_threshold <= INT_MAX):  # mallopt takes a C int
        raise ValueError(f"thresholds must be positive byte counts below 2**31, got mmap {mmap_threshold}, "
                         f"trim {trim_threshold}")
    libc = _glibc()
    if libc is None:
        return False
    return libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1 and libc.mallopt(M_TRIM_THRESHOLD,
                                                                                      int(trim_threshold)) == 1
