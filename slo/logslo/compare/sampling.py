"""What a comparison reads: each version's requests (`Sample`) and, over one window, both
versions' figures and samples (`Comparison`).

The figures come from the LogQL of the SLO contracts (queries.py); the samples from a log
query, request by request (`backend.lines`: the line path), or as counts (binned.Binned:
the aggregate path) from a backend's `version_counts` or a log file streamed into bins,
whose figures are then the bins' (paths.py says which path and why). Nothing here
judges: judgements.py does.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .. import queries
from ..logfile import counted_request
from ..promql_math import quantile
from ..psi import psi
from ..settings import DEFAULT_COMPARE_LINES_MAX, DEFAULT_COMPARE_MEMORY_MB
from ..timeline import FINE_STEPS, latency_timeline
from ..vectors import by_label
from . import paths
from .binned import Binned, timeline_of

PERCENTILES = (0.5, 0.95, 0.99)


@dataclass
class Sample:
    """One version's requests in the window, as the judge needs them."""

    latency_ms: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # each request's unix time (nan: none logged)
    faults: int = 0  # 5xx
    rejections: int = 0  # 4xx
    answers: list = field(default_factory=list)  # the fields of each 200's line
    statuses: list = field(default_factory=list)  # each request's status (Binned.of_sample)

    @property
    def classes(self) -> Counter:
        """The top-1 class of each 200 that names one."""
        return Counter(fields["top1_class"] for fields in self.answers if fields.get("top1_class"))

    def values(self, name: str) -> list:
        """The numeric `name` field of each 200 (a regression's prediction_mean, say)."""
        out = []
        for fields in self.answers:
            try:
                out.append(float(fields[name]))
            except (KeyError, TypeError, ValueError):
                continue
        return [v for v in out if math.isfinite(v)]

    @property
    def requests(self) -> int:
        return len(self.latency_ms)

    def quantile(self, phi: float) -> float:
        """The latency phi-quantile (Loki's: rank phi*(n-1), interpolated)."""
        return quantile(phi, self.latency_ms)

    def rate(self) -> float | None:
        """Requests per second over the span the version was served."""
        known = [t for t in self.seconds if not math.isnan(t)]
        if len(known) < 2 or max(known) == min(known):
            return None
        return (len(known) - 1) / (max(known) - min(known))

    def add(self, fields: dict) -> None:
        request = counted_request(fields)
        if request is None:
            return
        latency, status, at = request
        self.latency_ms.append(latency)
        self.seconds.append(at)
        self.statuses.append(status)
        self.faults += status >= 500
        self.rejections += 400 <= status < 500
        if status == 200:
            self.answers.append(fields)


class Comparison:
    """The two versions' figures and samples over one window, each query asked once.

    `path`: "lines", "aggregates" or "auto" (lines up to `lines_max` requests a version
    counted first, aggregates above when the backend can count them); the line path
    refuses (paths.TooBig) when keeping the requests would need more than `memory_mb`.
    A backend that streams a log file into bins (`version_binned`) is always read as
    aggregates, and gives the figures too."""

    def __init__(self, backend, function: str, at: float, window_s: int, baseline: str, candidate: str,
                 process_sd: float = 0.0, path: str = "lines", lines_max: int = DEFAULT_COMPARE_LINES_MAX,
                 memory_mb: float = DEFAULT_COMPARE_MEMORY_MB, why: str = ""):
        self.backend, self.function, self.at, self.window_s = backend, function, at, window_s
        # the latency shift's sd between two process starts of one code (COMPARE_PROCESS_SD;
        # make review: each side is one process)
        self.process_sd = process_sd
        self.baseline, self.candidate = baseline, candidate
        self.logql: dict = {}  # figure -> LogQL text
        self.figures = {baseline: {}, candidate: {}}
        self.path, self.path_why = path, why or ("COMPARE_PATH=" + path)
        if hasattr(backend, "version_binned"):
            self.path, self.path_why = "aggregates", why or "a log file streamed into bins"
            self.samples = backend.version_binned(function, self.versions, at - window_s, at)
            for version in self.versions:
                self._logql_of(version)
                self.figures[version] = figures_of(self.samples[version])
            self.timeline = timeline_of(self.samples, FINE_STEPS)
            return
        self._measure()
        self._resolve_path(lines_max)
        if self.path == "aggregates":
            self.samples = self._read_counts()
        else:
            self.samples = {baseline: Sample(), candidate: Sample()}
            self._read_samples(memory_mb)
        timeline = latency_timeline(backend, function, at, window_s)
        self.timeline = {**timeline, **{k: {ver: pts for ver, pts in timeline[k].items() if ver in self.versions}
                                        for k in ("p50_ms", "p99_ms")}}

    @property
    def versions(self):
        return (self.baseline, self.candidate)

    def _ask(self, name, query):
        self.logql[name] = query.render()
        return self.backend.instant(query, self.at)

    def _measure(self):
        f, w, v = self.function, self.window_s, (queries.VERSION,)
        counts = by_label(self._ask("requests", queries.requests(f, w, by=v)), queries.VERSION)
        latency = {phi: by_label(self._ask(f"p{phi * 100:g} latency", queries.latency_quantile(f, phi, w, by=v)),
                                 queries.VERSION) for phi in PERCENTILES}
        ratio5 = by_label(self._ask("5xx ratio", queries.status_ratio(f, w, 500, by=v)), queries.VERSION)
        ratio4 = by_label(self._ask("4xx ratio", queries.status_ratio(f, w, 400, 500, by=v)), queries.VERSION)
        for version in self.versions:
            n = counts.get(version, 0.0)
            shares_query = queries.class_share(f, w, version=version)
            shares = by_label(self._ask(f"class shares of {version}", shares_query), "top1_class") if n else {}
            self.figures[version] = {
                "requests": n,
                **{f"p{phi * 100:g}_ms": latency[phi].get(version) for phi in PERCENTILES},
                # a version with traffic but no 5xx (4xx) is absent from the ratio: 0
                "ratio_5xx": ratio5.get(version, 0.0) if n else None,
                "ratio_4xx": ratio4.get(version, 0.0) if n else None,
                "class_shares": dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))),
            }

    def _logql_of(self, version):
        """The LogQL whose numbers the bins give (what each figure means), asked of no one."""
        f, w, v = self.function, self.window_s, (queries.VERSION,)
        self.logql[f"requests of {version}"] = queries.version_requests(f, version).render()
        self.logql["requests"] = queries.requests(f, w, by=v).render()
        for phi in PERCENTILES:
            self.logql[f"p{phi * 100:g} latency"] = queries.latency_quantile(f, phi, w, by=v).render()
        self.logql["5xx ratio"] = queries.status_ratio(f, w, 500, by=v).render()
        self.logql["4xx ratio"] = queries.status_ratio(f, w, 400, 500, by=v).render()
        self.logql[f"class shares of {version}"] = queries.class_share(f, w, version=version).render()

    def _resolve_path(self, lines_max):
        """auto: aggregates when a version counted more than `lines_max` requests and the
        backend can count, lines otherwise."""
        if self.path != "auto":
            return
        most = max(self.figures[v]["requests"] or 0 for v in self.versions)
        counts = hasattr(self.backend, "version_counts")
        if most > lines_max and counts:
            self.path, self.path_why = "aggregates", f"auto: {most:,.0f} requests a version counted, above " \
                                                     f"COMPARE_LINES_MAX={lines_max}"
        else:
            self.path = "lines"
            self.path_why = f"auto: {most:,.0f} requests a version counted, " + \
                ("within " if most <= lines_max else "above (this backend counts no aggregates) ") + \
                f"COMPARE_LINES_MAX={lines_max}"

    def _read_counts(self) -> dict:
        start = self.at - self.window_s
        out = {}
        for version in self.versions:
            self.logql[f"requests of {version}"] = queries.version_requests(self.function, version).render() + \
                " (counted by the backend's aggregate queries)"
            out[version] = Binned.from_counts(self.backend.version_counts(self.function, version, start, self.at))
        return out

    def _read_samples(self, memory_mb: float):
        expected = {v: self.figures[v]["requests"] or 0 for v in self.versions}
        paths.check_budget(self.backend, expected, memory_mb)
        per_request = paths.KEPT_BYTES.get(getattr(self.backend, "name", ""), paths.KEPT_BYTES["loki"])
        kept, most = 0, memory_mb * 1e6 / per_request
        for version in self.versions:
            logs = queries.version_requests(self.function, version)
            self.logql[f"requests of {version}"] = logs.render()
            for fields in self.backend.lines(logs, self.at - self.window_s, self.at):
                self.samples[version].add(fields)
                kept += 1
                if kept > most:  # more lines than counted (late arrivals): stop at the budget
                    paths.check_budget(self.backend, {v: s.requests for v, s in self.samples.items()}, memory_mb)

    def figure(self, version, name):
        value = self.figures[version].get(name)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    def deltas(self) -> dict:
        out = {}
        for name in ("requests", *(f"p{phi * 100:g}_ms" for phi in PERCENTILES), "ratio_5xx", "ratio_4xx"):
            base, cand = self.figure(self.baseline, name), self.figure(self.candidate, name)
            out[name] = None if base is None or cand is None else cand - base
        base, cand = self.figures[self.baseline]["class_shares"], self.figures[self.candidate]["class_shares"]
        out["class_mix_psi"] = psi(cand, base) if base and cand else None
        return out

    def rate(self) -> float | None:
        """The slower version's requests per second: how fast more data would come."""
        rates = [r for r in (s.rate() for s in self.samples.values()) if r]
        return min(rates) if len(rates) == 2 else None


def figures_of(binned: Binned) -> dict:
    """The figures the LogQL would give, from a version's bins (quantiles interpolated in their bin)."""
    n = binned.requests
    answers = binned.status.get("200", 0)
    shares = {k: c / answers for k, c in binned.classes.items()} if answers else {}
    return {"requests": float(n), **{f"p{phi * 100:g}_ms": binned.quantile(phi) if n else None for phi in PERCENTILES},
            "ratio_5xx": binned.faults / n if n else None, "ratio_4xx": binned.rejections / n if n else None,
            "class_shares": dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])))}

