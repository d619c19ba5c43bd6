"""Run the contracts' LogQL against Loki's HTTP API and read its answers.

GET /loki/api/v1/query (instant) and /loki/api/v1/query_range; numbers come back as
strings and are parsed back to floats; vector, matrix and scalar answers all become the
same Vector/Matrix shapes the file backend returns. Every failure raises LokiError with
the URL, the query and Loki's own message, so a CI log says what to fix, and a `kind` a
caller can act on without reading the message (a canary watch: none of them may promote
or roll back, each is reported as what it is):

- `unreachable`: no connection (refused, reset, dropped mid-answer, DNS);
- `timeout`: no answer within `timeout_s` (connecting, waiting, or reading the body);
- `rate_limited`: HTTP 429 (`retry_after_s` holds Retry-After when Loki or a gateway sent it);
- `server_error`: HTTP 5xx (Loki's or the gateway's text kept);
- `refused`: any other HTTP 4xx, e.g. a parse error or `limit` above
  `max_entries_limit_per_query` (Loki's plain-text reason kept);
- `bad_answer`: an answer that is not Loki's JSON, `status` "error", a result of the
  wrong type, no data, or series that do not parse.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

from .logfile import LogFile
from .logql import LogQuery, Query
from .vectors import Matrix, Vector, label_set

NS = 1_000_000_000
PAGE = 5000  # Loki's default max_entries_limit_per_query


KINDS = ("unreachable", "timeout", "rate_limited", "server_error", "refused", "bad_answer")


class LokiError(RuntimeError):
    """Loki could not answer a contract's query; the contract cannot be judged.

    `kind` is one of KINDS; `status` the HTTP status when Loki answered one; `detail`
    Loki's own text; `retry_after_s` the Retry-After of a 429 (None when not sent);
    `lines_read` how many lines `lines()` had already yielded when a later page failed
    (None for any other read): those lines are not the answer, a failed read is no read.
    """

    def __init__(self, message: str, kind: str = "bad_answer", *, status: int | None = None,
                 detail: str | None = None, retry_after_s: float | None = None, lines_read: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown LokiError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.lines_read = lines_read


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if re.fullmatch(r"\d+", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo else None


def _format_time(unix_seconds: float) -> str:
    # Loki reads integers of <= 10 digits as seconds and decimals as float seconds.
    if float(unix_seconds).is_integer():
        return str(int(unix_seconds))
    return repr(float(unix_seconds))


class LokiBackend:
    name = "loki"

    def __init__(self, url: str, timeout_s: float = 30.0, tenant: str | None = None,
                 username: str | None = None, password: str | None = None, token: str | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        # what reading cost: HTTP requests sent and body bytes received (answers and errors)
        self.queries_sent = 0
        self.bytes_received = 0
        self._aggregates = None  # the counting queries' fetcher, made on first use
        self.headers = {"Accept": "application/json", "User-Agent": "torchfaas-slo"}
        if tenant:  # multi-tenant (scalable) Loki needs the org id on every call
            self.headers["X-Scope-OrgID"] = tenant
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif username:
            creds = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {creds}"

    def describe(self) -> str:
        return f"Loki at {self.url}"

    # -- public interface -------------------------------------------------------------
    def instant(self, query: Query, at: float) -> Vector:
        data = self._get("/loki/api/v1/query", query, {"time": _format_time(at)})
        kind, result = data["resultType"], data["result"]
        with self._parsing(kind, query):
            if kind == "vector":
                return {label_set(s["metric"]): float(s["value"][1]) for s in result}
            if kind == "scalar":
                return {(): float(result[1])}
            if kind == "matrix":  # not expected for an instant query, but tolerated
                return {label_set(s["metric"]): float(s["values"][-1][1]) for s in result if s["values"]}
        raise LokiError(f"Loki answered {kind!r} to a metric query: {self._text(query)}", "bad_answer")

    def range(self, query: Query, start: float, end: float, step: int) -> Matrix:
        params = {"start": _format_time(start), "end": _format_time(end), "step": str(int(step))}
        data = self._get("/loki/api/v1/query_range", query, params)
        if data["resultType"] != "matrix":
            raise LokiError(f"Loki answered {data['resultType']!r} to a range metric query: {self._text(query)}",
                            "bad_answer")
        with self._parsing("matrix", query):
            return {
                label_set(s["metric"]): [(float(t), float(v)) for t, v in s["values"]]
                for s in data["result"]
            }

    def version_counts(self, function: str, version: str, start: float, end: float) -> dict:
        """One version's counts over (start, end], counted by Loki (aggregates.LokiAggregates:
        metric queries, not lines): the aggregate path of a comparison."""
        if self._aggregates is None:
            from .aggregates import LokiAggregates
            self._aggregates = LokiAggregates(self)
        return self._aggregates.version_counts(function, version, start, end)

    def lines(self, logs: LogQuery, start: float, end: float):
        """The fields of each line the log query keeps in (start, end], oldest first, read in
        pages of PAGE lines (`direction=forward`, the next page starting at the last line's
        time; lines already read at that nanosecond are skipped), as logcli pages.

        A generator: when a later page fails, the lines of the pages before it have already
        been yielded and LokiError (with `lines_read`) is raised from the next iteration. They
        are not the answer: a caller must treat a failed read as no read and discard them
        (`list(...)` does; a loop that accumulates must drop what it gathered)."""
        start_ns, end_ns = int(round(start * NS)) + 1, int(round(end * NS)) + 1  # Loki: [start, end)
        seen_at_start: set = set()
        pages = lines_read = 0
        while True:
            params = {"start": str(start_ns), "end": str(end_ns), "limit": str(PAGE), "direction": "forward"}
            try:
                data = self._get("/loki/api/v1/query_range", logs, params)
                if data["resultType"] != "streams":
                    raise LokiError(f"Loki answered {data['resultType']!r} to a log query: {self._text(logs)}",
                                    "bad_answer")
                with self._parsing("streams", logs):
                    page = sorted((int(ts), str(line)) for stream in data["result"] for ts, line in stream["values"])
            except LokiError as err:
                if not pages:
                    raise
                raise LokiError(f"{err} [page {pages + 1} of a log query failed after {lines_read} lines were read: "
                                "a partial answer, treat it as no answer]", err.kind, status=err.status,
                                detail=err.detail, retry_after_s=err.retry_after_s, lines_read=lines_read) from None
            pages += 1
            fresh = [(ts, line) for ts, line in page if not (ts == start_ns and line in seen_at_start)]
            for _, line in fresh:
                entry = LogFile.parse(line)
                if entry is not None:
                    lines_read += 1
                    yield entry.fields
            if len(page) < PAGE or not fresh:
                return
            last = page[-1][0]
            seen_at_start = {line for ts, line in page if ts == last} | (seen_at_start if last == start_ns else set())
            start_ns = last

    # -- HTTP -------------------------------------------------------------------------
    @staticmethod
    def _text(query) -> str:
        return query if isinstance(query, str) else query.render()

    @contextmanager
    def _parsing(self, kind: str, query):
        """Series that do not have Loki's shape are a bad answer, not a crash."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            raise LokiError(f"Loki at {self.url} answered a malformed {kind} to {self._text(query)!r} "
                            f"({type(err).__name__}: {err})", "bad_answer") from None

    def _get(self, path: str, query, params: dict) -> dict:
        text = self._text(query)
        url = f"{self.url}{path}?" + urllib.parse.urlencode({"query": text, **params})
        request = urllib.request.Request(url, headers=self.headers)
        self.queries_sent += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
            self.bytes_received += len(body)
        except urllib.error.HTTPError as err:
            raise self._http_error(err, text) from None
        except urllib.error.URLError as err:  # connecting: refused, DNS, connect timeout
            if isinstance(err.reason, TimeoutError):
                raise self._timed_out(text) from None
            raise self._unreachable(err.reason) from None
        except TimeoutError:  # waiting for the answer or reading it (socket.timeout)
            raise self._timed_out(text) from None
        except (OSError, http.client.HTTPException) as err:  # reset, closed mid-answer
            raise self._unreachable(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise LokiError(f"Loki at {self.url} did not answer JSON to {text!r}: {body[:200]!r}",
                            "bad_answer") from None
        if not isinstance(answer, dict):
            raise LokiError(f"Loki at {self.url} did not answer a JSON object to {text!r}: {body[:200]!r}",
                            "bad_answer")
        if answer.get("status") != "success":
            raise LokiError(f"Loki at {self.url} answered an error to {text!r}: "
                            f"{answer.get('errorType', '')} {answer.get('error', answer)}".strip(), "bad_answer",
                            detail=str(answer.get("error", "")) or None)
        data = answer.get("data")
        if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
            raise LokiError(f"Loki at {self.url} answered without data to {text!r}: {str(answer)[:200]}",
                            "bad_answer")
        return data

    def _unreachable(self, reason) -> LokiError:
        return LokiError(f"Loki at {self.url} is unreachable ({reason}); "
                         f"check LOKI_URL and the network (timeout {self.timeout_s:g}s)", "unreachable")

    def _timed_out(self, text: str) -> LokiError:
        return LokiError(f"Loki at {self.url} timed out: no answer to {text!r} within {self.timeout_s:g}s, "
                         f"unreachable for now; check LOKI_URL, the network and the query's cost "
                         f"(timeout {self.timeout_s:g}s)", "timeout")

    def _http_error(self, err: urllib.error.HTTPError, text: str) -> LokiError:
        try:
            raw = err.read()
            self.bytes_received += len(raw)
            detail = raw.decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as broken:  # the error's body never came
            detail = f"(no body: {type(broken).__name__})"
        detail = " ".join(detail.split())[:500]
        code = err.code
        if code == 429:
            retry = _retry_after_s(err.headers.get("Retry-After") if err.headers else None)
            why = "rate limited" + (f", retry after {retry:g}s" if retry is not None else "")
            kind = "rate_limited"
        elif code >= 500:
            why, kind, retry = "server error", "server_error", None
        else:
            why, kind, retry = "refused the query", "refused", None
            if code in (401, 403):
                why += "; check the tenant and credentials"
        return LokiError(f"Loki at {self.url} answered HTTP {code} ({why}) to {text!r}: {detail}", kind,
                         status=code, detail=detail, retry_after_s=retry)
