"""Every setting of the SLO tool, read once from the environment (with the command line's
flags applied by cli.py) into one `Settings`, which the commands and hooks are given.

Where the data comes from:
  LOKI_URL      Loki base URL (e.g. http://loki:3100): run the LogQL over HTTP.
  LOG_FILE      a JSONL log file: evaluate the same LogQL locally (used when LOKI_URL is unset).
  LOKI_TIMEOUT  seconds per HTTP call (default 30); LOKI_TENANT sets X-Scope-OrgID;
  LOKI_USERNAME/LOKI_PASSWORD (basic auth) or LOKI_TOKEN (bearer) for a protected Loki.
  PROMETHEUS_URL  a Prometheus scraping the functions (e.g. http://prometheus:9090): a
                comparison reads each version as counts from the function's own series
                (the aggregate path; COMPARE_PATH=lines reads LOKI_URL or LOG_FILE instead).
What is judged, when, and where the reports go:
  SLO_AT        evaluation time, unix seconds (default: now).
  SLO_FUNCTION  the function `Given the function being checked` names; the charts' function
                when no contract names one (default classifier).
  SLO_REPORT    path of the check's JSON report (optional).
  SLO_HTML      path of the check's HTML report (optional); SLO_HTML_WINDOW its charts'
                window in seconds (default 3600).
  SLO_P99_MS    the SLO line drawn on latency charts (ms; optional).
  SLO_DEBUG     print a step error's traceback.
A watch (`watch`, `serve`):
  WATCH_INTERVAL  seconds between looks (default 60); WATCH_DEADLINE  seconds until the
  watch ends undecided (default 1800); WATCH_OVERLAP  seconds each Loki read reaches back
  for lines that arrived late (default 30).
A comparison (`compare`, `watch`, `serve`):
  COMPARE_BASELINE, COMPARE_CANDIDATE  the two model versions.
  COMPARE_REPORT       the reports' folder (default reports/compare).
  COMPARE_PROCESS_SD   the latency shift's sd between two process starts (make review).
  COMPARE_CONTEXT      one sentence on how the traffic was made, printed in the report.
  COMPARE_REVIEW_SECONDS  make review's run length, for "REVIEW_SECONDS=" advice.
  COMPARE_PATH         how each version's requests are read: `lines` (every request line,
                       judged request by request), `aggregates` (counts: latency bins,
                       status and class counts; memory that does not grow with traffic), or
                       `auto` (default): lines up to COMPARE_LINES_MAX requests a version
                       expected (a count first), aggregates above.
  COMPARE_LINES_MAX    requests a version up to which auto reads lines (default 100000).
  COMPARE_MEMORY_MB    the line path's memory budget (default 1024): it refuses, naming
                       these settings, when the requests it would keep need more.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import cached_property

DEFAULT_FUNCTION = "classifier"
DEFAULT_COMPARE_REPORT = "reports/compare"
COMPARE_PATHS = ("auto", "lines", "aggregates")
DEFAULT_COMPARE_LINES_MAX = 100_000
DEFAULT_COMPARE_MEMORY_MB = 1024.0
NO_SOURCE = "set LOKI_URL (query Loki) or LOG_FILE (a JSONL log) to check the SLO contracts"


class SettingsError(ValueError):
    """The runner was started without what it needs; say exactly what to set."""


@dataclass(frozen=True)
class Source:
    """Where the log lines are: a Loki (url and its options) or a JSONL file."""

    loki_url: str = ""
    log_file: str = ""
    loki_timeout_s: float = 30.0
    loki_tenant: str | None = None
    loki_username: str | None = None
    loki_password: str | None = None
    loki_token: str | None = None
    prometheus_url: str = ""

    def check(self) -> None:
        """What building the backend would refuse, without reading the log or calling Loki."""
        if self.loki_url:
            return
        if self.log_file:
            check_log_file(self.log_file)
            return
        raise SettingsError(NO_SOURCE)

    def backend(self):
        self.check()
        if self.loki_url:
            from .loki_backend import LokiBackend
            return LokiBackend(self.loki_url, timeout_s=self.loki_timeout_s, tenant=self.loki_tenant,
                               username=self.loki_username, password=self.loki_password, token=self.loki_token)
        from .file_backend import FileBackend
        return FileBackend(self.log_file)


@dataclass(frozen=True)
class CompareSettings:
    baseline: str = ""
    candidate: str = ""
    report_dir: str = DEFAULT_COMPARE_REPORT
    process_sd: float = 0.0
    context: str = ""
    review_seconds: float | None = None
    path: str = "auto"  # COMPARE_PATH
    lines_max: int = DEFAULT_COMPARE_LINES_MAX
    memory_mb: float = DEFAULT_COMPARE_MEMORY_MB

    @property
    def watch_lines_max(self) -> int | None:
        """Requests a version a watch keeps before it keeps counts instead (None: all of them)."""
        return {"lines": None, "aggregates": 0}.get(self.path, self.lines_max)


@dataclass(frozen=True)
class WatchSettings:
    interval_s: float = 60.0
    deadline_s: float = 1800.0
    overlap_s: float = 30.0


@dataclass
class Settings:
    source: Source = field(default_factory=Source)
    at: float = field(default_factory=time.time)
    function: str = ""  # SLO_FUNCTION ("" when unset: `Given the function being checked` says so)
    report_path: str | None = None
    html_path: str | None = None
    html_window_s: int = 3600
    slo_p99_ms: float | None = None
    debug: bool = False
    compare: CompareSettings = field(default_factory=CompareSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)

    @cached_property
    def backend(self):
        """The Loki or file backend, built on first use (SettingsError: no usable source)."""
        return self.source.backend()

    @property
    def chart_function(self) -> str:
        return self.function or DEFAULT_FUNCTION


def check_log_file(path: str) -> None:
    """A log that is missing, not a file, unreadable or empty cannot be judged: say which."""
    if not os.path.exists(path):
        raise SettingsError(f"LOG_FILE={path} does not exist")
    if not os.path.isfile(path):
        raise SettingsError(f"LOG_FILE={path} is not a file")
    try:
        with open(path, "rb") as handle:
            empty = not handle.read(1 << 16).strip()
    except OSError as err:
        raise SettingsError(f"LOG_FILE={path} cannot be read ({err.strerror or err})") from None
    if empty:
        raise SettingsError(f"LOG_FILE={path} is empty: no request to judge")


def from_env(env=None) -> Settings:
    """Every setting, read from `env` (os.environ when None); SettingsError names the bad one.
    The source is only read here, not checked: `settings.source.check()` or `.backend` do."""
    env = os.environ if env is None else env
    return Settings(
        source=Source(
            loki_url=env.get("LOKI_URL", ""),
            log_file="" if env.get("LOKI_URL") else env.get("LOG_FILE", ""),
            loki_timeout_s=_number(env, "LOKI_TIMEOUT", 30.0, "seconds"),
            loki_tenant=env.get("LOKI_TENANT") or None,
            loki_username=env.get("LOKI_USERNAME") or None,
            loki_password=env.get("LOKI_PASSWORD") or None,
            loki_token=env.get("LOKI_TOKEN") or None,
            prometheus_url=env.get("PROMETHEUS_URL", "").strip()),
        at=_parse_at(env.get("SLO_AT", "")),
        function=env.get("SLO_FUNCTION", "").strip(),
        report_path=env.get("SLO_REPORT") or None,
        html_path=env.get("SLO_HTML") or None,
        html_window_s=int(_number(env, "SLO_HTML_WINDOW", 3600, "seconds")),
        slo_p99_ms=_number(env, "SLO_P99_MS", None, "milliseconds"),
        debug=bool(env.get("SLO_DEBUG")),
        compare=CompareSettings(
            baseline=env.get("COMPARE_BASELINE", ""),
            candidate=env.get("COMPARE_CANDIDATE", ""),
            report_dir=env.get("COMPARE_REPORT") or DEFAULT_COMPARE_REPORT,
            process_sd=_number(env, "COMPARE_PROCESS_SD", 0.0, "a fraction, e.g. 0.02"),
            context=env.get("COMPARE_CONTEXT", ""),
            review_seconds=_number(env, "COMPARE_REVIEW_SECONDS", None, "seconds"),
            path=_choice(env, "COMPARE_PATH", COMPARE_PATHS),
            lines_max=int(_positive(env, "COMPARE_LINES_MAX", DEFAULT_COMPARE_LINES_MAX, "a count of requests")),
            memory_mb=_positive(env, "COMPARE_MEMORY_MB", DEFAULT_COMPARE_MEMORY_MB, "megabytes")),
        watch=WatchSettings(
            interval_s=_number(env, "WATCH_INTERVAL", 60.0, "seconds"),
            deadline_s=_number(env, "WATCH_DEADLINE", 1800.0, "seconds"),
            overlap_s=_number(env, "WATCH_OVERLAP", 30.0, "seconds")),
    )


def _number(env, name: str, default, what: str):
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {text!r}") from None


def _positive(env, name: str, default, what: str):
    value = _number(env, name, default, what)
    if not value > 0:
        raise SettingsError(f"{name} must be {what} above 0, got {env.get(name)!r}")
    return value


def _choice(env, name: str, choices: tuple) -> str:
    text = (env.get(name) or "").strip().lower() or choices[0]
    if text not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {env.get(name)!r}")
    return text


def _parse_at(text: str) -> float:
    if not text.strip():
        return time.time()
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"SLO_AT must be unix seconds, got {text!r}") from None
