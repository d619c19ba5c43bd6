"""Read a JSONL log (one pod's stdout) into entries the way Promtail/Alloy ship it to Loki.

Each JSON line becomes an Entry: its time is the line's own `timestamp` (what the
Promtail/Alloy timestamp stage does), its stream labels are app/container = `function`
(what the shipping configs attach), and its extracted labels are what LogQL `| json`
would produce: every field as a string, numbers in their original spelling.
Lines that are not JSON objects (of-watchdog lines) are kept as parse errors, so the
evaluator can drop them exactly where `| json | __error__=""` does.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import re
from dataclasses import dataclass, field

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)
_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def parse_rfc3339_ns(text: str) -> int:
    """'2026-11-21T04:00:00.123Z' -> unix nanoseconds, exact (no float rounding)."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    nanos = int((fraction or "").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


@functools.lru_cache(maxsize=4096)
def _label(key: str) -> str:
    """A JSON key as a label name (the same few keys on every line: computed once each)."""
    return _LABEL_CHARS.sub("_", key)


def _flatten(prefix: str, value, out: dict) -> None:
    """LogQL `| json`: nested keys joined by `_`, names sanitised, arrays skipped."""
    if isinstance(value, dict):
        for key, inner in value.items():
            name = _label(key)
            name = f"{prefix}_{name}" if prefix else name
            if isinstance(inner, str):  # most fields (numbers are parsed as their text)
                out[name] = inner
            else:
                _flatten(name, inner, out)
    elif isinstance(value, list):
        return
    elif value is None:
        out[prefix] = ""
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    else:
        out[prefix] = str(value)


@dataclass
class Entry:
    time_ns: int
    stream: dict  # app, container: the labels the shipping configs attach
    fields: dict  # what `| json` extracts, every value a string


@dataclass
class LogFile:
    entries: list = field(default_factory=list)
    not_json: int = 0  # lines `| json | __error__=""` drops
    no_timestamp: int = 0  # JSON lines without a usable `timestamp`: no entry time, skipped

    @classmethod
    def read(cls, path: str) -> LogFile:
        log = cls()
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                log.add_line(line)
        return log

    def add_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            entry = self.parse(line)
        except ValueError:
            self.no_timestamp += 1
            return
        if entry is None:
            self.not_json += 1
        else:
            self.entries.append(entry)

    @staticmethod
    def parse(line: str) -> Entry | None:
        """One line as an Entry; None if it is not a JSON object, ValueError if it has no
        usable `timestamp`."""
        try:
            # Numbers stay strings in their original spelling, like Loki's json parser.
            record = json.loads(line, parse_float=str, parse_int=str, parse_constant=str)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        time_ns = parse_rfc3339_ns(str(record.get("timestamp", "")))
        fields: dict = {}
        _flatten("", record, fields)
        function = fields.get("function", "")
        return Entry(time_ns, {"app": function, "container": function}, fields)


def counted_request(fields: dict) -> tuple[float, int, float] | None:
    """(latency_ms, status, unix time or nan) of a request line the contracts count; None
    for a line without a numeric latency_ms and status (dropped by `unwrap` too)."""
    try:
        latency, status = float(fields["latency_ms"]), int(fields["status"])
    except (KeyError, ValueError):
        return None
    try:
        at = parse_rfc3339_ns(fields.get("timestamp", "")) / 1e9
    except ValueError:
        at = math.nan
    return latency, status, at

