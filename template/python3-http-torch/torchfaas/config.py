"""Runtime settings, read once from the environment.

Every limit is an environment variable with a default that is safe for a
2-CPU function pod; the README lists them all.
"""
import os
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _default_threads() -> int:
    # Room for a full queue plus the batches being run: with fewer threads the
    # queue can never fill, and overload would wait in waitress's own unbounded
    # queue instead of getting quick 429s.
    return _int("QUEUE_SIZE", 16) + 2 * _int("BATCH_SIZE", 8) + 4


@dataclass(frozen=True)
class Settings:
    host: str = field(default_factory=lambda: _str("HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("PORT", 5000))
    function_name: str = field(default_factory=lambda: _str("FUNCTION_NAME", "function"))
    handler_module: str = field(default_factory=lambda: _str("HANDLER_MODULE", "function.handler"))
    artifacts_dir: str = field(default_factory=lambda: _str("ARTIFACTS_DIR", "function/artifacts"))
    model_version: str = field(default_factory=lambda: os.environ.get("MODEL_VERSION", "").strip())
    # waitress worker threads: requests waiting on a batch hold one each, so this
    # bounds the useful concurrency per replica.
    threads: int = field(default_factory=lambda: _int("WORKER_THREADS", _default_threads()))
    max_body_bytes: int = field(default_factory=lambda: _int("MAX_BODY_BYTES", 10 * 1024 * 1024))
    max_pixels: int = field(default_factory=lambda: _int("MAX_PIXELS", 25_000_000))
    batch_size: int = field(default_factory=lambda: _int("BATCH_SIZE", 8))
    batch_delay_ms: float = field(default_factory=lambda: _float("BATCH_DELAY_MS", 2.0))
    # batches run side by side (one per core suits a one-thread model that frees
    # the GIL); 0: the handler's `batch_workers` (ModelHandler default 1)
    batch_workers: int = field(default_factory=lambda: _int("BATCH_WORKERS", 0))
    queue_size: int = field(default_factory=lambda: _int("QUEUE_SIZE", 16))
    inference_timeout_ms: float = field(default_factory=lambda: _float("INFERENCE_TIMEOUT_MS", 10_000))
    retry_after_s: int = field(default_factory=lambda: _int("RETRY_AFTER_SECONDS", 1))
    # After SIGTERM the app stays up (not ready) this long, because Kubernetes and
    # the gateway keep routing to the pod for a few seconds.
    drain_seconds: float = field(default_factory=lambda: _float("DRAIN_SECONDS", 5.0))
    # Upper bound for finishing accepted requests once draining is over.
    shutdown_timeout_s: float = field(default_factory=lambda: _float("SHUTDOWN_TIMEOUT_SECONDS", 30.0))
    request_id_max_len: int = field(default_factory=lambda: _int("REQUEST_ID_MAX_LENGTH", 64))

    def public(self) -> dict:
        """The settings worth a line in the start-up log."""
        return {k: v for k, v in self.__dict__.items() if k not in ("handler_module",)}
