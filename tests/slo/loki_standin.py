"""A Loki stand-in: a real HTTP server on 127.0.0.1 answering Loki's query API from a
JSONL log file, with the package's own FileBackend computing every answer (the semantics
the fixtures check against a real Loki), and faults a test switches on and off while it
runs, each a real network behaviour the client cannot tell from the real thing.

    with LokiStandIn("requests.jsonl") as loki:          # or .start() / .stop()
        LokiBackend(loki.url, timeout_s=0.5).instant(query, at)
        loki.fault = "429"                                 # every request now answers 429
        with loki.faulty("fail_after_pages", pages=2):     # restored on exit
            ...
        loki.counts["/loki/api/v1/query_range"]            # requests that reached it, by path

What it answers (the shapes a real Loki 3.7 answered in tests/slo/fixtures/loki):
- `/loki/api/v1/query`: an instant metric query -> vector (numbers as strings, as Go
  prints them; times as numbers);
- `/loki/api/v1/query_range`: a metric query -> matrix over `start`/`end`/`step`; a log
  query -> streams, `[start, end)` in nanoseconds, `limit` (default 100), `direction`
  (default backward); `limit` above 5000 is HTTP 400 with Loki's plain-text reason;
- `/ready` -> `ready`; any other path -> 404.
The log file may grow while the server runs: it is tailed at every request (complete
lines only; a file that shrank or was replaced is read again from the start).

Faults (`loki.fault = SPEC` or `with loki.faulty(SPEC, **options)`; None clears):
- `down`: the listening socket is closed (connection refused) until the fault is cleared,
  then the same port listens again;
- `reset`: the connection is accepted, the request read, then reset (TCP RST);
- `slow` (delay_s, default 60): no answer for delay_s, longer than any client timeout;
- `slow_body` (delay_s): the headers and half the body come, then nothing for delay_s;
- `429` (retry_after, default "7"; None sends none): `too many outstanding requests`;
- `500`: Loki's `empty ring`; `502`, `503`: the gateway's (nginx) HTML pages;
- `limit` (max_entries, default 100): Loki configured with a lower
  `max_entries_limit_per_query`: a log query asking more is HTTP 400 with Loki's text;
- `html`: HTTP 200 with an HTML page (a login proxy in front of Loki);
- `fail_after_pages` (pages=N, then="500"): the first N `query_range` calls after the
  fault is set answer, every later one fails as the fault `then` (partial data);
  instant queries are not affected;
- `stale` (at, unix seconds; default the newest line's time when set): ingestion stopped:
  every answer is computed over the lines up to that time only, with no error.
A string spec may carry the main option: `fail_after_pages=3`, `slow=2.5`, `429=30`,
`limit=1000`, `stale=1796635500`.

Not reproduced: LogQL beyond what logslo's query objects render (plus a bare stream
selector); Loki's `stats` and its extra stream labels (detected_level, service_name); its
exact texts for errors other than the two recorded ones (parse error, limit). A line
counts once its newline is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import struct
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from logslo.file_backend import FileBackend
from logslo.logfile import Entry, LogFile, parse_rfc3339_ns
from logslo.logql import BinLabel, Divide, LabelFilter, LogQuery, RangeAggregation, Sum

NS = 1_000_000_000
MAX_ENTRIES = 5000  # Loki's default max_entries_limit_per_query
MAX_POINTS = 11000  # Loki's (Prometheus') limit of steps per series
JSON_TYPE = "application/json; charset=UTF-8"
TEXT_TYPE = "text/plain; charset=utf-8"
HTML_TYPE = "text/html"

FAULTS = ("down", "reset", "slow", "slow_body", "429", "500", "502", "503", "limit", "html", "stale",
          "fail_after_pages")
FAILURES = ("reset", "slow", "slow_body", "429", "500", "502", "503", "limit", "html")  # fail_after_pages' `then`


def _nginx_page(status: str) -> str:
    return (f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n"
            "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


# What answers each HTTP fault: (status, content type, body).
FAULT_ANSWERS = {
    "429": (429, TEXT_TYPE, "too many outstanding requests\n"),  # Loki's query frontend queue
    "500": (500, TEXT_TYPE, "empty ring\n"),  # Loki with no healthy ingester/querier in its ring
    "502": (502, HTML_TYPE, _nginx_page("502 Bad Gateway")),  # the gateway, Loki behind it down
    "503": (503, HTML_TYPE, _nginx_page("503 Service Temporarily Unavailable")),
    "html": (200, HTML_TYPE, "<html><head><title>Sign in</title></head><body><form action=\"/oauth2/start\">"
                             "<button>Sign in</button></form></body></html>\n"),
}


MAX_SERIES = 500  # Loki's default max_query_series


def series_text(max_series: int) -> str:
    """Loki's 400 body for a metric answer of more series than max_query_series (not
    recorded: the wording is approximate, the status and the number are Loki's)."""
    return (f"maximum number of series ({max_series}) reached for a single query; consider reducing query "
            "cardinality by adding more filters to the current query or splitting it into multiple queries")


def limit_text(limit: int, max_entries: int) -> str:
    """Loki's 400 body for a log query's `limit` above max_entries_limit_per_query (recorded)."""
    return (f"max entries limit per query exceeded, limit > max_entries_limit_per_query "
            f"({limit} > {max_entries})")


@dataclass(frozen=True)
class Fault:
    name: str
    pages: int = 0  # fail_after_pages: the query_range calls answered before the failure
    then: str = "500"  # fail_after_pages: how the calls after them fail
    delay_s: float = 60.0  # slow, slow_body
    retry_after: str | None = "7"  # 429: the Retry-After header, None: not sent
    max_entries: int = 100  # limit: the lowered max_entries_limit_per_query
    at: float | None = None  # stale: the frozen time, None: the newest line when set

    def __post_init__(self):
        if self.name not in FAULTS:
            raise ValueError(f"unknown fault {self.name!r}; one of {', '.join(FAULTS)}")
        if self.name == "fail_after_pages" and self.then not in FAILURES:
            raise ValueError(f"fail_after_pages then={self.then!r}: one of {', '.join(FAILURES)}")

    @classmethod
    def of(cls, spec, **options) -> Fault | None:
        """None, a Fault, or a string `name` / `name=value` (the fault's main option)."""
        if spec is None or isinstance(spec, Fault):
            return replace(spec, **options) if spec is not None and options else spec
        name, has_value, value = str(spec).partition("=")
        if has_value:
            main = {"fail_after_pages": ("pages", int), "slow": ("delay_s", float), "slow_body": ("delay_s", float),
                    "429": ("retry_after", str), "limit": ("max_entries", int), "stale": ("at", float)}
            if name not in main:
                raise ValueError(f"fault {name!r} takes no value ({spec!r})")
            field, convert = main[name]
            options = {field: convert(value), **options}
        return cls(name, **options)


# -- LogQL: what logslo's query objects render, parsed back into those objects -------------


@dataclass(frozen=True)
class Selector:
    """A bare stream selector `{app="classifier"}`: every line of the stream."""

    stream: tuple


class LogQLError(ValueError):
    """A query the stand-in answers with HTTP 400 (the text is the body)."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<dur>(?:\d+(?:\.\d+)?(?:ms|[smhdwy]))+)(?![A-Za-z0-9_])
  | (?P<num>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|=|\|~|!=|=~|!~|==|>=|<=|[{}()\[\],|=<>/+*-])
""", re.X)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|[smhdwy])")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_FILTER_OPS = ("=", "!=", "==", ">", ">=", "<", "<=")
_YACC_NAMES = {"ident": "IDENTIFIER", "str": "STRING", "num": "NUMBER", "dur": "DURATION"}


def parse_duration_s(text: str) -> float:
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise LogQLError(f"not a valid duration string: {text!r}")
    return sum(float(n) * _UNIT_S[unit] for n, unit in parts)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = []
        at = 0
        while at < len(text):
            match = _TOKEN.match(text, at)
            if not match:
                raise self._error_at(at, f"unexpected character {text[at]!r}")
            if match.lastgroup != "ws":
                self.tokens.append((match.lastgroup, match.group(), at))
            at = match.end()
        self.tokens.append(("end", "", len(text)))
        self.i = 0

    def _error_at(self, at: int, what: str) -> LogQLError:
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return LogQLError(f"parse error at line {line}, col {col}: syntax error: {what}")

    def unexpected(self) -> LogQLError:
        kind, text, at = self.tokens[self.i]
        name = "end of input" if kind == "end" else _YACC_NAMES.get(kind, text)
        return self._error_at(at, f"unexpected {name}")

    def peek(self, kind: str, text: str | None = None, ahead: int = 0) -> bool:
        k, t, _ = self.tokens[min(self.i + ahead, len(self.tokens) - 1)]
        return k == kind and (text is None or t == text)

    def take(self, kind: str, text: str | None = None) -> str:
        if not self.peek(kind, text):
            raise self.unexpected()
        self.i += 1
        return self.tokens[self.i - 1][1]

    # query := log query | metric expression
    def query(self):
        out = self.log_query() if self.peek("op", "{") else self.expr()
        if not self.peek("end"):
            raise self.unexpected()
        return out

    def expr(self):
        left = self.unary()
        while self.peek("op", "/"):
            self.take("op", "/")
            group_left = False
            if self.peek("ident", "on"):
                self.take("ident")
                self.take("op", "(")
                self.take("op", ")")
                self.take("ident", "group_left")
                group_left = True
            left = Divide(left, self.unary(), on_nothing_group_left=group_left)
        return left

    def by_clause(self) -> tuple:
        self.take("ident", "by")
        self.take("op", "(")
        names = []
        while not self.peek("op", ")"):
            if names:
                self.take("op", ",")
            names.append(self.take("ident"))
        self.take("op", ")")
        return tuple(names)

    def unary(self):
        if self.peek("op", "("):
            self.take("op", "(")
            inner = self.expr()
            self.take("op", ")")
            return inner
        if self.peek("ident", "sum"):
            self.take("ident")
            by = self.by_clause() if self.peek("ident", "by") else None
            self.take("op", "(")
            inner = self.expr()
            self.take("op", ")")
            if by is None and self.peek("ident", "by"):
                by = self.by_clause()
            return Sum(inner, by)
        if self.peek("ident") and self.tokens[self.i][1] in RangeAggregation.UNWRAPPED + RangeAggregation.LOG_RANGE:
            function = self.take("ident")
            self.take("op", "(")
            phi = None
            if function == "quantile_over_time":
                phi = float(self.take("num"))
                self.take("op", ",")
            logs = self.log_query()
            if not isinstance(logs, LogQuery):
                raise LogQLError("the stand-in evaluates metric queries over `| json ... | __error__=\"\"` only")
            self.take("op", "[")
            range_s = parse_duration_s(self.take("dur"))
            self.take("op", "]")
            offset_s = 0
            if self.peek("ident", "offset"):
                self.take("ident")
                offset_s = parse_duration_s(self.take("dur"))
            self.take("op", ")")
            by = self.by_clause() if self.peek("ident", "by") else None
            if not float(range_s).is_integer() or not float(offset_s).is_integer():
                raise LogQLError("the stand-in evaluates whole-second ranges only")
            try:
                return RangeAggregation(function, logs, int(range_s), phi=phi, by=by, offset_s=int(offset_s))
            except ValueError as err:
                raise LogQLError(str(err)) from None
        raise self.unexpected()  # e.g. an unknown function: "unexpected IDENTIFIER", as Loki says

    def string(self) -> str:
        text = self.take("str")
        return text[1:-1] if text.startswith("`") else json.loads(text)

    def stream_selector(self) -> list:
        """`{name="value", ...}` -> [(name, value), ...]."""
        self.take("op", "{")
        stream = []
        while not self.peek("op", "}"):
            if stream:
                self.take("op", ",")
            name = self.take("ident")
            if not self.peek("op", "="):
                raise LogQLError("the stand-in supports `=` stream matchers only")
            self.take("op", "=")
            stream.append((name, self.string()))
        self.take("op", "}")
        return stream

    def no_error_stage(self):
        """`__error__=""` (the only __error__ filter logslo writes)."""
        self.take("ident")
        self.take("op", "=")
        if self.string() != "":
            raise LogQLError("the stand-in supports __error__=\"\" only")
        return ("no_error", None)

    def filter_stage(self):
        """`name op value`, a label filter."""
        name = self.take("ident")
        op = self.take("op")
        value = self.string() if self.peek("str") else float(self.take("num"))
        try:
            return ("filter", LabelFilter(name, op, value))
        except ValueError as err:
            raise LogQLError(str(err)) from None

    def pipeline(self) -> list:
        """The `| stage` list after a stream selector -> [(kind, value), ...]."""
        stages = []
        while self.peek("op", "|"):
            self.take("op", "|")
            if self.peek("ident", "json"):
                self.take("ident")
                fields = [self.take("ident")] if self.peek("ident") else []
                while fields and self.peek("op", ","):
                    self.take("op", ",")
                    fields.append(self.take("ident"))
                stages.append(("json", tuple(fields) or None))
            elif self.peek("ident", "label_format"):
                self.take("ident")
                name = self.take("ident")
                self.take("op", "=")
                stages.append(("label_format", bin_label(name, self.string())))
            elif self.peek("ident", "unwrap"):
                self.take("ident")
                stages.append(("unwrap", self.take("ident")))
            elif self.peek("ident", "__error__"):
                stages.append(self.no_error_stage())
            elif self.peek("ident") and any(self.peek("op", op, ahead=1) for op in _FILTER_OPS):
                stages.append(self.filter_stage())
            else:
                what = self.tokens[self.i][1] or "end of input"
                raise LogQLError(f"the stand-in does not evaluate `| {what} ...`: it answers the pipelines logslo "
                                 "writes (| json [fields] | __error__=\"\" | filters [| unwrap f | __error__=\"\"])")
        if self.peek("op", "|=") or self.peek("op", "|~"):
            raise LogQLError("the stand-in does not evaluate line filters")
        return stages

    def log_query(self):
        stream = self.stream_selector()
        stages = self.pipeline()
        if not stages:
            return Selector(tuple(stream))
        kinds = [kind for kind, _ in stages]
        unwrap = None
        if kinds[-2:] == ["unwrap", "no_error"]:
            unwrap = stages[-2][1]
            stages, kinds = stages[:-2], kinds[:-2]
        label_format = None
        if kinds[-1:] == ["label_format"]:
            label_format = stages[-1][1]
            stages, kinds = stages[:-1], kinds[:-1]
        if kinds[:2] != ["json", "no_error"] or any(kind != "filter" for kind in kinds[2:]):
            raise LogQLError("the stand-in answers the pipelines logslo writes: | json [fields] | "
                             "__error__=\"\" | filters [| label_format bin=... | unwrap f | __error__=\"\"]")
        try:
            return LogQuery(stream=tuple(stream), filters=tuple(v for _, v in stages[2:]), unwrap=unwrap,
                            fields=stages[0][1], label_format=label_format)
        except ValueError as err:
            raise LogQLError(str(err)) from None


_BIN_TEMPLATES = (
    (re.compile(r"\{\{ floor \.(\w+) \}\}"), lambda m: (m.group(1), 1.0)),
    (re.compile(r"\{\{ floor \(divf \.(\w+) ([0-9.]+)\) \}\}"), lambda m: (m.group(1), float(m.group(2)))),
    (re.compile(r"\{\{ floor \(mulf (\d+) \.(\w+)\) \}\}"), lambda m: (m.group(2), 1 / int(m.group(1)))),
)


def bin_label(name: str, template: str) -> BinLabel:
    """The BinLabel a `label_format NAME=`TEMPLATE`` renders from; the stand-in evaluates
    those templates only (a real Loki evaluates any Go template)."""
    for pattern, read in _BIN_TEMPLATES:
        match = pattern.fullmatch(template)
        if match:
            field, width = read(match)
            return BinLabel(field, int(width) if width == 1 else width, name)
    raise LogQLError(f"the stand-in does not evaluate label_format {name}=`{template}`: it evaluates the "
                     "bin labels logslo writes ({{ floor .f }}, {{ floor (divf .f W) }}, {{ floor (mulf N .f) }})")


def parse_logql(text: str):
    """LogQL text -> the logslo query object that renders it (LogQuery, RangeAggregation,
    Sum, Divide) or a Selector; LogQLError (an HTTP 400 body) otherwise."""
    return _Parser(text).query()


# -- Loki's number and time formats --------------------------------------------------------


def go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def loki_time(ns: int):
    """A sample time as Loki prints it: unix seconds with millisecond resolution, a number."""
    ms = (ns + 500_000) // 1_000_000
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def parse_loki_time(value: str | None, default_ns: int) -> int:
    """Loki's parseTimestamp: float seconds (ms-rounded), integers of <= 10 digits as
    seconds and longer as nanoseconds, or RFC 3339."""
    if value is None or value == "":
        return default_ns
    if "." in value:
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            fraction, whole = math.modf(number)
            return int(whole) * NS + int(math.floor(fraction * 1000 + 0.5)) * 1_000_000
    try:
        integer = int(value)
    except ValueError:
        try:
            return parse_rfc3339_ns(value)
        except ValueError:
            raise LogQLError(f'cannot parse "{value}" to a valid timestamp') from None
    return integer * NS if len(value.lstrip("+-")) <= 10 else integer


def parse_step_s(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return parse_duration_s(value)


# -- the log, tailed -----------------------------------------------------------------------


class _TailedLog:
    """The JSONL file as LogFile entries, read on from where it was at every refresh, and
    each entry's raw line (what Loki stores and answers). A line that is not JSON (the
    watchdog's) has no time of its own: it is kept, for bare stream selectors only, at the
    time of the JSON line before it plus 1 ns in that line's stream, which is how the
    fixtures' recording pushed them (a shipper would stamp the time it read the line)."""

    def __init__(self, path: str):
        self.path = str(path)
        self.lock = threading.Lock()
        self._reset()

    def _reset(self, identity=None):
        self.log = LogFile()
        self.raw: dict = {}  # id(entry) -> its line
        self.not_json: list = []  # Entry(time of the JSON line before + 1 ns, its stream, {})
        self.offset = 0
        self.pending = b""
        self.identity = identity
        self.newest_ns: int | None = None

    def refresh(self) -> None:
        with self.lock:
            try:
                handle = open(self.path, "rb")
            except FileNotFoundError:
                self._reset()
                return
            with handle:
                stat = os.fstat(handle.fileno())
                identity = (stat.st_dev, stat.st_ino)
                if identity != self.identity or stat.st_size < self.offset:
                    self._reset(identity)  # replaced or truncated: read it again from the start
                handle.seek(self.offset)
                data = handle.read()
            self.offset += len(data)
            *complete, self.pending = (self.pending + data).split(b"\n")
            for raw in complete:
                text = raw.decode("utf-8", "replace")
                before, not_json = len(self.log.entries), self.log.not_json
                self.log.add_line(text)  # the package's own reading of a line
                if len(self.log.entries) > before:
                    entry = self.log.entries[-1]
                    self.raw[id(entry)] = text.strip()
                    self.newest_ns = entry.time_ns if self.newest_ns is None else max(self.newest_ns, entry.time_ns)
                elif self.log.not_json > not_json and self.log.entries:
                    previous = self.log.entries[-1]
                    entry = Entry(previous.time_ns + 1, dict(previous.stream), {})
                    self.not_json.append(entry)
                    self.raw[id(entry)] = text.strip()

    def snapshot(self, until_ns: int | None = None):
        """(FileBackend over the JSON lines up to until_ns, the non-JSON ones, the raw lines)."""
        self.refresh()
        with self.lock:
            entries = [e for e in self.log.entries if until_ns is None or e.time_ns <= until_ns]
            not_json = [e for e in self.not_json if until_ns is None or e.time_ns <= until_ns]
            log = LogFile(entries=entries, not_json=self.log.not_json, no_timestamp=self.log.no_timestamp)
            return FileBackend(self.path, log=log), not_json, self.raw


# -- the server ----------------------------------------------------------------------------


class _Answer(Exception):
    """An HTTP answer other than 200 JSON, raised from deep in the evaluation."""

    def __init__(self, status: int, body: str, content_type: str = TEXT_TYPE):
        super().__init__(body)
        self.status, self.body, self.content_type = status, body, content_type


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    server_version = "Loki-stand-in"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.standin._handle(self, {})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace")) if length else {}
        self.server.standin._handle(self, {k: v[0] for k, v in form.items()})

    def log_message(self, *args):
        pass


class LokiStandIn:
    """See the module docstring. `url`, `counts` (Counter by path), `requests` (one dict per
    request: path, params, headers, fault, status), `errors` (the stand-in's own failures:
    a test should end with none)."""

    def __init__(self, log_path, namespace: str = "openfaas-fn", max_entries: int = MAX_ENTRIES,
                 max_series: int = MAX_SERIES):
        self.log = _TailedLog(log_path)
        self.namespace = namespace
        self.max_entries = max_entries
        self.max_series = max_series
        self.counts: Counter = Counter()
        self.requests: list = []
        self.errors: list = []
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set at stop: slow answers stop waiting
        self._fault: Fault | None = None
        self._frozen_ns: int | None = None
        self._pages = 0  # query_range calls since fail_after_pages was set
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.url = ""

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> LokiStandIn:
        self._wake.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._wake.set()
        self._unlisten()

    def __enter__(self) -> LokiStandIn:
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _listen(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.standin = self
        self._server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()  # the port refuses connections from now on

    # -- faults -------------------------------------------------------------------------
    @property
    def fault(self) -> Fault | None:
        return self._fault

    @fault.setter
    def fault(self, spec) -> None:
        self._set(Fault.of(spec))

    @contextmanager
    def faulty(self, spec, **options):
        """`with loki.faulty("slow", delay_s=3):` the fault for the block, then the one before."""
        before, frozen = self._fault, self._frozen_ns
        self._set(Fault.of(spec, **options))
        try:
            yield self
        finally:
            self._set(before, frozen)

    def _set(self, fault: Fault | None, frozen_ns: int | None = None) -> None:
        was_down = self._fault is not None and self._fault.name == "down"
        if fault is not None and fault.name == "stale" and frozen_ns is None:
            if fault.at is not None:
                frozen_ns = int(round(fault.at * NS))
            else:
                self.log.refresh()
                frozen_ns = self.log.newest_ns if self.log.newest_ns is not None else 0
        with self._lock:
            self._fault, self._frozen_ns, self._pages = fault, frozen_ns, 0
        down = fault is not None and fault.name == "down"
        if down and not was_down and self._server is not None:
            self._unlisten()
        elif was_down and not down and self._server is None and not self._wake.is_set():
            self._listen()

    def _meet(self, path: str):
        """(the failure this request meets, the `limit` fault, the stale time): each None when
        it does not apply. fail_after_pages counts the query_range calls here."""
        with self._lock:
            fault = self._fault
            if fault is None or fault.name == "down":  # down: a request that came in as it closed
                return None, None, None
            if fault.name == "stale":
                return None, None, self._frozen_ns
            if fault.name == "limit":
                return None, fault, None
            if fault.name == "fail_after_pages":
                if path != "/loki/api/v1/query_range":
                    return None, None, None
                self._pages += 1
                if self._pages <= fault.pages:
                    return None, None, None
                fault = Fault(fault.then, delay_s=fault.delay_s, retry_after=fault.retry_after,
                              max_entries=fault.max_entries)
                if fault.name == "limit":
                    return None, fault, None
            return fault, None, None

    # -- one request --------------------------------------------------------------------
    def _handle(self, handler: _Handler, form: dict) -> None:
        url = urlparse(handler.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        params.update(form)
        record = {"path": url.path, "params": params, "headers": {k.lower(): v for k, v in handler.headers.items()},
                  "fault": None, "status": None}
        with self._lock:
            self.counts[url.path] += 1
            self.requests.append(record)
        failure, limit, frozen_ns = self._meet(url.path)
        met = failure or limit
        record["fault"] = met.name if met else ("stale" if frozen_ns is not None else None)
        try:
            if failure is not None and self._fail(handler, failure, record):
                return
            try:
                body = json.dumps(self._answer(url.path, params, limit, frozen_ns)).encode()
                status, content_type = 200, JSON_TYPE
            except _Answer as answer:
                status, content_type, body = answer.status, answer.content_type, answer.body.encode()
            if failure is not None and failure.name == "slow":
                self._wake.wait(failure.delay_s)
            record["status"] = status
            stall_s = failure.delay_s if failure is not None and failure.name == "slow_body" else None
            self._send(handler, status, content_type, body, stall_s=stall_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): what a real server sees too
        except Exception as err:  # a bug in the stand-in: say so, never pass it off as a Loki fault
            self.errors.append(f"{url.path}?{params}: {type(err).__name__}: {err}")
            try:
                self._send(handler, 599, TEXT_TYPE, f"loki stand-in failed: {type(err).__name__}: {err}".encode())
            except OSError:
                pass

    def _fail(self, handler, failure: Fault, record: dict) -> bool:
        """Answer the failure; False when it only shapes the normal answer (slow, slow_body)."""
        if failure.name == "reset":
            record["status"] = "reset"
            sock = handler.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # SO_LINGER 0: the close is a TCP RST
            handler.close_connection = True
            return True
        if failure.name in FAULT_ANSWERS:
            status, content_type, body = FAULT_ANSWERS[failure.name]
            headers = {"Retry-After": failure.retry_after} if failure.name == "429" and failure.retry_after else {}
            if content_type == TEXT_TYPE:
                headers["X-Content-Type-Options"] = "nosniff"  # what Go's http.Error adds
            record["status"] = status
            self._send(handler, status, content_type, body.encode(), headers=headers)
            return True
        return False

    def _send(self, handler, status: int, content_type: str, body: bytes, headers: dict | None = None,
              stall_s: float | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if stall_s is None:
            handler.wfile.write(body)
            return
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        self._wake.wait(stall_s)
        handler.wfile.write(body[len(body) // 2:])

    # -- Loki's API -----------------------------------------------------------------------
    def _answer(self, path: str, params: dict, limit_fault: Fault | None, frozen_ns: int | None) -> dict:
        if path == "/ready":
            raise _Answer(200, "ready\n")
        if path not in ("/loki/api/v1/query", "/loki/api/v1/query_range"):
            raise _Answer(404, "404 page not found\n")
        if "query" not in params:
            raise _Answer(400, "query parameter is required")  # not recorded: approximate
        try:
            query = parse_logql(params["query"])
            now_ns = time.time_ns()
            backend, not_json, raw = self.log.snapshot(frozen_ns)
            if path == "/loki/api/v1/query":
                if isinstance(query, (LogQuery, Selector)):
                    raise LogQLError("log queries are not supported as an instant query type, "
                                     "please change your query to a range query type")
                at_ns = parse_loki_time(params.get("time"), now_ns)
                return self._vector(backend.instant(query, at_ns / NS), at_ns)
            end_ns = parse_loki_time(params.get("end"), now_ns)
            start_ns = parse_loki_time(params.get("start"), end_ns - 3600 * NS)
            if end_ns < start_ns:
                raise LogQLError("end timestamp must not be before start time")
            if isinstance(query, (LogQuery, Selector)):
                return self._streams(backend, not_json, raw, query, start_ns, end_ns, params, limit_fault)
            return self._matrix(backend, query, start_ns, end_ns, params)
        except LogQLError as err:
            raise _Answer(400, str(err)) from None

    @staticmethod
    def _ok(result_type: str, result: list) -> dict:
        return {"status": "success", "data": {"resultType": result_type, "result": result}}

    def _vector(self, vector: dict, at_ns: int) -> dict:
        if len(vector) > self.max_series:
            raise LogQLError(series_text(self.max_series))
        return self._ok("vector", [{"metric": dict(key), "value": [loki_time(at_ns), go_float(value)]}
                                   for key, value in sorted(vector.items())])

    def _matrix(self, backend: FileBackend, query, start_ns: int, end_ns: int, params: dict) -> dict:
        if params.get("step"):
            step_s = parse_step_s(params["step"])
        else:  # Loki's default: a 250th of the range, at least 1 s
            step_s = max(math.floor((end_ns - start_ns) / NS / 250), 1)
        if step_s <= 0:
            raise LogQLError("zero or negative query resolution step widths are not accepted. "
                             "Try a positive integer")
        if (end_ns - start_ns) / NS / step_s > MAX_POINTS:
            raise LogQLError("exceeded maximum resolution of 11,000 points per timeseries. "
                             "Try decreasing the query resolution (?step=XX)")
        if not float(step_s).is_integer():
            raise LogQLError("the stand-in evaluates whole-second steps only")
        matrix = backend.range(query, start_ns / NS, end_ns / NS, int(step_s))
        if len(matrix) > self.max_series:
            raise LogQLError(series_text(self.max_series))
        return self._ok("matrix", [{"metric": dict(key), "values": [[loki_time(int(round(t * NS))), go_float(v)]
                                                                     for t, v in points]}
                                   for key, points in sorted(matrix.items())])

    def _streams(self, backend: FileBackend, not_json: list, raw: dict, query, start_ns: int, end_ns: int,
                 params: dict, limit_fault: Fault | None) -> dict:
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise LogQLError(f"invalid limit {params['limit']!r}") from None
        max_entries = min(self.max_entries, limit_fault.max_entries) if limit_fault else self.max_entries
        if limit > max_entries:
            raise LogQLError(limit_text(limit, max_entries))
        if limit <= 0:
            raise LogQLError("limit must be a positive value")
        direction = (params.get("direction") or "backward").lower()
        if direction not in ("forward", "backward"):
            raise LogQLError(f"invalid direction {params['direction']!r}")
        if isinstance(query, LogQuery):
            if query.unwrap:
                raise LogQLError("unwrap is for metric queries, not log queries")
            kept = list(backend.entries(query, start_ns - 1, end_ns - 1))  # Loki: [start, end)
        else:
            kept = [e for e in sorted(backend.log.entries + not_json, key=lambda e: e.time_ns)
                    if start_ns <= e.time_ns < end_ns and all(e.stream.get(k, "") == v for k, v in query.stream)]
        kept = kept[:limit] if direction == "forward" else kept[::-1][:limit]
        streams: dict = {}
        for entry in kept:
            labels = {"namespace": self.namespace, **entry.stream}
            if isinstance(query, LogQuery):  # `| json` adds the fields it extracts as labels
                names = query.fields if query.fields is not None else entry.fields
                labels.update({k: entry.fields[k] for k in names if entry.fields.get(k, "") != ""})
            elif entry.fields.get("request_id"):  # structured metadata: one stream per request
                labels["request_id"] = entry.fields["request_id"]
            key = tuple(sorted(labels.items()))
            streams.setdefault(key, {"stream": labels, "values": []})["values"].append(
                [str(entry.time_ns), raw[id(entry)]])
        return self._ok("streams", [streams[key] for key in sorted(streams)])


def serve(log_path, **options) -> LokiStandIn:
    """A started stand-in (stop() it)."""
    return LokiStandIn(log_path, **options).start()


if __name__ == "__main__":  # serve a log file by hand: python tests/slo/loki_standin.py LOG [FAULT]
    import sys

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: loki_standin.py LOG.jsonl [FAULT]")
    standin = serve(sys.argv[1])
    standin.fault = sys.argv[2] if len(sys.argv) == 3 else None
    print(f"Loki stand-in for {sys.argv[1]} at {standin.url} (fault: {standin.fault}); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()
