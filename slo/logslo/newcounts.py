"""What a watch reads at each look from an engine that counts (the aggregate path): each
version's counts new since the last look, never a line.

    reader = NewCounts(fetcher, function, versions, since=start, warmup_s=30)
    look = reader.read(until)      # Counted: {version: counts} new, and the warm-up's

`fetcher` is a LokiAggregates or PrometheusAggregates. A look reads (last, until - lag],
the lag (WATCH_OVERLAP) leaving time for lines Loki ingests late: a count cannot be
deduplicated by request id as lines are, so the window is read once, after the lines are
in. Both ends are on a grid of `step_s`, and the read is stepped (the latency histogram of
each step), which gives each version's first request time to the step: a version's first
`warmup_s` seconds, and up to a step more, are read, counted as warm-up and not judged
(one more read, of the rest of the window, at the look that ends the warm-up).

A read either returns every version's counts or raises (LokiError, PrometheusError,
AggregateError): the cursor moves only after a complete read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .aggregates import merge_counts

DEFAULT_STEP_S = 5


@dataclass
class Counted:
    """One look's new counts (`counts`: version -> the aggregate interface's dict, the
    judged requests only) and the requests of each version left out as warm-up."""

    counts: dict
    warming: dict = field(default_factory=dict)
    window: tuple = (0.0, 0.0)

    def new_requests(self, version: str) -> int:
        return self.counts.get(version, {}).get("requests", 0) + self.warming.get(version, 0)


class NewCounts:
    def __init__(self, fetcher, function: str, versions: tuple, since: float, warmup_s: float = 0.0,
                 lag_s: float = 30.0, step_s: int = DEFAULT_STEP_S):
        if step_s <= 0 or lag_s < 0:
            raise ValueError(f"a step is > 0 s and a lag >= 0 s, got {step_s}, {lag_s}")
        self.fetcher, self.function, self.versions = fetcher, function, tuple(versions)
        self.step_s, self.lag_s, self.warmup_s = int(step_s), lag_s, warmup_s
        self.last = self._grid(since)  # the end of the last complete read
        self.first_seen: dict = {}  # version -> the end of its first step with a request (no earlier
        # than that request: the warm-up counted from it leaves out at least warmup_s)

    def describe(self) -> str:
        return self.fetcher.describe()

    def _grid(self, t: float) -> float:
        return math.floor(t / self.step_s) * self.step_s

    def read(self, until: float) -> Counted:
        end = self._grid(until - self.lag_s)
        start = self.last
        if end <= start:
            return Counted({v: _empty() for v in self.versions}, {}, (start, start))
        got = self.fetcher.fetch_steps(self.function, self.versions, start, end, self.step_s)
        first_seen = dict(self.first_seen)
        counts, warming = {}, {}
        for version in self.versions:
            mine = got[version]
            steps = [at for at, pairs in mine.get("latency_steps", []) if any(n for _, n in pairs)]
            if version not in first_seen and steps:  # its first request: in (step start, step end]
                first_seen[version] = min(steps) + self.step_s
            warm_end = first_seen.get(version, math.inf) + self.warmup_s
            if not mine["requests"] or warm_end <= start:
                counts[version] = mine
                continue
            if warm_end >= end:  # all of this window's requests are in the warm-up
                counts[version], warming[version] = _empty(), mine["requests"]
                continue
            judged_from = math.ceil(warm_end / self.step_s) * self.step_s  # no warm-up request judged
            if judged_from >= end:
                counts[version], warming[version] = _empty(), mine["requests"]
                continue
            rest = self.fetcher.fetch_steps(self.function, (version,), judged_from, end, self.step_s)[version]
            counts[version], warming[version] = rest, mine["requests"] - rest["requests"]
        self.first_seen, self.last = first_seen, end
        return Counted(counts, warming, (start, end))


def _empty() -> dict:
    return {"requests": 0, "latency_bins": [], "status": {}, "classes": {}, "values": {}, "latency_steps": []}


def add(kept: dict | None, new: dict) -> dict:
    """A version's counts so far with a look's new ones added."""
    return new if kept is None else merge_counts(kept, new)
