"""THP_MEM_ALLOC_ENABLE (on by default): the served model's activations come from
transparent huge pages, so a request costs a few page faults instead of hundreds.

Measured on the real process by the kernel's own count of its minor page faults
(/proc/PID/stat), not by timing. With the setting on, a request costs a few dozen
faults (16-43 seen) and the process holds huge pages; off, it holds none, and its
faults per request depend on how glibc's heaps happen to settle (15 to 1898 seen
in ten runs, mostly 250-500), so only the "on" count is bounded here.
"""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from photos import PHOTOS

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
CONCURRENCY = 8  # batches of several images: activations of 2 MiB and more
REQUESTS = 96
WINDOWS = 5
# a request's activations on 4 KiB pages are ~250-500 faults; on huge pages a few dozen
MAX_FAULTS_PER_REQUEST = 100


def host_allows_thp() -> bool:
    return THP_MODE.is_file() and "[never]" not in THP_MODE.read_text()


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def huge_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def faults_per_request(fn) -> float:
    """The fewest faults per request over WINDOWS windows after a warm-up: one-off
    allocations (the background warm-up of batch sizes, oneDNN's primitive cache for a
    new batch size, a busy machine delaying them) land in one window, not in all."""
    jpegs = [PHOTOS[name].read_bytes() for name in ("china.jpg", "flower.jpg", "rocket.jpg")]

    def post(i):
        response = fn.post(jpegs[i % len(jpegs)])
        assert response.status_code == 200, response.text

    windows = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(post, range(REQUESTS)))  # warm-up: every batch size, allocator caches
        for _ in range(WINDOWS):
            before = minor_faults(fn.proc.pid)
            list(pool.map(post, range(REQUESTS // 2)))
            windows.append((minor_faults(fn.proc.pid) - before) / (REQUESTS // 2))
    return min(windows)


@pytest.mark.skipif(not host_allows_thp(), reason="the host's transparent huge pages are off (never)")
def test_huge_pages_cut_page_faults_per_request(function_process, artifacts):
    with function_process("classifier") as on:
        on_faults = faults_per_request(on)
        on_huge = huge_kib(on.proc.pid)
    with function_process("classifier", env={"THP_MEM_ALLOC_ENABLE": "0"}) as off:
        off_faults = faults_per_request(off)
        off_huge = huge_kib(off.proc.pid)
    print(f"page faults per request: {on_faults:.0f} with huge pages ({on_huge} KiB), "
          f"{off_faults:.0f} without ({off_huge} KiB)")
    assert on_huge > 0 and off_huge == 0
    assert on_faults < MAX_FAULTS_PER_REQUEST
