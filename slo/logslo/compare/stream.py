"""A JSONL log read once, line by line, into one `Binned` per model version: the aggregate
path from a log file, in memory that does not grow with the log (the file backend holds
every line; this holds the versions' bins, ~1,800 latency bins and at most 1,024 steps of
them each, whatever the file's size).

A line counts for a version exactly where the line path's log query
(queries.version_requests) keeps it: its time in the window (start, end], the function's
stream, `event="inference"` and the version's `model_version`.
"""

from __future__ import annotations

import gzip
import os

from .. import queries
from ..file_backend import NS, _passes
from ..logfile import LogFile
from .binned import Binned


def open_log(path: str):
    return gzip.open(path, "rt", encoding="utf-8", errors="replace") if path.endswith(".gz") \
        else open(path, encoding="utf-8", errors="replace")


class StreamedLog:
    """The aggregate path's source for a log file: `version_binned` streams it into bins."""

    name = "file (streamed)"

    def __init__(self, path: str):
        self.path = path
        self.lines_read = 0

    def describe(self) -> str:
        return f"JSONL file {self.path} ({os.path.getsize(self.path) / 1e6:.1f} MB), streamed into bins"

    def version_binned(self, function: str, versions: tuple, start: float, end: float) -> dict:
        """{version: Binned} of the versions' requests in (start, end], in one pass."""
        wanted = {version: queries.version_requests(function, version) for version in versions}
        out = {version: Binned() for version in versions}
        start_ns, end_ns = int(round(start * NS)), int(round(end * NS))
        with open_log(self.path) as handle:
            for line in handle:
                line = line.strip()
                if not line.startswith("{"):
                    continue  # a watchdog line: `| json` drops it
                try:
                    entry = LogFile.parse(line)
                except ValueError:
                    continue  # no usable timestamp: no entry time, never in a window
                if entry is None or not start_ns < entry.time_ns <= end_ns:
                    continue
                self.lines_read += 1
                version = entry.fields.get(queries.VERSION)
                logs = wanted.get(version)
                if logs is not None and all(entry.stream.get(k, "") == v for k, v in logs.stream) \
                        and all(_passes(f, entry.fields) for f in logs.filters):
                    out[version].add(entry.fields)
        return out
