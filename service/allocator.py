"""How the process gives freed memory back to the system (glibc; elsewhere both calls do nothing).

An inference allocates and frees hundreds of MiB of buffers (the decoded image, the detector's maps,
onnxruntime's intermediate tensors). glibc keeps freed heap memory resident, and one heap (arena) per
thread multiplies it. Two measures keep the resident size near what is in use:

* :func:`configure`: at most two arenas for all threads;
* :func:`trim`: after each inference, ``malloc_trim(0)`` returns every free page of every arena.

A 1 MiB ``M_MMAP_THRESHOLD`` (each large block its own mapping) holds memory as low but costs a fresh
mapping, page faults and zeroing for every large buffer of every inference: 25 to 30% fewer pages a second
on two CPUs (docs/benchmarks.md), where the trim after each inference costs about a millisecond. It stays
available as ``OCR_MALLOC_MMAP_THRESHOLD_KB`` (e.g. 1024) for a pod that must trade speed for memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc has it; musl does not
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def configure(mmap_threshold_bytes: int = 0) -> bool:
    """Cap glibc's arenas and, if ``mmap_threshold_bytes``, fix the size from which a block is its own mapping
    (``OCR_MALLOC_MMAP_THRESHOLD_KB``). False, and nothing done, on another C library."""
    if _LIBC is None:
        return False
    if mmap_threshold_bytes and not _LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold_bytes):
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, ARENA_MAX))


def trim() -> None:
    """Return every free page of the heap to the system now."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def trimmed(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``, then :func:`trim` in the same thread, whatever ``fn`` raised."""

    def run() -> T:
        try:
            return fn()
        finally:
            trim()

    return run
