"""Runtime settings: every environment variable the runtime reads, read here once.

Each field names its variable and its default in one place (`env()`); the
table of variables in docs/settings.md is checked against these fields by a test. A
function keeps its own variables in its own settings object built the same
way (see `env()` and the classifier's `ClassifierSettings`). Nothing here is about
one kind of model: a handler that needs more of the runtime's settings names a
subclass in its `settings_class` (image functions: `toolkit.images.ImageSettings`,
which adds MAX_PIXELS). `for_handler()` works out the settings a handler runs with,
the one place the build step, the runtime, its metrics and the benchmark get them.
"""
import math
import os
from dataclasses import dataclass, field, fields, replace


def read_env(name: str, default, parse=str):
    """The variable `name` parsed with `parse`, or `default` when unset or blank."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {parse.__name__}") from None


def env(name: str, default, parse=str, documented: str | None = None):
    """A settings field read from `name`; `documented` is docs/settings.md's default when
    it is derived rather than a constant (e.g. "handler's", a formula)."""
    return field(default_factory=lambda: read_env(name, default, parse),
                 metadata={"env": name, "default": default if documented is None else documented})


def env_fields(settings_class) -> dict:
    """{variable: documented default} for every environment-backed field."""
    return {f.metadata["env"]: f.metadata["default"] for f in fields(settings_class) if "env" in f.metadata}


def go_duration_s(raw: str) -> float | None:
    """A Go duration ("5s", "500ms", "1m30s"; a bare number is seconds) in seconds, else None."""
    import re
    raw = raw.strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * scale[u] for n, u in parts)


def watchdog_routing_s() -> float | None:
    """How long the of-watchdog keeps routing after SIGTERM: its own `healthcheck_interval`
    (same container environment), None when not running under it. Not one of our variables."""
    return go_duration_s(os.environ.get("healthcheck_interval", ""))


@dataclass(frozen=True)
class Settings:
    host: str = env("HOST", "127.0.0.1")
    port: int = env("PORT", 5000, int)
    function_name: str = env("FUNCTION_NAME", "function")
    handler_module: str = env("HANDLER_MODULE", "function.handler")
    artifacts_dir: str = env("ARTIFACTS_DIR", "function/artifacts")
    # empty: the version is the manifest's hash (or the handler's own)
    model_version: str = env("MODEL_VERSION", "", documented="manifest hash")
    # waitress worker threads; 0 derives it (see __post_init__)
    threads: int = env("WORKER_THREADS", 0, int, documented="QUEUE_SIZE + 2 x BATCH_SIZE + 4")
    max_body_bytes: int = env("MAX_BODY_BYTES", 10 * 1024 * 1024, int)
    batch_size: int = env("BATCH_SIZE", 8, int)
    batch_delay_ms: float = env("BATCH_DELAY_MS", 2.0, float)
    # batches run side by side; 0: the handler's `batch_workers` (see for_handler)
    batch_workers: int = env("BATCH_WORKERS", 0, int, documented="handler's")
    queue_size: int = env("QUEUE_SIZE", 16, int)
    inference_timeout_ms: float = env("INFERENCE_TIMEOUT_MS", 10_000.0, float)
    retry_after_s: int = env("RETRY_AFTER_SECONDS", 1, int)
    # After SIGTERM the app stays up (not ready) this long, because Kubernetes and
    # the gateway keep routing to the pod for a few seconds.
    drain_seconds: float = env("DRAIN_SECONDS", 5.0, float)
    # Upper bound for finishing accepted requests once draining is over.
    shutdown_timeout_s: float = env("SHUTDOWN_TIMEOUT_SECONDS", 30.0, float)
    # the watchdog's healthcheck_interval (None: no watchdog in front); see server._drain
    watchdog_routing_s: float | None = field(default_factory=watchdog_routing_s)
    request_id_max_len: int = env("REQUEST_ID_MAX_LENGTH", 64, int)
    # allow-list of tenant label values (comma-separated); see metrics.TenantLabels
    tenants: str = env("TENANTS", "", documented="empty")
    tenant_header: str = env("TENANT_HEADER", "X-Tenant-Id")
    # the p99 bound of the function's latency contract (functions/<name>/slo/latency.feature):
    # requests slower than this count as slow in torchfaas_slow_requests_total, which the
    # burn-rate alerts read, so each function is alerted on its own promise
    latency_objective_ms: float = env("LATENCY_OBJECTIVE_MS", 250.0, float)
    # the commit the image was built from (Dockerfile build arg); in GET / and model_loaded
    source_commit: str = env("SOURCE_COMMIT", "", documented="empty")
    # PyTorch's own variable, on by default here: tensors of 2 MiB and more are
    # allocated on transparent huge pages (madvise). A forward pass allocates its
    # activations afresh each time; on 4 KiB pages that cost ~400 page faults per
    # request, most of the kernel time of a served request (docs/benchmarks.md, "The fast path").
    torch_huge_pages: int = env("THP_MEM_ALLOC_ENABLE", 1, int)
    # glibc's own variable (which it reads too), 2 here instead of glibc's 8 per core: a
    # forward pass's freed activations wait in its thread's arena for the next pass, one
    # pool per arena (torchfaas.allocator;
    # docs/benchmarks.md, "Cold start and memory per replica").
    # 1 made the batch workers wait on each other's allocations; 0: glibc's default
    malloc_arena_max: int = env("MALLOC_ARENA_MAX", 2, int)

    def __post_init__(self):
        if self.threads <= 0:
            # Room for a full queue plus the batches being run: with fewer threads the
            # queue can never fill, and overload would wait in waitress's own unbounded
            # queue instead of getting quick 429s.
            object.__setattr__(self, "threads", self.queue_size + 2 * self.batch_size + 4)
        for name in ("port", "max_body_bytes", "batch_size", "queue_size", "request_id_max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not math.isfinite(self.latency_objective_ms) or self.latency_objective_ms <= 0:
            raise ValueError(f"latency_objective_ms must be a finite number > 0, not {self.latency_objective_ms}")
        for name in ("batch_delay_ms", "inference_timeout_ms", "drain_seconds", "shutdown_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value}")

    @property
    def latency_objective_s(self) -> float:
        return self.latency_objective_ms / 1000

    def for_handler(self, handler) -> "Settings":
        """The settings `handler` runs with: these, as its `settings_class` (a subclass of
        Settings, e.g. an image function's ImageSettings: the fields these have are kept,
        its own are read from the environment), with its own `batch_workers` where
        BATCH_WORKERS is unset. Settings already worked out are returned as they are."""
        cls = getattr(handler, "settings_class", Settings)
        settings = self
        if not isinstance(self, cls) and isinstance(cls, type) and issubclass(cls, Settings):
            settings = cls(**{f.name: getattr(self, f.name) for f in fields(cls) if f.init and hasattr(self, f.name)})
        if settings.batch_workers > 0:
            return settings
        return replace(settings, batch_workers=max(1, getattr(handler, "batch_workers", 1)))

    def apply_torch_allocator(self):
        """Hand PyTorch its allocator variables: it reads them once, at its first
        allocation, so call this before anything imports torch."""
        os.environ["THP_MEM_ALLOC_ENABLE"] = str(self.torch_huge_pages)

    def apply_malloc(self):
        """Limit glibc's malloc arenas: call it before the process starts threads."""
        from .allocator import limit_arenas

        limit_arenas(self.malloc_arena_max)

    def public(self) -> dict:
        """The settings worth a line in the start-up log."""
        return {k: v for k, v in self.__dict__.items() if k not in ("handler_module",)}
