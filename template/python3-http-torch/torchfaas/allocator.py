"""glibc malloc, set up for a replica's memory: fewer arenas, and what a warm-up freed given back.

glibc gives a thread that finds the arenas busy an arena of its own, up to 8 per core:
the request threads reading bodies, the batch workers, a warm-up thread each fill one.
A forward pass's activations (tens of MB at batch 4-6) come from the arena of the
thread that runs it, because malloc's mmap threshold rises to the largest block freed
(up to 32 MB): freed, they stay in that arena for its next pass, which saves their page
faults (a fixed threshold that maps and unmaps them every pass doubled the CPU per
request here), but every arena keeps its own copy. Fewer arenas (MALLOC_ARENA_MAX, a setting: 2)
keep fewer copies; one made the two batch workers wait on each other's
allocations (more context switches per request, less throughput at c16). What the
warm-up freed is handed back (`release_free_memory`) instead of waiting in an arena for
a batch size that may never come. The measurements:
docs/benchmarks.md, "Cold start and memory per replica".

Both are no-ops where the C library is not glibc.
"""
import ctypes
import ctypes.util
from functools import cache

M_ARENA_MAX = -8  # mallopt() parameter, <malloc.h>


@cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc has both; musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas (0: glibc's default, 8 per core). Effective only
    before the process's threads have made their arenas: call it first thing. False
    where it cannot be set."""
    libc = _glibc()
    if arenas <= 0 or libc is None:
        return False
    return libc.mallopt(M_ARENA_MAX, arenas) == 1


def release_free_memory() -> None:
    """Give the free memory in every arena back to the kernel (glibc's malloc_trim)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
