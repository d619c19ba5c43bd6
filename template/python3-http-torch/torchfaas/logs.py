"""The log contract: one JSON object per line on stdout, nothing else on stdout.

Third-party code prints (the EfficientNet weights package does, C++ libraries
may write to fd 1 directly), and one stray line breaks every JSON parser
downstream. So at start-up fd 1 is moved: the JSON log keeps a private
duplicate of the real stdout and fd 1 itself is pointed at stderr.
"""
import logging
import os
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

from .identity import CurrentModel


def rfc3339_ms(epoch_seconds: float) -> str:
    """2026-11-21T04:00:00.123Z: what Loki/Promtail parse as RFC3339Nano."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class ContractFormatter(JsonFormatter):
    """python-json-logger with the contract's leading fields and timestamp format."""

    def __init__(self):
        super().__init__("%(message)s")

    def add_fields(self, log_data, record, message_dict):
        log_data["timestamp"] = rfc3339_ms(record.created)
        log_data["level"] = record.levelname
        super().add_fields(log_data, record, message_dict)


def claim_stdout():
    """Return a private text stream on the real stdout; send fd 1 to stderr."""
    sys.stdout.flush()
    private_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(private_fd, "w", encoding="utf-8", buffering=1)


class EventLog:
    """Writes contract lines: `emit("inference", "inference", status=200, ...)`.

    Every line carries the current model's identity (function, model name and
    version), read from `model` at the moment the line is written.
    """

    def __init__(self, stream, model: CurrentModel):
        handler = logging.StreamHandler(stream)  # emits under a lock: lines never interleave
        handler.setFormatter(ContractFormatter())
        self._logger = logging.getLogger(f"torchfaas.events.{id(self)}")
        self._logger.handlers[:] = [handler]
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        self.model = model

    def emit(self, event: str, message: str, level: int = logging.INFO, **fields):
        extra = {"event": event, **self.model.identity.fields()}
        extra.update((k, v) for k, v in fields.items() if v is not None)
        self._logger.log(level, message, extra=extra)


def level_for_status(status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    return logging.INFO
