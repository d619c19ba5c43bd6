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
        if not os.path.isfile(env["LOG_FILE"]):
            raise SettingsError(f"LOG_FILE={env['LOG_FILE']} does not exist")
        backend = FileBackend(env["LOG_FILE"])
    else:
        raise SettingsError("set LOKI_URL (query Loki) or LOG_FILE (a JSONL log) to check the SLO contracts")
    return Settings(backend, at, report)


def _parse_at(text: str) -> float:
    if not text.strip():
        return time.time()
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"SLO_AT must be unix seconds, got {text!r}") from None
