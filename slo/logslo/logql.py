"""The LogQL queries the SLO contracts run, as small objects that render to text.

Both backends take the same query object: the Loki backend sends `render()` over HTTP,
the file backend evaluates the object over a JSONL log with Loki's semantics. One object
for both is what makes "same semantics, same numbers" checkable: the tests assert the
rendered text is byte-for-byte the LogQL a real Loki answered in the fixtures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

STRING_OPS = ("=", "!=")
NUMERIC_OPS = ("==", "=", "!=", ">", ">=", "<", "<=")


def format_number(value: float) -> str:
    """500 -> '500', 0.99 -> '0.99' (how a person writes it in LogQL)."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def format_duration(seconds: int) -> str:
    """3600 -> '1h', 86400 -> '24h', 300 -> '5m' (Prometheus duration syntax)."""
    seconds = int(seconds)
    if seconds <= 0:
        raise ValueError(f"a LogQL range must be positive, got {seconds}s")
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class LabelFilter:
    """`event="inference"` (string) or `status >= 500` (numeric), applied after `| json`."""

    name: str
    op: str
    value: str | float

    def __post_init__(self):
        allowed = STRING_OPS if self.is_string else NUMERIC_OPS
        if self.op not in allowed:
            raise ValueError(f"operator {self.op!r} not supported for {self.name}")

    @property
    def is_string(self) -> bool:
        return isinstance(self.value, str)

    def render(self) -> str:
        if self.is_string:
            return f"{self.name}{self.op}{_quote(self.value)}"
        return f"{self.name} {self.op} {format_number(self.value)}"


@dataclass(frozen=True)
class BinLabel:
    """`label_format bin=`{{ floor (divf .latency_ms 0.5) }}``: a numeric field's bin as a
    label, so `sum by (bin) (count_over_time(...))` is a histogram counted server-side.

    Bin k holds the values in [k * width, (k + 1) * width) (floor, lower-closed). The
    template is what a real Loki 3.7 answered (tests/slo/fixtures/loki/metric-answers.json):
    `floor .f` for width 1, `floor (mulf N .f)` for width 1/N, `floor (divf .f W)` else.
    There is no `log` template function: log-scale bins are bands of fixed widths
    (aggregates.LATENCY_BANDS_MS). sprig's `divf`/`mulf` compute in decimal, not binary
    floating point (25.5 / 0.5 is 51, never 50.999...), and a missing or non-numeric field
    counts as 0; `bin_of` does the same.
    """

    field: str
    width: float
    name: str = "bin"

    def __post_init__(self):
        if not (self.width > 0 and math.isfinite(self.width)):
            raise ValueError(f"a bin width is a positive number, got {self.width!r}")

    @property
    def per_unit(self) -> int | None:
        """N when the width is 1/N for a whole N > 1 (written `mulf N`), else None."""
        if self.width >= 1:
            return None
        n = round(1 / self.width)
        return n if n > 1 and abs(1 / self.width - n) < 1e-9 else None

    def template(self) -> str:
        if self.width == 1:
            inner = f".{self.field}"
        elif self.per_unit:
            inner = f"(mulf {self.per_unit} .{self.field})"
        else:
            inner = f"(divf .{self.field} {format_number(self.width)})"
        return "{{ floor " + inner + " }}"

    def render(self) -> str:
        return f"label_format {self.name}=`{self.template()}`"

    def bin_of(self, text: str) -> int:
        """The bin label Loki gives a field's text (as an int)."""
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = 0.0  # cast.ToFloat64 of a non-number
        if not math.isfinite(value):
            value = 0.0
        exact = Decimal(repr(value))
        if self.width == 1:
            return math.floor(exact)
        if self.per_unit:
            return math.floor(exact * self.per_unit)
        return math.floor(exact / Decimal(repr(float(self.width))))

    def label_of(self, text: str) -> str:
        """The bin label as Loki writes it: a float64 printed by Go's %v (shortest digits,
        an exponent from 1e+06 on)."""
        k = self.bin_of(text)
        if abs(k) < 1_000_000:
            return str(k)
        digits = str(abs(k))
        mantissa = digits.rstrip("0")
        mantissa = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if k < 0 else ''}{mantissa}e+{len(digits) - 1:02d}"

    def edges(self, k: int) -> tuple[float, float]:
        """[lower, upper) of bin k."""
        if self.per_unit:
            return k / self.per_unit, (k + 1) / self.per_unit
        return k * self.width, (k + 1) * self.width


@dataclass(frozen=True)
class LogQuery:
    """Stream selector + pipeline: `{app="x"} | json [f, ...] | __error__="" | filters
    [| label_format bin=... | unwrap f | __error__=""]`.

    `fields` names the only JSON fields extracted (`| json event, status`: Loki parses just
    those, not every field of every line); None extracts them all (a bare `| json`).
    `__error__=""` right after `| json` drops lines that are not JSON (watchdog lines in a
    pod's stdout); the one after `unwrap` drops lines whose field is not a number.
    """

    stream: tuple  # ((label, value), ...) in the order they are written
    filters: tuple = ()
    unwrap: str | None = None
    fields: tuple | None = None
    label_format: BinLabel | None = None  # a numeric field's bin as a label, after the filters

    def __post_init__(self):
        if self.label_format is not None and self.unwrap:
            raise ValueError("a bin label counts lines; it does not go with unwrap")
        if self.fields is not None:
            needed = [f.name for f in self.filters] + ([self.unwrap] if self.unwrap else []) + \
                ([self.label_format.field] if self.label_format else [])
            missing = [name for name in needed if name not in self.fields]
            if missing:
                raise ValueError(f"| json {', '.join(self.fields)} does not extract {', '.join(missing)}")

    def parser(self) -> str:
        return "json" if self.fields is None else "json " + ", ".join(self.fields)

    def bare(self) -> LogQuery:
        """The same query with a bare `| json` (every field extracted)."""
        return replace(self, fields=None)

    def render(self) -> str:
        selector = "{" + ", ".join(f"{k}={_quote(v)}" for k, v in self.stream) + "}"
        parts = [selector, self.parser(), '__error__=""', *(f.render() for f in self.filters)]
        if self.label_format:
            parts.append(self.label_format.render())
        if self.unwrap:
            parts += [f"unwrap {self.unwrap}", '__error__=""']
        return " | ".join(parts)


@dataclass(frozen=True)
class RangeAggregation:
    """count_over_time / rate / quantile_over_time / avg_over_time over `[range] offset`."""

    function: str
    logs: LogQuery
    range_s: int
    phi: float | None = None
    by: tuple | None = None  # None: no clause (every label set is its own series)
    offset_s: int = 0

    UNWRAPPED = ("quantile_over_time", "avg_over_time", "sum_over_time", "max_over_time", "min_over_time")
    LOG_RANGE = ("count_over_time", "rate")

    def __post_init__(self):
        if self.function not in self.UNWRAPPED + self.LOG_RANGE:
            raise ValueError(f"unsupported range aggregation {self.function}")
        if (self.function in self.UNWRAPPED) != bool(self.logs.unwrap):
            raise ValueError(f"{self.function} needs unwrap exactly when it works on values")
        if (self.function == "quantile_over_time") != (self.phi is not None):
            raise ValueError("phi goes with quantile_over_time only")
        if self.logs.fields is not None and self.by:
            known = set(self.logs.fields) | {name for name, _ in self.logs.stream}
            known |= {self.logs.label_format.name} if self.logs.label_format else set()
            if not set(self.by) <= known:
                raise ValueError(f"by ({', '.join(self.by)}) needs {self.logs.parser()} to extract them")

    def bare(self) -> RangeAggregation:
        return replace(self, logs=self.logs.bare())

    def render(self) -> str:
        args = f"{format_number(self.phi)}, " if self.phi is not None else ""
        offset = f" offset {format_duration(self.offset_s)}" if self.offset_s else ""
        text = f"{self.function}({args}{self.logs.render()} [{format_duration(self.range_s)}]{offset})"
        if self.by is not None:
            text += f" by ({', '.join(self.by)})"
        return text


@dataclass(frozen=True)
class Sum:
    """`sum(x)` or `sum by (a, b) (x)`."""

    inner: Query
    by: tuple | None = None

    def bare(self) -> Sum:
        return replace(self, inner=self.inner.bare())

    def render(self) -> str:
        if self.by is None:
            return f"sum({self.inner.render()})"
        return f"sum by ({', '.join(self.by)}) ({self.inner.render()})"


@dataclass(frozen=True)
class Divide:
    """`a / b` (one-to-one on identical label sets) or `a / on() group_left b` (b is one series)."""

    left: Query
    right: Query
    on_nothing_group_left: bool = False

    def bare(self) -> Divide:
        return replace(self, left=self.left.bare(), right=self.right.bare())

    def render(self) -> str:
        op = " / on() group_left " if self.on_nothing_group_left else " / "
        return self.left.render() + op + self.right.render()


Query = RangeAggregation | Sum | Divide
