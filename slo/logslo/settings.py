"""Read the runner's environment: which backend, at what time, where the report goes.

LOKI_URL    Loki base URL (e.g. http://loki:3100): run the LogQL over HTTP.
LOG_FILE    a JSONL log file: evaluate the same LogQL locally (used when LOKI_URL is unset).
SLO_AT      evaluation time, unix seconds (default: now).
SLO_REPORT  path of the JSON report to write (optional).
LOKI_TIMEOUT seconds per HTTP call (default 30); LOKI_TENANT sets X-Scope-OrgID;
LOKI_USERNAME/LOKI_PASSWORD (basic auth) or LOKI_TOKEN (bearer) for a protected Loki.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


class SettingsError(ValueError):
    """The runner was started without what it needs; say exactly what to set."""


@dataclass
class Settings:
    backend: object
    at: float
    report_path: str | None
    # SLO_FUNCTION: the function `Given the function being checked` names ("" when unset)
    function: str = ""


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


def check(env=None) -> None:
    """What from_env would refuse, without reading the log or calling Loki."""
    env = os.environ if env is None else env
    _parse_at(env.get("SLO_AT", ""))
    if env.get("LOKI_URL"):
        return
    if env.get("LOG_FILE"):
        check_log_file(env["LOG_FILE"])
        return
    raise SettingsError(NO_SOURCE)


NO_SOURCE = "set LOKI_URL (query Loki) or LOG_FILE (a JSONL log) to check the SLO contracts"


def from_env(env=None) -> Settings:
    env = os.environ if env is None else env
    at = _parse_at(env.get("SLO_AT", ""))
    report = env.get("SLO_REPORT") or None
    if env.get("LOKI_URL"):
        from .loki_backend import LokiBackend
        try:
            timeout = float(env.get("LOKI_TIMEOUT", "30"))
        except ValueError:
            raise SettingsError(f"LOKI_TIMEOUT must be seconds, got {env['LOKI_TIMEOUT']!r}") from None
        backend = LokiBackend(env["LOKI_URL"], timeout_s=timeout, tenant=env.get("LOKI_TENANT"),
                              username=env.get("LOKI_USERNAME"), password=env.get("LOKI_PASSWORD"),
                              token=env.get("LOKI_TOKEN"))
    elif env.get("LOG_FILE"):
        from .file_backend import FileBackend
        check_log_file(env["LOG_FILE"])
        backend = FileBackend(env["LOG_FILE"])
    else:
        raise SettingsError(NO_SOURCE)
    return Settings(backend, at, report, env.get("SLO_FUNCTION", "").strip())


def _parse_at(text: str) -> float:
    if not text.strip():
        return time.time()
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"SLO_AT must be unix seconds, got {text!r}") from None
