"""Two versions' requests as counts Loki computed: a handful of metric queries per look,
never the lines.

`LokiAggregates(backend).fetch(function, versions, start, end)` answers, for each version
asked, the aggregate interface's dict (compare/binned.py): request counts by status, a
latency histogram, the 200s' classes and (when asked) numeric fields binned. The queries
(queries.py) are `sum by (model_version, ...) (count_over_time(... [end - start]))`
evaluated at `end`: the window (start, end] of Loki's range semantics. Their answers are
a few hundred series, whatever the traffic: 4,353 requests or 10^7 cost the tool the same
bytes; Loki does the counting (and the scanning, which grows with the lines).

Latency bins. Loki has no `log` template function, so log-scale bins are bands of fixed
widths (LATENCY_BANDS_MS), one query per band, plus one count of the requests above the
last band. Each band's bins are about 1-5% of the latency they hold from 10 ms up (0.5 ms
at 10-100 ms: 2.5% at 20 ms, 1.25% at 40 ms), fine enough to resolve the comparison
contracts' bounds (a 10% shift of the classifier's 20-40 ms moves each request 4-8 bins);
below 10 ms the 0.1 ms bins are 1-10%. A band has at most 180 bins: at two versions, 360
series, under Loki's default `max_query_series` of 500.

Loki's bins are lower-closed ([k w, (k + 1) w), from `floor`); the interface's bins are
upper-closed. A request exactly on an edge (latency_ms logged to the microsecond: about 1
in 500 at 0.5 ms bins) counts one bin higher than an upper-closed histogram would put it,
a shift of at most one bin width, far below the bounds the bins are chosen for.

Cost: the backend counts what it sent and received (`queries_sent`, `bytes_received`);
`queries` and `bytes` here read them, so a watch can print what its looks cost.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from . import queries
from .logql import BinLabel, LabelFilter
from .vectors import Vector

# [low, high) ms and the bin width in each: ~1-5% of the latency from 10 ms up
LATENCY_BANDS_MS = ((0, 10, 0.1), (10, 100, 0.5), (100, 1000, 5), (1000, 10000, 50))


STEPS = (300, 120, 60, 30, 10, 5, 1)  # step lengths a stepped read tries, longest first
MIN_STEPS = 20  # a stepped read has at least this many steps


def window_seconds(start: float, end: float) -> int:
    """(start, end] as a whole number of seconds, the range a count is asked over."""
    window = end - start
    if window <= 0 or not float(window).is_integer():
        raise ValueError(f"a window is a whole number of seconds > 0, got ({start:g}, {end:g}]")
    return int(window)


def steps_of(start: float, end: float) -> int | None:
    """The longest step of STEPS that tiles (start, end] in at least MIN_STEPS steps, both
    ends on its grid (the grid Loki's query frontend aligns steps to), else None."""
    if not (float(start).is_integer() and float(end).is_integer()):
        return None
    for step in STEPS:
        if start % step == 0 and end % step == 0 and (end - start) // step >= MIN_STEPS:
            return step
    return None


class AggregateError(RuntimeError):
    """The engine's answers do not add up to one version's counts (say which and why)."""


@dataclass(frozen=True)
class Band:
    low: float | None
    high: float | None
    width: float

    @classmethod
    def of(cls, band) -> Band:
        return band if isinstance(band, Band) else cls(*band)


def contiguous(bins: dict, floor: float | None = None) -> list:
    """[[upper, count], ...] from {(lower, upper): count}: ascending, every gap filled with
    an empty bin, and led by an empty bin at the first lower edge (unless it is `floor`)."""
    out: list = []
    previous = floor
    for (lower, upper), count in sorted(bins.items()):
        if previous is None or not math.isclose(lower, previous, rel_tol=1e-12, abs_tol=1e-12):
            if previous is not None and lower < previous:
                raise AggregateError(f"bins overlap: one starts at {lower:g}, below the {previous:g} "
                                     "the one before ends at")
            out.append([float(lower), 0])
        out.append([float(upper), int(count)])
        previous = upper
    return out


def as_count(value: float, what: str) -> int:
    """A count the engine answered as a float (`"3783"`); a fraction means it is no count."""
    if not math.isfinite(value) or value < 0 or abs(value - round(value)) > 1e-6:
        raise AggregateError(f"{what}: {value!r} is not a count")
    return int(round(value))


class LokiAggregates:
    """Counts per model version from Loki metric queries (module docstring).

    `backend`: a LokiBackend (or anything with `instant` and `range`: the FileBackend gives
    the same numbers from a JSONL file); `bands`: the latency bands; `values`: {field:
    bin width} of the numeric fields to bin (a regression's `prediction_mean`), 200s only.
    """

    def __init__(self, backend, bands=LATENCY_BANDS_MS, values: dict | None = None):
        self.backend = backend
        self.bands = tuple(Band.of(b) for b in bands)
        self.values = dict(values or {})
        self._read: dict = {}  # (function, start, end) -> {version: counts}: the last window read
        if not self.bands:
            raise ValueError("at least one latency band")
        highs = [b.high for b in self.bands]
        if any(h is None for h in highs[:-1]):
            raise ValueError("only the last latency band may be open above")

    # -- cost ---------------------------------------------------------------------------
    @property
    def queries(self) -> int:
        return getattr(self.backend, "queries_sent", 0)

    @property
    def bytes(self) -> int:
        return getattr(self.backend, "bytes_received", 0)

    def describe(self) -> str:
        return "Loki metric queries (aggregates)"

    @property
    def queries_per_look(self) -> int:
        """Queries a `fetch` (or a `fetch_steps`) sends: one per band, the overflow, status,
        classes, one per value field."""
        overflow = 1 if self.bands[-1].high is not None else 0
        return len(self.bands) + overflow + 2 + len(self.values)

    # -- reads --------------------------------------------------------------------------
    def fetch(self, function: str, versions, start: float, end: float, latency: dict | None = None) -> dict:
        """{version: counts} over (start, end]; a version without requests has zero counts.
        `latency` ({version: {(lower, upper): count}}) when the latency was already counted."""
        window = window_seconds(start, end)
        status = self._by_version(queries.requests(function, window, by=(queries.VERSION, "status")), end, "status")
        if latency is None:
            latency = defaultdict(dict)
            for band in self.bands:
                self._add_band(latency, self.backend.instant(self._band_query(function, window, band), end), band)
            overflow = self._overflow(function, window)
            if overflow is not None:
                for version, n in self._by_version(overflow, end).items():
                    latency[version][(float(self.bands[-1].high), math.inf)] = n[()]
        classes = self._by_version(queries.class_counts(function, window), end, "top1_class")
        values = {field: self._values(function, window, field, width, end) for field, width in self.values.items()}
        return {version: self._counts(version, status.get(version, {}), latency.get(version, {}),
                                      classes.get(version, {}), {f: v.get(version, {}) for f, v in values.items()})
                for version in versions}

    def fetch_steps(self, function: str, versions, start: float, end: float, step_s: int) -> dict:
        """`fetch` plus `latency_steps`: the latency histogram of each step of `step_s` in
        (start, end] (start and end multiples of the step, so the steps tile the window),
        from one range query per band; the window's latency bins are the steps' sums (a
        stepped read costs the band queries once, as range queries)."""
        step_s = int(step_s)
        if step_s <= 0 or start % step_s or end % step_s:
            raise ValueError(f"a stepped read needs start and end on multiples of the {step_s}s step, "
                             f"got ({start:g}, {end:g}]")
        steps = self._stepped_bins(function, start, end, step_s)
        latency: dict = defaultdict(Counter)
        for version, by_step in steps.items():
            for bins in by_step.values():
                latency[version].update(bins)
        counts = self.fetch(function, versions, start, end, latency={v: dict(c) for v, c in latency.items()})
        for version in versions:
            counts[version]["latency_steps"] = [
                [float(at), [[float(upper), int(n)] for (_, upper), n in sorted(bins.items()) if n]]
                for at, bins in sorted(steps.get(version, {}).items())]
        return counts

    def _stepped_bins(self, function: str, start: float, end: float, step_s: int) -> dict:
        """version -> step start -> (lower, upper) -> requests, from one range query per band."""
        steps: dict = defaultdict(lambda: defaultdict(Counter))
        queries_ = [(band, self._band_query(function, step_s, band)) for band in self.bands]
        overflow = self._overflow(function, step_s)
        for band, query in queries_ + ([(None, overflow)] if overflow is not None else []):
            for key, points in self.backend.range(query, start + step_s, end, step_s).items():
                labels = dict(key)
                version = labels.get(queries.VERSION, "")
                edges = ((float(self.bands[-1].high), math.inf) if band is None
                         else self._edges(band, labels.get("bin", "")))
                for at, value in points:
                    if start < at <= end:  # Loki may add a step past `end`
                        steps[version][at - step_s][edges] += as_count(value, f"{version} latency step {at}")
        return steps

    def version_counts(self, function: str, version: str, start: float, end: float) -> dict:
        """One version's counts over (start, end] (the aggregate path's `version_counts`), with
        per-step histograms when the window's ends fall on a step grid (steps_of). Every
        version of the window is read at once and kept: the other version's call asks nothing."""
        key = (function, start, end)
        if key not in self._read:
            step = steps_of(start, end)
            versions = self._versions(function, start, end)
            self._read = {key: self.fetch_steps(function, versions, start, end, step) if step
                          else self.fetch(function, versions, start, end)}
        counts = self._read[key]
        if version in counts:
            return counts[version]
        return {"requests": 0, "latency_bins": [], "status": {}, "classes": {}, "values": {}}  # no request

    def _versions(self, function: str, start: float, end: float) -> tuple:
        query = queries.requests(function, window_seconds(start, end), by=(queries.VERSION,))
        return tuple(sorted(dict(key).get(queries.VERSION, "") for key in self.backend.instant(query, end)))

    # -- pieces -------------------------------------------------------------------------

    @staticmethod
    def _band_query(function: str, window: int, band: Band):
        return queries.binned_requests(function, window, "latency_ms", band.width, band.low, band.high)

    def _overflow(self, function: str, window: int):
        high = self.bands[-1].high
        if high is None:
            return None
        return queries.requests_where(function, window, LabelFilter("latency_ms", ">=", high))

    def _by_version(self, query, at: float, label: str | None = None) -> dict:
        """{version: {label value: count}} (label None: {(): count})."""
        out: dict = defaultdict(dict)
        for key, value in self.backend.instant(query, at).items():
            labels = dict(key)
            version = labels.get(queries.VERSION, "")
            name = labels.get(label, "") if label else ()
            out[version][name] = out[version].get(name, 0) + as_count(value, f"{version} {label or 'count'} {name}")
        return out

    @staticmethod
    def _edges(band: Band, label: str) -> tuple[float, float]:
        try:
            k = float(label)
        except ValueError:
            raise AggregateError(f"bin label {label!r} is not a number") from None
        if not k.is_integer():
            raise AggregateError(f"bin label {label!r} is not a whole number")
        return BinLabel("latency_ms", band.width).edges(int(k))

    def _add_band(self, latency: dict, vector: Vector, band: Band) -> None:
        for key, value in vector.items():
            labels = dict(key)
            version = labels.get(queries.VERSION, "")
            edges = self._edges(band, labels.get("bin", ""))
            latency[version][edges] = latency[version].get(edges, 0) + as_count(value, f"{version} latency bin")

    def _values(self, function: str, window: int, field: str, width: float, at: float) -> dict:
        query = queries.binned_requests(function, window, field, width, answered=True)
        out: dict = defaultdict(dict)
        binning = BinLabel(field, width)
        for key, value in self.backend.instant(query, at).items():
            labels = dict(key)
            k = float(labels.get("bin", "nan"))
            if not k.is_integer():
                raise AggregateError(f"{field} bin label {labels.get('bin')!r} is not a whole number")
            out[labels.get(queries.VERSION, "")][binning.edges(int(k))] = as_count(value, f"{field} bin")
        return out

    @staticmethod
    def _counts(version: str, status: dict, latency: dict, classes: dict, values: dict) -> dict:
        requests = sum(status.values())
        binned = sum(latency.values())
        if binned != requests:
            raise AggregateError(
                f"{version}: {requests} requests by status but {binned} in latency bins (lines without a "
                "numeric latency_ms, below 0, or lines that arrived between the queries)")
        return {"requests": requests, "latency_bins": contiguous(latency, floor=0.0),
                "status": {code: status[code] for code in sorted(status)},
                "classes": dict(sorted(classes.items(), key=lambda item: (-item[1], item[0]))),
                "values": {field: contiguous(bins) for field, bins in values.items()}}


def pairs_to_bins(pairs: list, floor: float) -> dict:
    """{(lower, upper): count} of the non-empty bins of [[upper, count], ...] (the first
    bin's lower edge is `floor`, or the upper of a leading empty bin)."""
    out, lower = {}, floor
    for upper, count in pairs:
        if count:
            out[(lower, upper)] = out.get((lower, upper), 0) + count
        lower = upper
    return out


def merge_counts(earlier: dict, later: dict) -> dict:
    """One version's counts over two adjacent windows added up: what a watch keeps when
    each look reads only the requests since the last one. Bins of the same fetcher are
    either the same or disjoint, so adding them is exact."""
    latency = pairs_to_bins(earlier["latency_bins"], 0.0)
    for key, n in pairs_to_bins(later["latency_bins"], 0.0).items():
        latency[key] = latency.get(key, 0) + n
    values = {}
    for field in set(earlier.get("values", {})) | set(later.get("values", {})):
        bins = pairs_to_bins(earlier.get("values", {}).get(field, []), -math.inf)
        for key, n in pairs_to_bins(later.get("values", {}).get(field, []), -math.inf).items():
            bins[key] = bins.get(key, 0) + n
        finite = {k: n for k, n in bins.items() if math.isfinite(k[0])}
        lowest = [[k[1], n] for k, n in bins.items() if not math.isfinite(k[0])]
        values[field] = lowest + (contiguous(finite)[1:] if lowest else contiguous(finite))
    out = {"requests": earlier["requests"] + later["requests"], "latency_bins": contiguous(latency, floor=0.0),
           "status": dict(sorted((Counter(earlier["status"]) + Counter(later["status"])).items())),
           "classes": dict((Counter(earlier.get("classes", {})) + Counter(later.get("classes", {}))).most_common()),
           "values": values}
    if "latency_steps" in earlier or "latency_steps" in later:
        out["latency_steps"] = sorted(earlier.get("latency_steps", []) + later.get("latency_steps", []))
    return out
