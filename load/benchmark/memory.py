"""Resident memory of a served process under load: anonymous and file-backed.

A replica's anonymous memory (RssAnon: heap, thread stacks, allocator arenas, the
model's weights once loaded) is what each replica costs a node on its own; file-backed
memory (RssFile: the mapped libraries and packages) is page cache, shared between
replicas of the same image on a node. `make bench` reports both, from /proc/PID/status,
at the end of each load level and at their peak during it (sampled every 10 ms).
"""
import threading
from pathlib import Path

FIELDS = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb"}


def resident_mb(pid: int) -> dict:
    """{rss_mb, anon_mb, file_mb} of a process now, in MB (empty once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key = line.split(":", 1)[0]
        if key in FIELDS:
            out[FIELDS[key]] = int(line.split()[1]) / 1024
    return out


class ResidentMemory:
    """A load level's meter (serving.Meter): the process's memory at the level's end
    (`memory_mb`) and the most it held during it (`peak_memory_mb`, each figure's own peak)."""

    def __init__(self, pid: int, every_s: float = 0.01):
        self.pid, self.every_s = pid, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak: dict = {}

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            for key, value in resident_mb(self.pid).items():
                self._peak[key] = max(value, self._peak.get(key, 0.0))

    def begin(self) -> None:
        self._stop.clear()
        self._peak = resident_mb(self.pid)
        self._thread = threading.Thread(target=self._sample, name="memory-meter", daemon=True)
        self._thread.start()

    def end(self, result: dict, wall: float) -> str:
        self._stop.set()
        self._thread.join()
        result["memory_mb"], result["peak_memory_mb"] = resident_mb(self.pid), self._peak
        now, peak = result["memory_mb"], self._peak
        return (f"RSS {now.get('rss_mb', 0):.0f} MB (anon {now.get('anon_mb', 0):.0f}, file "
                f"{now.get('file_mb', 0):.0f}), peak {peak.get('rss_mb', 0):.0f} (anon {peak.get('anon_mb', 0):.0f})")
