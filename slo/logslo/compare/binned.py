"""One version's requests as counts (`Binned`): what an aggregate query answers, or what a
log streamed line by line adds up to, in memory that does not grow with the traffic.

The aggregate interface: one version's counts as a plain dict (what a Loki metric query or
a Prometheus histogram is turned into, and what `Binned.from_counts` checks)

    {"requests": int,
     "latency_bins": [[upper_ms, count], ...],
     "status": {"200": n, "503": m, ...},
     "classes": {"tabby": n, ...},                          # top1_class of the 200s
     "values": {"prediction_mean": [[upper, count], ...]},  # a numeric field of the 200s
     "latency_steps": [[unix_s, [[upper_ms, count], ...]], ...]}   # optional

- bins are non-cumulative counts with strictly ascending upper edges; a bin covers
  (previous upper, upper]; the last upper may be float("inf"). The first latency bin
  starts at 0 and the first value bin at -inf: to start a histogram elsewhere, lead with
  an empty bin whose upper is the lower edge (Loki's `floor` bins [17, 18) ...: [[17, 0],
  [18, n17], ...]). Every bin between the first and the last is listed, empty ones with 0,
  so that each bin's lower edge is its predecessor's upper;
- the latency bins hold every request (their counts sum to `requests`), and so do the
  status counts; classes and values count 200 answers (at most `status["200"]`);
- `latency_steps` (a stepped query: the same histogram per time step, `unix_s` the step's
  start) lets the latency shift widen its interval for requests alike in time (the design
  effect, judge.py); a step lists only bins of `latency_bins` (empty ones may be left out).

A backend that counts server-side (Loki metric queries, a Prometheus histogram) offers
`version_counts(function, version, start, end) -> dict` (this dict, over (start, end]):
`Comparison` (sampling.py) reads the aggregate path through it. The status counts and the
latency bins count the same lines (those with a numeric `latency_ms` and `status`), as
the line path does.

`Binned.add(fields)` streams one log line in (the fields `| json` gives, as
`Sample.add` takes them): latency in log-scale bins of `LATENCY_RATIO` (1%) from 10 us to
10 minutes, a histogram per second of the timestamps (coarsened by doubling the step when
there would be more than `MAX_STEPS` steps), exact running moments of every numeric field
of the 200s. What binning costs each contract is in judge_binned.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..logfile import counted_request

# streamed latency: log-scale bins 1% wide (a shift of 1% moves a request one bin),
# from 10 microseconds to 10 minutes, and one bin above for anything slower
LATENCY_RATIO = 1.01
LATENCY_LOWEST_MS = 0.01
LATENCY_HIGHEST_MS = 600_000.0
MAX_STEPS = 1024  # histograms over time a streamed version keeps (~7 MB at most)
# fields of a 200 line that are not a model's value (everything else numeric is kept)
NOT_VALUES = frozenset({"latency_ms", "status", "timestamp", "queue_ms", "inference_ms", "preprocess_ms",
                        "input_bytes", "batch_size"})


def log_scale_uppers(lowest: float = LATENCY_LOWEST_MS, highest: float = LATENCY_HIGHEST_MS,
                     ratio: float = LATENCY_RATIO) -> np.ndarray:
    """Upper edges lowest * ratio**k up to `highest`, then inf (the first bin is (0, lowest])."""
    count = math.ceil(math.log(highest / lowest) / math.log(ratio))
    return np.append(lowest * ratio ** np.arange(count + 1), math.inf)


DEFAULT_LATENCY_UPPERS = log_scale_uppers()


@dataclass(frozen=True)
class Histogram:
    """Counts over bins: bin i covers (lowers[i], uppers[i]]; `floor` is the first bin's
    lower edge (0 for latency, -inf for a value)."""

    uppers: np.ndarray
    counts: np.ndarray
    floor: float = 0.0

    @property
    def lowers(self) -> np.ndarray:
        return np.concatenate(([self.floor], self.uppers[:-1]))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def occupied(self) -> Histogram:
        """The bins from the first non-empty one to the last, with the edges they need."""
        filled = np.flatnonzero(self.counts)
        if not len(filled):
            return self
        first, last = filled[0], filled[-1]
        floor = self.floor if first == 0 else float(self.uppers[first - 1])
        return Histogram(self.uppers[first:last + 1], self.counts[first:last + 1], floor)

    def quantile(self, phi: float) -> float:
        """The phi-quantile at rank phi*(n-1) (Loki's, 0-based), its order statistics
        placed evenly inside their bin (linear in the bin, as Prometheus' histogram_quantile);
        a rank in an unbounded bin is that bin's finite edge."""
        n = self.total
        if not n:
            return math.nan
        rank = phi * (n - 1)
        below, weight = math.floor(rank), rank - math.floor(rank)
        return (self.order_statistic(below) * (1 - weight) + self.order_statistic(min(n - 1, below + 1)) * weight)

    def order_statistic(self, index: int) -> float:
        """The 0-based `index`-th smallest value, placed at (j + 0.5)/count of its bin."""
        cumulative = np.cumsum(self.counts)
        i = int(np.searchsorted(cumulative, index, side="right"))
        lower, upper = float(self.lowers[i]), float(self.uppers[i])
        if not math.isfinite(upper):
            return lower
        if not math.isfinite(lower):
            return upper
        before = int(cumulative[i - 1]) if i else 0
        return lower + (index - before + 0.5) / int(self.counts[i]) * (upper - lower)

    def bin_of_rank(self, rank: int) -> int:
        """The bin holding the 1-based `rank`-th smallest value."""
        return int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))

    def as_pairs(self) -> list:
        pairs = [[float(u), int(c)] for u, c in zip(self.uppers, self.counts)]
        if self.floor not in (0.0, -math.inf):
            pairs.insert(0, [self.floor, 0])
        return pairs


@dataclass
class Moments:
    """A numeric field's count, mean and sum of squared deviations (Welford: exact, O(1))."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    off_by: float = 0.0  # how far the mean can be from the values' own: half the widest bin (0: exact)

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @classmethod
    def of_histogram(cls, hist: Histogram, name: str) -> Moments:
        """Each value at its bin's middle: the mean is off by at most half the widest
        occupied bin, the variance high by about width**2/12 (Sheppard), i.e. an interval
        a little wider than the values' own."""
        used = hist.occupied()
        if used.total and (not math.isfinite(float(used.lowers[0])) or not math.isfinite(float(used.uppers[-1]))):
            raise ValueError(f"values {name!r}: some counts are in an unbounded bin, so their mean is unknown: "
                             "bound the histogram (lead with an empty bin at its lowest edge, end below inf)")
        if not used.total:
            return cls()
        middles = (used.lowers + used.uppers) / 2
        n = used.total
        mean = float(np.dot(used.counts, middles) / n)
        return cls(n, mean, float(np.dot(used.counts, (middles - mean) ** 2)),
                   float((used.uppers - used.lowers).max() / 2))


class Binned:
    """One version's requests as counts: latency histogram, status and class counts, the
    numeric fields of the 200s, and (optionally) the latency histogram over time.
    Reads like a `Sample` to the contracts (requests, faults, rejections, classes,
    quantile, rate); its latency and values are a `Histogram` and `Moments`."""

    def __init__(self, latency_uppers: np.ndarray = DEFAULT_LATENCY_UPPERS, step_s: float = 1.0):
        self.latency_uppers = np.asarray(latency_uppers, float)
        self.latency_counts = np.zeros(len(self.latency_uppers), np.int64)
        self.latency_floor = 0.0
        self.status: Counter = Counter()
        self.classes: Counter = Counter()
        self._values: dict = {}  # name -> Moments
        self.steps: dict = {}  # step index (unix_s // step_s) -> counts over latency_uppers
        self.step_s = step_s
        self._step_origin = 0.0  # unix seconds of step key 0
        self.first_s = self.last_s = math.nan
        self.timed = 0  # requests with a timestamp
        self.source = "log lines"  # or "aggregates": what the report says it judged

    # -- what the contracts read ------------------------------------------------------------
    @property
    def requests(self) -> int:
        return int(self.latency_counts.sum())

    @property
    def faults(self) -> int:
        return sum(n for code, n in self.status.items() if int(code) >= 500)

    @property
    def rejections(self) -> int:
        return sum(n for code, n in self.status.items() if 400 <= int(code) < 500)

    @property
    def latency(self) -> Histogram:
        return Histogram(self.latency_uppers, self.latency_counts, self.latency_floor)

    def latency_over_time(self) -> tuple[np.ndarray, np.ndarray]:
        """(step starts in unix seconds, counts: one row per step), oldest first."""
        keys = sorted(self.steps)
        rows = np.array([self.steps[k] for k in keys]) if keys else np.zeros((0, len(self.latency_uppers)))
        return self._step_origin + np.array(keys, float) * self.step_s, rows

    def quantile(self, phi: float) -> float:
        return self.latency.quantile(phi)

    def values(self, name: str) -> Moments:
        return self._values.get(name, Moments())

    def rate(self) -> float | None:
        """Requests per second over the span the version was served."""
        if self.timed >= 2 and self.last_s > self.first_s:
            return (self.timed - 1) / (self.last_s - self.first_s)
        return None

    # -- streaming a log line in ----------------------------------------------------------
    def add(self, fields: dict) -> None:
        """One request's fields (strings, as `| json` gives them): what `Sample.add` keeps,
        counted instead of kept."""
        request = counted_request(fields)
        if request is None:
            return
        latency, status, at = request
        if self._count(latency, status, at) and status == 200:
            self._answer(fields)

    @classmethod
    def of_sample(cls, sample) -> Binned:
        """A `Sample`'s requests as counts (a watch that grew past its line budget)."""
        out = cls()
        for latency, at, status in zip(sample.latency_ms, sample.seconds, sample.statuses):
            out._count(latency, status, at)
        for fields in sample.answers:
            out._answer(fields)
        return out

    def _count(self, latency: float, status: int, at: float) -> bool:
        if not math.isfinite(latency):
            return False
        index = self._latency_bin(latency)
        self.latency_counts[index] += 1
        self.status[str(status)] += 1
        if not math.isnan(at):
            self._add_at(at, index)
        return True

    def _answer(self, fields: dict) -> None:
        """A 200's class and numeric fields."""
        if fields.get("top1_class"):
            self.classes[fields["top1_class"]] += 1
        for name, text in fields.items():
            if name in NOT_VALUES:
                continue
            try:
                value = float(text)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                self._values.setdefault(name, Moments()).add(value)

    def _latency_bin(self, latency: float) -> int:
        uppers = self.latency_uppers
        if uppers is DEFAULT_LATENCY_UPPERS:  # log scale: the bin is a logarithm away
            if latency <= LATENCY_LOWEST_MS:
                return 0
            i = math.ceil(math.log(latency / LATENCY_LOWEST_MS) / math.log(LATENCY_RATIO) - 1e-9)
            i = min(i, len(uppers) - 1)
            while i > 0 and uppers[i - 1] >= latency:  # float rounding at an edge
                i -= 1
            while uppers[i] < latency:
                i += 1
            return i
        return min(int(np.searchsorted(uppers, latency, side="left")), len(uppers) - 1)

    def _add_at(self, at: float, index: int) -> None:
        self.timed += 1
        self.first_s = at if not self.first_s <= at else self.first_s
        self.last_s = at if not self.last_s >= at else self.last_s
        key = int(at // self.step_s)
        row = self.steps.get(key)
        if row is None:
            if len(self.steps) >= MAX_STEPS:
                self._coarsen()
                key = int(at // self.step_s)
                row = self.steps.get(key)
            if row is None:
                row = self.steps[key] = np.zeros(len(self.latency_uppers), np.int32)
        row[index] += 1

    def _coarsen(self) -> None:
        """Twice as long steps: memory stays bounded however long the log is."""
        merged: dict = {}
        for key, row in self.steps.items():
            into = merged.get(key // 2)
            merged[key // 2] = row if into is None else into + row
        self.steps, self.step_s = merged, self.step_s * 2

    # -- the aggregate interface ----------------------------------------------------------
    @classmethod
    def from_counts(cls, counts: dict) -> Binned:
        """A version from the aggregate interface's dict (module docstring); ValueError names
        what is wrong with it."""
        if not isinstance(counts, dict):
            raise ValueError(f"a version's counts are a dict, got {type(counts).__name__}")
        unknown = set(counts) - {"requests", "latency_bins", "status", "classes", "values", "latency_steps"}
        if unknown:
            raise ValueError(f"unknown keys in a version's counts: {sorted(unknown)}")
        requests = _count(counts.get("requests"), "requests")
        latency = _bins(counts.get("latency_bins", []), "latency_bins", floor=0.0)
        if latency.total != requests:
            raise ValueError(f"latency_bins hold {latency.total} requests, requests says {requests}")
        out = cls(latency.uppers)
        out.latency_counts, out.latency_floor, out.source = latency.counts, latency.floor, "aggregates"
        out._read_status(counts.get("status", {}), requests)
        answers = out.status.get("200", 0)
        out._read_classes(counts.get("classes", {}), answers)
        out._read_values(counts.get("values", {}), answers)
        steps = counts.get("latency_steps")
        if steps is not None:
            out._read_steps(steps)
        return out

    def _read_status(self, status, requests: int) -> None:
        if not isinstance(status, dict):
            raise ValueError("status is a dict of status code -> count")
        for code, n in status.items():
            if not (isinstance(code, str) and len(code) == 3 and code.isdigit() and "100" <= code <= "599"):
                raise ValueError(f"status codes are three-digit strings ('200', '503'), got {code!r}")
            self.status[code] = _count(n, f"status {code}")
        if sum(self.status.values()) != requests:
            raise ValueError(f"status counts sum to {sum(self.status.values())}, requests says {requests}")

    def _read_classes(self, classes, answers: int) -> None:
        if not isinstance(classes, dict):
            raise ValueError("classes is a dict of top1_class -> count")
        for name, n in classes.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"class names are non-empty strings, got {name!r}")
            self.classes[name] = _count(n, f"class {name!r}")
        if sum(self.classes.values()) > answers:
            raise ValueError(f"classes count {sum(self.classes.values())} answers, more than the {answers} 200s")

    def _read_values(self, values, answers: int) -> None:
        if not isinstance(values, dict):
            raise ValueError("values is a dict of field name -> bins")
        for name, pairs in values.items():
            hist = _bins(pairs, f"values {name!r}", floor=-math.inf)
            if hist.total > answers:
                raise ValueError(f"values {name!r} count {hist.total}, more than the {answers} 200s")
            self._values[name] = Moments.of_histogram(hist, name)

    def _read_steps(self, steps) -> None:
        if not isinstance(steps, list):
            raise ValueError("latency_steps is a list of [unix_s, [[upper_ms, count], ...]]")
        position = {float(u): i for i, u in enumerate(self.latency_uppers)}
        starts = []
        for step in steps:
            if not (isinstance(step, (list, tuple)) and len(step) == 2):
                raise ValueError(f"a latency step is [unix_s, bins], got {step!r}")
            at, pairs = _number(step[0], "a latency step's unix_s"), step[1]
            if not isinstance(pairs, (list, tuple)):
                raise ValueError(f"latency step {at}: bins are a list of [upper_ms, count]")
            row = np.zeros(len(self.latency_uppers), np.int64)
            for pair in pairs:
                upper, n = _pair(pair, f"latency step {at}")
                if upper not in position:
                    raise ValueError(f"latency step {at}: upper edge {upper} is not one of latency_bins'")
                row[position[upper]] += n
            starts.append((at, row))
        starts.sort(key=lambda s: s[0])
        if len({at for at, _ in starts}) != len(starts):
            raise ValueError("latency_steps repeat a step")
        if len(starts) >= 2:
            gaps = np.diff([at for at, _ in starts])
            self.step_s = float(gaps.min())
        base = starts[0][0] if starts else 0.0
        # keys count steps from the first; their start is key * step_s, so shift by `base`
        self.steps = {round((at - base) / self.step_s): row for at, row in starts}
        self._step_origin = base
        timed = [(at, int(row.sum())) for at, row in starts if row.sum()]
        if timed:
            self.timed = sum(n for _, n in timed)
            self.first_s, self.last_s = timed[0][0], timed[-1][0] + self.step_s

    def to_counts(self) -> dict:
        """The aggregate interface's dict of this version (from_counts reads it back)."""
        out = {"requests": self.requests, "latency_bins": self.latency.as_pairs(),
               "status": dict(sorted(self.status.items())), "classes": dict(self.classes.most_common())}
        starts, rows = self.latency_over_time()
        if len(starts):
            out["latency_steps"] = [[float(at), [[float(self.latency_uppers[i]), int(row[i])]
                                                 for i in np.flatnonzero(row)]] for at, row in zip(starts, rows)]
        return out


def timeline_of(samples: dict, steps: int = 40) -> dict:
    """The latency timeline (timeline.latency_timeline's shape) from the versions' Binned
    over time: about `steps` steps over the span that has requests."""
    out = {"step_s": None, "logql": [], "p50_ms": {}, "p99_ms": {}}
    spans = {v: b.latency_over_time() for v, b in samples.items()}
    starts = [t for t, _ in spans.values() if len(t)]
    if not starts:
        return out
    first, last = min(t[0] for t in starts), max(t[-1] for t in starts)
    step = max(min(b.step_s for b in samples.values()), (last - first) / steps) or 1.0
    out["step_s"] = step
    for version, (times, rows) in sorted(spans.items()):
        groups = np.floor((times - first) / step).astype(int)
        for phi in (0.5, 0.99):
            points = []
            for g in np.unique(groups):
                hist = Histogram(samples[version].latency_uppers, rows[groups == g].sum(axis=0),
                                 samples[version].latency_floor)
                points.append((float(first + (g + 1) * step), hist.quantile(phi)))
            out[f"p{phi * 100:g}_ms"][version] = points
    return out


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} is a count (an int >= 0), got {value!r}")
    return int(value)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or math.isnan(value):
        raise ValueError(f"{what} is a number, got {value!r}")
    return float(value)


def _pair(pair, what: str) -> tuple[float, int]:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
        raise ValueError(f"{what}: a bin is [upper, count], got {pair!r}")
    return _number(pair[0], f"{what}: an upper edge"), _count(pair[1], f"{what}: a bin's count")


def _bins(pairs, what: str, floor: float) -> Histogram:
    """Checked bins: ascending uppers, only the last may be inf; a leading empty bin sets
    the floor (the first bin's lower edge)."""
    if not isinstance(pairs, (list, tuple)):
        raise ValueError(f"{what} is a list of [upper, count]")
    read = [_pair(p, what) for p in pairs]
    uppers = [u for u, _ in read]
    if any(b <= a for a, b in zip(uppers, uppers[1:])):
        raise ValueError(f"{what}: upper edges must be strictly ascending, got {uppers}")
    if any(not math.isfinite(u) for u in uppers[:-1]) or (uppers and uppers[-1] == -math.inf):
        raise ValueError(f"{what}: only the last upper edge may be inf")
    latency = floor == 0.0
    if len(read) >= 2 and read[0][1] == 0:
        floor, read = read[0][0], read[1:]
    if latency and read and (read[0][0] <= 0 or floor < 0):
        raise ValueError(f"{what}: latency edges are >= 0 ms and a bin's upper > 0, got {uppers[:2]}")
    return Histogram(np.array([u for u, _ in read], float), np.array([n for _, n in read], np.int64), floor)
