"""Evaluate the contracts' LogQL over a JSONL log file, with Loki's semantics.

Semantics reproduced (each checked against a real Loki 3.7 in the fixtures):
- a range `[r] offset o` at time T covers (T-o-r, T-o]: left-open, right-closed;
- `| json | __error__=""` drops non-JSON lines; `unwrap f | __error__=""` drops lines
  whose field is missing or not a number;
- every distinct label set after `| json` is its own series, so `by ()` / `sum` decide
  what is aggregated together, exactly as in Loki;
- `| json a, b` (Loki's JSONExpressionParser) extracts only a and b, a missing one as an
  empty label (the same as absent); the series are then told apart by those fields and
  the stream labels only. It flags as an error only a line that does not start with
  `{`, `[` or `"`: a JSON array or string line passes `__error__=""` with empty fields,
  where a bare `| json` drops it. The contracts always filter on `event="inference"`,
  which such a line cannot meet, so both parsers keep the same lines and give the same
  numbers (tests/slo checks it on the fixtures). Not reproduced: a string field with
  JSON escapes (`\"`, `\u00e9`) comes out of `| json a` still escaped, as Loki
  leaves it; the file backend unescapes it (no label of this classifier has one);
- quantiles interpolate with rank = phi*(n-1);
- `label_format bin=`{{ floor (divf .f W) }}`` bins a field as sprig does (logql.BinLabel);
- range queries are evaluated at steps aligned to the step (start rounded down, end
  rounded up), which is what Loki's query frontend does.
"""

from __future__ import annotations

import math
import re

from . import promql_math
from .logfile import LogFile
from .logql import Divide, LabelFilter, LogQuery, Query, RangeAggregation, Sum
from .vectors import Matrix, Vector, label_set

NS = 1_000_000_000
_GO_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|[Ii]nf(?:inity)?|NaN)$")


def parse_go_float(text: str) -> float | None:
    """strconv.ParseFloat's accepted spellings only (Python's float() also takes '1_0', ' 1')."""
    if not _GO_FLOAT.match(text or ""):
        return None
    return float(text)


def _passes(flt: LabelFilter, fields: dict) -> bool:
    actual = fields.get(flt.name, "")
    if flt.is_string:
        return (actual == flt.value) if flt.op == "=" else (actual != flt.value)
    number = parse_go_float(actual)
    if number is None:
        # Loki marks the line with a LabelFilterErr; every contract query drops those.
        return False
    wanted = float(flt.value)
    return {
        "==": number == wanted, "=": number == wanted, "!=": number != wanted,
        ">": number > wanted, ">=": number >= wanted, "<": number < wanted, "<=": number <= wanted,
    }[flt.op]


class FileBackend:
    """Same interface as LokiBackend: instant(query, at) -> Vector, range(...) -> Matrix."""

    name = "file"

    def __init__(self, path: str, log: LogFile | None = None):
        """`log`: the file already read (e.g. line by line as it grows); else `path` is read."""
        self.path = path
        self.log = LogFile.read(path) if log is None else log

    def describe(self) -> str:
        return (f"JSONL file {self.path} ({len(self.log.entries)} JSON lines, "
                f"{self.log.not_json} non-JSON lines skipped)")

    # -- public interface -------------------------------------------------------------
    def instant(self, query: Query, at: float) -> Vector:
        return self._eval(query, int(round(at * NS)))

    def range(self, query: Query, start: float, end: float, step: int) -> Matrix:
        step_ns = int(step) * NS
        first = int(round(start * NS))
        first -= first % step_ns
        last = int(round(end * NS))
        if last % step_ns:
            last += step_ns - last % step_ns
        matrix: Matrix = {}
        for t in range(first, last + 1, step_ns):
            for key, value in self._eval(query, t).items():
                matrix.setdefault(key, []).append((t / NS, value))
        return matrix

    def lines(self, logs: LogQuery, start: float, end: float):
        """The fields of each line the log query keeps in (start, end], in time order:
        what a log query to Loki returns (the comparison's per-request samples)."""
        for entry in self.entries(logs, int(round(start * NS)), int(round(end * NS))):
            yield entry.fields

    def entries(self, logs: LogQuery, start_ns: int, end_ns: int):
        """The entries the log query keeps in (start_ns, end_ns], in time order (file order
        within one nanosecond); exact to the nanosecond, which float seconds are not."""
        for entry in sorted(self.log.entries, key=lambda e: e.time_ns):
            if start_ns < entry.time_ns <= end_ns and all(entry.stream.get(k, "") == v for k, v in logs.stream) \
                    and all(_passes(f, entry.fields) for f in logs.filters):
                yield entry

    # -- evaluation -------------------------------------------------------------------
    def _eval(self, query: Query, at_ns: int) -> Vector:
        if isinstance(query, RangeAggregation):
            return self._range_aggregation(query, at_ns)
        if isinstance(query, Sum):
            return self._sum(query, at_ns)
        if isinstance(query, Divide):
            return self._divide(query, at_ns)
        raise TypeError(f"cannot evaluate {type(query).__name__}")

    def _selected(self, logs: LogQuery, start_ns: int, end_ns: int):
        """(series labels, unwrapped value or None) for each line the pipeline keeps."""
        for entry in self.log.entries:
            if not (start_ns < entry.time_ns <= end_ns):
                continue
            if any(entry.stream.get(k, "") != v for k, v in logs.stream):
                continue
            if not all(_passes(f, entry.fields) for f in logs.filters):
                continue
            if logs.fields is None:
                labels = {**entry.fields, **entry.stream}
            else:
                labels = {**{k: entry.fields.get(k, "") for k in logs.fields}, **entry.stream}
            if logs.label_format is not None:
                binned = logs.label_format
                labels[binned.name] = binned.label_of(entry.fields.get(binned.field))
            value = None
            if logs.unwrap:
                value = parse_go_float(entry.fields.get(logs.unwrap, ""))
                if value is None:
                    continue  # SampleExtractionErr, dropped by the trailing __error__=""
                labels.pop(logs.unwrap, None)  # unwrap removes the label it reads
            yield labels, value

    def _range_aggregation(self, agg: RangeAggregation, at_ns: int) -> Vector:
        end_ns = at_ns - agg.offset_s * NS
        start_ns = end_ns - agg.range_s * NS
        groups: dict = {}
        for labels, value in self._selected(agg.logs, start_ns, end_ns):
            groups.setdefault(label_set(labels, agg.by), []).append(value)
        out: Vector = {}
        for key, values in groups.items():
            if agg.function == "count_over_time":
                out[key] = float(len(values))
            elif agg.function == "rate":
                out[key] = len(values) / agg.range_s
            elif agg.function == "quantile_over_time":
                out[key] = promql_math.quantile(agg.phi, values)
            elif agg.function == "avg_over_time":
                out[key] = promql_math.average(values)
            elif agg.function == "sum_over_time":
                out[key] = math.fsum(values)
            elif agg.function == "max_over_time":
                out[key] = max(values)
            elif agg.function == "min_over_time":
                out[key] = min(values)
        return out

    def _sum(self, agg: Sum, at_ns: int) -> Vector:
        # Exact (fsum) summation: adding thousands of per-request rates 1/300 one by one
        # drifts in the last digits, and Loki's answer (1.03 req/s) does not.
        groups: dict = {}
        for key, value in self._eval(agg.inner, at_ns).items():
            groups.setdefault(label_set(dict(key), agg.by or ()), []).append(value)
        return {group: math.fsum(values) for group, values in groups.items()}

    def _divide(self, div: Divide, at_ns: int) -> Vector:
        left = self._eval(div.left, at_ns)
        right = self._eval(div.right, at_ns)
        if div.on_nothing_group_left:
            if len(right) != 1:
                return {}  # no (or ambiguous) denominator: Loki returns nothing to match
            denominator = next(iter(right.values()))
            return {k: promql_math.safe_divide(v, denominator) for k, v in left.items()}
        # One-to-one matching: only label sets present on both sides survive.
        return {k: promql_math.safe_divide(v, right[k]) for k, v in left.items() if k in right}
