"""What a watch reads at each look: only the request lines new since the last look.

    reader = NewLines(source, function, versions, since=start)
    fresh = reader.read(until)      # {version: [fields, ...]}, oldest first

From Loki, a look asks for (last look - overlap, until]: the overlap catches lines Loki
ingested late (a promtail/alloy batch that arrived after the last look), and the lines
seen in it before are dropped by their request id, so no request counts twice. From a
JSONL file, a look reads the bytes appended since the last look (a complete line at a
time), so a log that grows for hours costs each look only its new lines.

A read either returns every new line or raises (LokiError: unreachable, timeout, 429,
5xx, refused): the cursor moves only after a complete read, so a failed look leaves
nothing half-read and the next look asks again from the same point.
"""

from __future__ import annotations

import os

from . import queries
from .file_backend import _passes
from .logfile import LogFile, parse_rfc3339_ns

NS = 1_000_000_000
DEFAULT_OVERLAP_S = 30.0


def line_time(fields: dict) -> float:
    try:
        return parse_rfc3339_ns(fields.get("timestamp", "")) / NS
    except ValueError:
        return float("nan")


class NewLines:
    """The requests of `versions` of `function` logged after `since`, look by look."""

    def __init__(self, source, function: str, versions: tuple, since: float, overlap_s: float = DEFAULT_OVERLAP_S):
        if overlap_s < 0:
            raise ValueError(f"an overlap is 0 seconds or more, got {overlap_s}")
        self.source, self.function, self.versions = source, function, tuple(versions)
        self.since, self.overlap_s = since, overlap_s
        self.last = since  # the end of the last complete read
        self.seen: dict = {}  # request id -> line time, for the lines that may be read again
        self.tail = source if isinstance(source, (GrowingFile, GrowingFiles)) else None

    def read(self, until: float) -> dict:
        """{version: [fields, ...]} new since the last read, up to `until` (unix seconds)."""
        start = max(self.since, self.last - self.overlap_s)
        fresh, seen = {v: [] for v in self.versions}, dict(self.seen)
        if self.tail:
            self.tail.advance()
        for version in self.versions:
            logs = queries.version_requests(self.function, version)
            for fields in self.source.lines(logs, start, until):
                rid, at = fields.get("request_id", ""), line_time(fields)
                if rid and rid in seen:
                    continue
                if rid:
                    seen[rid] = at
                fresh[version].append(fields)
        # complete: move the cursor, forget ids that can no longer be read again
        self.last = max(self.last, until)
        horizon = self.last - self.overlap_s
        self.seen = {rid: at for rid, at in seen.items() if not at < horizon}
        if self.tail:
            self.tail.forget_until(horizon)
        return fresh

    def describe(self) -> str:
        return self.source.describe()


class GrowingFile:
    """A JSONL log that is still being written, read from where the last read stopped.

    `advance()` reads only the bytes appended since the last call (a line cut mid-write
    waits for its end); `lines(logs, start, end)` answers from what was read, as the
    backends answer a log query. The path is followed as `tail -F` follows it: a log
    rotated by renaming is read to its end, then the new file from its start; a log
    truncated in place (copytruncate) is read again from its start."""

    def __init__(self, path: str):
        self.path = path
        self.handle = None  # kept open: a rotated log's last lines are read through it
        self.partial = b""
        self.pending: list = []  # entries read but newer than a read's `end`
        self.read_lines = 0

    @property
    def offset(self) -> int:
        return self.handle.tell() if self.handle else 0

    def describe(self) -> str:
        return f"JSONL file {self.path} (read as it grows)"

    def advance(self) -> None:
        """Read the complete lines appended since the last call."""
        if self.handle is None:
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"LOG_FILE={self.path} does not exist")
            self.handle = open(self.path, "rb")  # open across looks: close()
        self._take(self.handle.read())
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return  # renamed away and not yet created again: the next look opens it
        opened = os.fstat(self.handle.fileno())
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            self._take(self.handle.read())  # what the writer added before it reopened
            self.handle.close()
            self.handle, self.partial = open(self.path, "rb"), b""
            self._take(self.handle.read())
        elif named.st_size < self.handle.tell():
            self.handle.seek(0)
            self.partial = b""
            self._take(self.handle.read())

    def _take(self, data: bytes) -> None:
        complete, _, self.partial = (self.partial + data).rpartition(b"\n")
        for raw in complete.split(b"\n") if complete else []:
            try:
                entry = LogFile.parse(raw.decode("utf-8", "replace").strip())
            except ValueError:
                continue  # no usable timestamp: skipped, as the file backend skips it
            if entry is not None:
                self.pending.append(entry)
                self.read_lines += 1

    def close(self) -> None:
        if self.handle:
            self.handle.close()
            self.handle = None

    def lines(self, logs, start: float, end: float) -> list:
        """The fields of each entry read so far in (start, end] that the log query keeps."""
        start_ns, end_ns = int(round(start * NS)), int(round(end * NS))
        due = sorted((e for e in self.pending if e.time_ns <= end_ns), key=lambda e: e.time_ns)
        return [e.fields for e in due if start_ns < e.time_ns
                and all(e.stream.get(k, "") == v for k, v in logs.stream)
                and all(_passes(f, e.fields) for f in logs.filters)]

    def forget_until(self, end: float) -> None:
        """Drop the entries no later read can ask for (older than its overlap)."""
        end_ns = int(round(end * NS))
        self.pending = [e for e in self.pending if e.time_ns > end_ns]


class GrowingFiles:
    """Several growing logs read as one (one per process: a canary's and the stable one's)."""

    def __init__(self, files: list):
        self.files = list(files)

    def describe(self) -> str:
        return "JSONL files " + ", ".join(f.path for f in self.files) + " (read as they grow)"

    def advance(self) -> None:
        for growing in self.files:
            growing.advance()

    def close(self) -> None:
        for growing in self.files:
            growing.close()

    def lines(self, logs, start: float, end: float) -> list:
        merged = [fields for growing in self.files for fields in growing.lines(logs, start, end)]
        return sorted(merged, key=line_time)

    def forget_until(self, end: float) -> None:
        for growing in self.files:
            growing.forget_until(end)
