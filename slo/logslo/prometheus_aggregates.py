"""Two versions' requests as counts from the functions' own Prometheus series: a handful
of PromQL queries per look, never a log line.

`PrometheusAggregates(url).fetch(function, versions, start, end)` answers, for each version
asked, the aggregate interface's dict (compare/binned.py), read from the series the
runtime exposes (template/python3-http-torch/torchfaas/metrics.py):

- requests by status: `torchfaas_requests_total{event="inference"}`;
- latency: `torchfaas_request_latency_seconds_bucket`, the runtime's buckets (about 5% of
  the latency from 10 to 100 ms: LATENCY_BUCKETS says why) plus the function's objective;
- values: each histogram the handler declares (`torchfaas_prediction_metric_info`, e.g.
  the classifier's top1_prob), binned by its own buckets;
- classes: a declared label counter of `top1_class` (its `prediction` label), when there
  is one; a classifier with a thousand classes declares none, and its class mix is read
  from Loki.

Counts over the window (start, end] are exact, not `increase()`'s extrapolation (which
scales every count by the window over the span its samples cover and misses a series'
first value): per series, its largest value in the window less its value at the start
(`max_over_time(x[w]) - x offset w`), or its largest value when it was born in the window
(a new pod counts from 0). A process that restarted in its pod during the window (its
counters reset under the same labels) is counted from its raw samples instead, two more
queries a kind of series: each sample adds its rise over the one before, or its whole value
after a reset (a restarted process counts from 0), so its counts are exact too, but for
what it served after its last scrape before it died, which no scrape saw.

A scrape reads the counters one after another: a request answered in between is in the
status counter and not yet in the histogram (or the other way round). Differences of a
few requests (RECONCILE) between the two totals are taken up by the status 200 count (the
histogram is the request count); larger ones are an error.

Cost: `queries` and `bytes` count what was sent and received.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict

from .aggregates import AggregateError, as_count, steps_of, window_seconds
from .logql import format_duration

VERSION = "model_version"
REQUESTS = "torchfaas_requests_total"
LATENCY = "torchfaas_request_latency_seconds"
INFO = "torchfaas_prediction_metric_info"
CLASS_FIELD, CLASS_LABEL = "top1_class", "prediction"
RECONCILE = (3, 0.001)  # at most max(3 requests, 0.1%) between the status and latency totals


class PrometheusError(RuntimeError):
    """Prometheus could not answer; `kind` as LokiError's (unreachable, timeout, refused,
    server_error, bad_answer), `detail` Prometheus' own text."""

    def __init__(self, message: str, kind: str, detail: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.detail = detail


def window_increase(series: str, window_s: int, by: tuple) -> str:
    """PromQL: how much each counter of `series` grew over the window, summed by `by`
    (module docstring: exact, with a series born in the window counted whole). For series
    that did not restart in it: those of a restarted process are counted by rises()."""
    w = format_duration(window_s)
    exact = f"(max_over_time({series}[{w}]) - {series} offset {w}) or max_over_time({series}[{w}])"
    return f"sum by ({', '.join(by)}) ({exact})"


def selector(name: str, function: str, *extra: str, **labels) -> str:
    """`name{function="f",label="value",...}`, `extra` matchers appended as written."""
    matchers = [f'function="{function}"'] + [f'{k}="{v}"' for k, v in labels.items()] + list(extra)
    return f"{name}{{{','.join(matchers)}}}"


def instances(names, match: bool = True) -> str:
    """A matcher of the `instance` label: one of `names` (or, match=False, none of them)."""
    pattern = "|".join(re.escape(name) for name in sorted(names)).replace("\\", "\\\\")
    return f'instance{"=~" if match else "!~"}"{pattern}"'


def rises(before: float | None, samples) -> list:
    """[(time, count)] each raw sample of a counter adds: its rise over the sample before,
    or its whole value when there is none before (born in the window) or it fell (reset)."""
    out = []
    for at, raw in samples:
        value = float(raw)
        out.append((float(at), value if before is None or value < before else value - before))
        before = value
    return out


class Series:
    """The series of one metric of a function, split by whether their process restarted in
    the window (`restarted`: instances): PromQL counts the steady ones, raw samples the others."""

    def __init__(self, name: str, function: str, restarted: frozenset = frozenset(), **labels):
        self.name, self.function, self.restarted, self.labels = name, function, restarted, labels

    def steady(self) -> str:
        extra = [instances(self.restarted, match=False)] if self.restarted else []
        return selector(self.name, self.function, *extra, **self.labels)

    def restarted_only(self) -> str:
        return selector(self.name, self.function, instances(self.restarted), **self.labels)


def _key(labels: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


class PrometheusAggregates:
    def __init__(self, url: str, timeout_s: float = 30.0, headers: dict | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = {"Accept": "application/json", "User-Agent": "torchfaas-slo", **(headers or {})}
        self.queries = 0  # HTTP requests sent
        self.bytes = 0  # body bytes received
        self.unbounded: set = set()  # value fields left out: answers in an unbounded bucket

    def describe(self) -> str:
        return f"Prometheus at {self.url} (aggregates)"

    # -- reads --------------------------------------------------------------------------
    def fetch(self, function: str, versions, start: float, end: float, latency: dict | None = None,
              restarted: frozenset | None = None) -> dict:
        """{version: counts} over (start, end]; a version without requests has zero counts.
        `latency` ({version: {(lower, upper): count}}) when the latency was already counted,
        `restarted` when the restarted instances are known (restarted())."""
        window = window_seconds(start, end)
        if restarted is None:
            restarted = self.restarted(function, window, end)
        status = self._grouped(Series(REQUESTS, function, restarted, event="inference"), window, end, "status")
        if latency is None:
            latency = self._histograms(Series(LATENCY + "_bucket", function, restarted, event="inference"),
                                       window, end, scale=1000.0)
        declared = self._declared(function, end)
        values = {field: self._histograms(Series(metric + "_bucket", function, restarted), window, end)
                  for metric, kind, field in declared if kind == "histogram"}
        classes: dict = {}
        for metric, kind, field in declared:
            if kind == "counter" and field == CLASS_FIELD:
                classes = self._grouped(Series(metric, function, restarted), window, end, CLASS_LABEL)
        return {version: self._counts(version, dict(status.get(version, {})), latency.get(version, {}),
                                      classes.get(version, {}), {f: v.get(version, {}) for f, v in values.items()})
                for version in versions}

    def fetch_steps(self, function: str, versions, start: float, end: float, step_s: int) -> dict:
        """`fetch` plus `latency_steps`: the histogram of each step of `step_s` tiling
        (start, end] (end - start a multiple of the step), from one range query; the
        window's latency bins are the steps' sums."""
        step_s = int(step_s)
        if step_s <= 0 or (end - start) % step_s:
            raise ValueError(f"a stepped read needs end - start a multiple of the {step_s}s step")
        restarted = self.restarted(function, window_seconds(start, end), end)
        cumulative = self._stepped_buckets(Series(LATENCY + "_bucket", function, restarted, event="inference"),
                                           start, end, step_s)
        steps = {version: {at: _non_cumulative(les, 1000.0) for at, les in by_step.items()}
                 for version, by_step in cumulative.items()}
        latency: dict = {}
        for version, by_step in steps.items():
            total: dict = defaultdict(int)
            for bins in by_step.values():
                for key, n in bins.items():
                    total[key] += n
            latency[version] = dict(total)
        counts = self.fetch(function, versions, start, end, latency=latency, restarted=restarted)
        for version in versions:
            counts[version]["latency_steps"] = [[at, [[upper, n] for (_, upper), n in sorted(bins.items()) if n]]
                                                for at, bins in sorted(steps.get(version, {}).items())]
        return counts

    def _stepped_buckets(self, buckets: Series, start: float, end: float, step_s: int) -> dict:
        """{version: {step start: {le: count}}}: a histogram's cumulative buckets step by step,
        one range query for the steady series, the restarted ones from their raw samples."""
        query = window_increase(buckets.steady(), step_s, (VERSION, "le"))
        data = self._get("/api/v1/query_range", query, {"start": _time(start + step_s), "end": _time(end),
                                                         "step": str(step_s)})
        cumulative: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
        for series in self._result(data, "matrix", query):
            version, le = series["metric"].get(VERSION, ""), float(series["metric"]["le"])
            for at, value in series["values"]:
                cumulative[version][float(at) - step_s][le] += as_count(round(float(value)), f"{version} le={le}")
        for labels, samples in self._restarted_rises(buckets, window_seconds(start, end), end):
            version, le = labels.get(VERSION, ""), float(labels["le"])
            for at, n in samples:
                if at > start:  # (a sample on the start itself rose from itself: nothing)
                    cumulative[version][start + (math.ceil((at - start) / step_s) - 1) * step_s][le] += round(n)
        return cumulative

    def version_binned(self, function: str, versions, start: float, end: float) -> dict:
        """{version: Binned} over (start, end] (the comparison's aggregate path, its figures
        read from the bins). A value histogram with answers in an unbounded bucket (below its
        lowest bound or above its highest) has no known mean: it is left out, and named in
        `unbounded`."""
        from .compare.binned import Binned

        step = steps_of(start, end)
        counts = self.fetch_steps(function, versions, start, end, step) if step else \
            self.fetch(function, versions, start, end)
        out = {}
        for version, got in counts.items():
            for field, pairs in list(got["values"].items()):
                # bins from _trimmed: a first bin with answers is the lowest bucket, (-inf, le]
                if pairs and (pairs[0][1] > 0 or math.isinf(pairs[-1][0])):
                    del got["values"][field]
                    self.unbounded.add(field)
            out[version] = Binned.from_counts(got)
        return out

    # -- pieces -------------------------------------------------------------------------

    def _declared(self, function: str, at: float) -> list:
        """(metric, kind, field) of each prediction series the function declares."""
        query = f"max by (metric, kind, field) ({selector(INFO, function)})"
        return sorted({(s["metric"]["metric"], s["metric"]["kind"], s["metric"]["field"])
                       for s in self._instant(query, at)})

    def restarted(self, function: str, window: int, at: float) -> frozenset:
        """The instances whose process restarted in the window: their request counters reset."""
        query = f"count by (instance) (resets({selector(REQUESTS, function)}[{format_duration(window)}]) > 0)"
        return frozenset(series["metric"].get("instance", "") for series in self._instant(query, at))

    def _increase(self, series: Series, window: int, at: float, by: tuple) -> list:
        """[(labels, count)] of each group of `by`: what the series counted in the window."""
        query = window_increase(series.steady(), window, by)
        out = [(s["metric"], float(s["value"][1])) for s in self._instant(query, at)]
        for labels, samples in self._restarted_rises(series, window, at):
            out.append(({key: labels.get(key, "") for key in by}, sum(n for _, n in samples)))
        return out

    def _restarted_rises(self, series: Series, window: int, at: float) -> list:
        """[(labels, [(time, count)])] of each series of a restarted instance: what each raw
        sample in the window added (rises()), from the value at the window's start."""
        if not series.restarted:
            return []
        w = format_duration(window)
        before = {_key(s["metric"]): float(s["value"][1])
                  for s in self._instant(f"{series.restarted_only()} offset {w}", at)}
        query = f"{series.restarted_only()}[{w}]"
        return [(s["metric"], rises(before.get(_key(s["metric"])), s["values"]))
                for s in self._result(self._get("/api/v1/query", query, {"time": _time(at)}), "matrix", query)]

    def _grouped(self, series: Series, window: int, at: float, label: str) -> dict:
        out: dict = defaultdict(dict)
        for labels, count in self._increase(series, window, at, (VERSION, label)):
            version, name = labels.get(VERSION, ""), labels.get(label, "")
            n = as_count(round(count), f"{version} {label} {name}")
            if n:
                out[version][name] = out[version].get(name, 0) + n
        return out

    def _histograms(self, buckets: Series, window: int, at: float, scale: float = 1.0) -> dict:
        """{version: {(lower, upper): count}} of a histogram's buckets over the window."""
        cumulative: dict = defaultdict(lambda: defaultdict(int))
        for labels, count in self._increase(buckets, window, at, (VERSION, "le")):
            version, le = labels.get(VERSION, ""), float(labels["le"])
            cumulative[version][le] += as_count(round(count), f"{version} le={le}")
        return {version: _non_cumulative(les, scale) for version, les in cumulative.items()}

    @staticmethod
    def _counts(version: str, status: dict, latency: dict, classes: dict, values: dict) -> dict:
        requests = sum(latency.values())
        difference = requests - sum(status.values())
        if difference:
            if abs(difference) > max(RECONCILE[0], RECONCILE[1] * requests) or \
                    status.get("200", 0) + difference < 0:
                raise AggregateError(f"{version}: {sum(status.values())} requests by status but {requests} in the "
                                     "latency histogram: more than a scrape's skew")
            status["200"] = status.get("200", 0) + difference
        return {"requests": requests, "latency_bins": _trimmed(latency),
                "status": {code: n for code, n in sorted(status.items()) if n},
                "classes": dict(sorted(classes.items(), key=lambda item: (-item[1], item[0]))),
                "values": {field: _trimmed(bins, floor=None) for field, bins in values.items()}}

    # -- HTTP -----------------------------------------------------------------------------
    def _instant(self, query: str, at: float) -> list:
        return self._result(self._get("/api/v1/query", query, {"time": _time(at)}), "vector", query)

    def _result(self, data: dict, kind: str, query: str) -> list:
        if data.get("resultType") != kind or not isinstance(data.get("result"), list):
            raise PrometheusError(f"Prometheus at {self.url} answered {data.get('resultType')!r}, not a {kind}, "
                                  f"to {query!r}", "bad_answer")
        return data["result"]

    def _get(self, path: str, query: str, params: dict) -> dict:
        url = f"{self.url}{path}?" + urllib.parse.urlencode({"query": query, **params})
        self.queries += 1
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=self.headers),
                                        timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            body = err.read()
            self.bytes += len(body)
            detail = _error_text(body)
            kind = "server_error" if err.code >= 500 else "refused"
            raise PrometheusError(f"Prometheus at {self.url} answered HTTP {err.code} to {query!r}: {detail}", kind,
                                  detail) from None
        except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            kind = "timeout" if isinstance(reason, TimeoutError) else "unreachable"
            raise PrometheusError(f"Prometheus at {self.url} is {kind} ({reason}); check the URL and the network "
                                  f"(timeout {self.timeout_s:g}s)", kind) from None
        self.bytes += len(body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url} did not answer JSON to {query!r}: {body[:200]!r}",
                                  "bad_answer") from None
        if not isinstance(answer, dict) or answer.get("status") != "success" or "data" not in answer:
            raise PrometheusError(f"Prometheus at {self.url} answered an error to {query!r}: {str(answer)[:300]}",
                                  "bad_answer")
        return answer["data"]


def _time(unix_s: float) -> str:
    return str(int(unix_s)) if float(unix_s).is_integer() else repr(float(unix_s))


def _error_text(body: bytes) -> str:
    """Prometheus' `error` of a JSON error answer, else the body's text."""
    try:
        answer = json.loads(body)
        return f"{answer.get('errorType', '')}: {answer['error']}".strip(": ")
    except (ValueError, KeyError, TypeError, AttributeError):
        return " ".join(body.decode("utf-8", "replace").split())[:500]


def _non_cumulative(les: dict, scale: float) -> dict:
    """{le: cumulative count} -> {(lower, upper): count}, edges times `scale` (s -> ms)."""
    out = {}
    lower, below = -math.inf, 0
    for le in sorted(les):
        upper = round(le * scale, 9) if math.isfinite(le) else math.inf
        count = les[le] - below
        if count < 0:
            raise AggregateError(f"a histogram's bucket le={le} holds fewer than the one below it")
        out[(lower, upper)] = count
        lower, below = upper, les[le]
    return out


def _trimmed(bins: dict, floor: float | None = 0.0) -> list:
    """[[upper, count], ...] from the first bucket holding a count to the last (a
    histogram's empty tails left out), led by an empty bin at the first one's lower edge
    unless that is the histogram's lowest bucket ((-inf, le]: for latency (0, le])."""
    keys = sorted(bins)
    filled = [key for key in keys if bins[key]]
    if not filled:
        return []
    kept = [key for key in keys if filled[0] <= key <= filled[-1]]
    lower = kept[0][0]
    lead = [[lower, 0]] if math.isfinite(lower) and lower != floor else []
    return lead + [[upper, bins[(low, upper)]] for low, upper in kept]
