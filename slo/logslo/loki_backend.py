"""Run the contracts' LogQL against Loki's HTTP API and read its answers.

GET /loki/api/v1/query (instant) and /loki/api/v1/query_range; numbers come back as
strings and are parsed back to floats; vector, matrix and scalar answers all become the
same Vector/Matrix shapes the file backend returns. Every failure (unreachable, timeout,
HTTP error, status "error", a log-stream answer to a metric query) raises LokiError with
the URL, the query and Loki's own message, so a CI log says what to fix.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

from .logfile import LogFile
from .logql import LogQuery, Query
from .vectors import Matrix, Vector, label_set

NS = 1_000_000_000
PAGE = 5000  # Loki's default max_entries_limit_per_query


class LokiError(RuntimeError):
    """Loki could not answer a contract's query; the contract cannot be judged."""


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
        if kind == "vector":
            return {label_set(s["metric"]): float(s["value"][1]) for s in result}
        if kind == "scalar":
            return {(): float(result[1])}
        if kind == "matrix":  # not expected for an instant query, but tolerated
            return {label_set(s["metric"]): float(s["values"][-1][1]) for s in result if s["values"]}
        raise LokiError(f"Loki answered {kind!r} to a metric query: {self._text(query)}")

    def range(self, query: Query, start: float, end: float, step: int) -> Matrix:
        params = {"start": _format_time(start), "end": _format_time(end), "step": str(int(step))}
        data = self._get("/loki/api/v1/query_range", query, params)
        if data["resultType"] != "matrix":
            raise LokiError(f"Loki answered {data['resultType']!r} to a range metric query: {self._text(query)}")
        return {
            label_set(s["metric"]): [(float(t), float(v)) for t, v in s["values"]]
            for s in data["result"]
        }

    def lines(self, logs: LogQuery, start: float, end: float):
        """The fields of each line the log query keeps in (start, end], oldest first, read in
        pages of PAGE lines (`direction=forward`, the next page starting at the last line's
        time; lines already read at that nanosecond are skipped), as logcli pages."""
        start_ns, end_ns = int(round(start * NS)) + 1, int(round(end * NS)) + 1  # Loki: [start, end)
        seen_at_start: set = set()
        while True:
            params = {"start": str(start_ns), "end": str(end_ns), "limit": str(PAGE), "direction": "forward"}
            data = self._get("/loki/api/v1/query_range", logs, params)
            if data["resultType"] != "streams":
                raise LokiError(f"Loki answered {data['resultType']!r} to a log query: {self._text(logs)}")
            page = sorted((int(ts), line) for stream in data["result"] for ts, line in stream["values"])
            fresh = [(ts, line) for ts, line in page if not (ts == start_ns and line in seen_at_start)]
            for _, line in fresh:
                entry = LogFile.parse(line)
                if entry is not None:
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

    def _get(self, path: str, query, params: dict) -> dict:
        text = self._text(query)
        url = f"{self.url}{path}?" + urllib.parse.urlencode({"query": text, **params})
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace").strip()[:500]
            raise LokiError(f"Loki at {self.url} answered HTTP {err.code} to {text!r}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise LokiError(f"Loki at {self.url} is unreachable ({reason}); "
                            f"check LOKI_URL and the network (timeout {self.timeout_s:g}s)") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise LokiError(f"Loki at {self.url} did not answer JSON to {text!r}: {body[:200]!r}") from None
        if answer.get("status") != "success":
            raise LokiError(f"Loki at {self.url} answered an error to {text!r}: "
                            f"{answer.get('errorType', '')} {answer.get('error', answer)}".strip())
        data = answer.get("data") or {}
        if "resultType" not in data or "result" not in data:
            raise LokiError(f"Loki at {self.url} answered without data to {text!r}: {str(answer)[:200]}")
        return data
