"""The request lifecycle around a handler: readiness, batching, inference.

The runtime is the one object the HTTP layer talks to. It loads the handler's
model once, reports readiness only after warm-up, and turns one request into
preprocess -> batched predict -> postprocess, and returns how that ended (an
`Outcome`: the answer or the error, and what the log line says about the run).
Every handler is a `ModelHandler` by then (a plain `handle(event, context)` module
is adapted at load, torchfaas.plain_handler); one that is not `batched` has no
batcher and predicts in the request's own thread.
"""
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import artifacts
from .allocator import release_free_memory
from .batching import Batcher, BatchFuture, BatchInfo, BatchStats
from .errors import ClientGone, InferenceTimeout, NotReady, QueueFull
from .identity import CurrentModel, ModelIdentity
from .model_handler import InferenceRequest, ModelHandler
from .settings import Settings
from .startup import StartupPhases

STARTING, READY, DRAINING, STOPPING, FAILED = "starting", "ready", "draining", "stopping", "failed"
# how often a request waiting for its batch looks whether its client hung up
CLIENT_POLL_S = 0.05


@dataclass
class Outcome:
    """How one request's run through the model ended: its answer, or the error it is
    answered with, and what its log line and metrics say about the run."""
    body: Any = None  # postprocess()'s answer: a dict, or a plain handler's Response
    error: Exception | None = None
    batch: BatchInfo | None = None  # the batch that served it (batched handlers)
    # its batch failed and it was re-run in a smaller one: said on a failure too
    retried: bool = False
    handler_fields: dict | None = None  # the handler's log_fields(output)


class Runtime:
    """`settings` are the handler's own, worked out by `Settings.for_handler`."""

    def __init__(self, settings: Settings, handler: ModelHandler, events, model: CurrentModel,
                 process_started: float, artifact_check=None, startup: StartupPhases | None = None):
        self.settings = settings
        self.handler = handler
        self.events = events
        self.model = model
        self.process_started = process_started
        # artifacts.verify_in_background() started before the handler's imports, or None
        self._artifact_check = artifact_check
        self.startup = startup  # the phases before the load, for model_loaded (server.main)
        self.state = STARTING
        self.batcher: Batcher | None = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        # set by load(): load/warmup/cold-start seconds for the metrics
        self.load_times: dict[str, float] = {}
        # until the model loads, cold-start lines and 503s name the declared
        # model, and the pinned version if MODEL_VERSION is set
        model.loaded(handler.model_name, self.settings.model_version or model.identity.model_version)

    # -- lifecycle -------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def identity(self) -> ModelIdentity:
        """The model answers and log lines name now."""
        return self.model.identity

    def metadata(self) -> dict:
        """GET /: the model, the build, readiness and the handler's own fields."""
        return {**self.identity.fields(), "source_commit": self.settings.source_commit or None,
                "ready": self.ready, "batch_size": self.settings.batch_size, **self.handler.metadata()}

    def load(self) -> bool:
        """Load and warm up the model; log model_loaded or startup_failed."""
        load_started, t0 = time.time(), time.perf_counter()
        try:
            self._load_model()
            load_ms = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
            self.handler.warmup()
            if self.handler.batched:
                prepare = self.handler.preprocess if self.handler.preprocess_in_batch_worker else None
                self.batcher = Batcher.from_settings(self.handler.predict, self.settings, prepare).start()
            # what load() and warmup() freed (a state dict, a warm-up's activations) goes
            # back to the kernel, not kept in malloc's arenas for nothing
            release_free_memory()
            warmup_ms = (time.perf_counter() - t1) * 1000
        except Exception as exc:
            self.state = FAILED
            self.events.emit("startup_failed", f"model failed to load: {exc}", logging.ERROR,
                             error=type(exc).__name__, error_message=str(exc)[:500],
                             trace=traceback.format_exc(limit=20))
            return False
        cold_start_s = time.time() - self.process_started
        self.load_times = {"load": load_ms / 1000, "warmup": warmup_ms / 1000, "cold_start": cold_start_s}
        if self.state == STARTING:
            self.state = READY
        phases = self.startup.fields(load_started) if self.startup is not None else {}
        self.events.emit("model_loaded", "model loaded", source_commit=self.settings.source_commit or None,
                         **phases, load_ms=round(load_ms, 2),
                         warmup_ms=round(warmup_ms, 2), cold_start_ms=round(cold_start_s * 1000, 2),
                         **self.handler.load_info())
        return True

    def _load_model(self):
        artifacts_dir = Path(self.settings.artifacts_dir)
        manifest = None
        if (artifacts_dir / artifacts.MANIFEST).is_file():
            # checked before anything is deserialised: a swapped file never loads
            check, self._artifact_check = self._artifact_check, None
            manifest = check.result() if check is not None else artifacts.read_verified_manifest(artifacts_dir)
        elif artifacts_dir.is_dir() and any(artifacts_dir.iterdir()):
            # deleting the manifest must not be a way around the hash check
            raise artifacts.ArtifactError(f"no {artifacts.MANIFEST} in {artifacts_dir}: "
                                          "refusing to load unverified artifacts")
        self.handler.load(artifacts_dir, manifest, self.settings)
        manifest_hash = artifacts.manifest_version(manifest) if manifest else ""
        version = (self.settings.model_version or self.handler.model_version
                   or manifest_hash or "unversioned")
        self.model.loaded(self.handler.model_name, version, manifest_hash.removeprefix("sha256-"))

    def begin_drain(self):
        if self.state in (STARTING, READY):
            self.state = DRAINING

    def stop_accepting(self):
        self.state = STOPPING

    def stop(self):
        """After the last request: the batch workers end."""
        if self.batcher is not None:
            self.batcher.stop()

    # -- requests --------------------------------------------------------
    # requests to the function in the app (probes and scrapes excluded): the
    # in-flight gauge, and what the drain waits for
    def enter(self):
        with self._inflight_lock:
            self._inflight += 1

    def leave(self):
        with self._inflight_lock:
            self._inflight -= 1

    @property
    def inflight(self) -> int:
        return self._inflight

    def queue_depth(self) -> int:
        return self.batcher.depth() if self.batcher is not None else 0

    @property
    def batch_stats(self) -> BatchStats | None:
        """The batcher's failure and re-run counters; None without a batcher."""
        return self.batcher.stats if self.batcher is not None else None

    def route(self, method: str, path: str) -> str:
        """What a request asks for, "inference" or "metadata" (the handler's `route`)."""
        return self.handler.route(method, path)

    def check_serving(self):
        if self.state == STOPPING:
            raise NotReady("function is shutting down", code="draining")
        if self.state in (STARTING, FAILED):
            raise NotReady("model is not loaded yet", code="not_ready")

    def infer(self, request: InferenceRequest, client_gone: Callable[[], bool] | None = None) -> Outcome:
        """Run one request through the model; how it ended, never raised.

        `client_gone()` (waitress's `waitress.client_disconnected`) says the client
        hung up: such a request is not preprocessed, or is taken out of its batch if
        that has not started (ClientGone, 499, nobody to answer).
        """
        outcome = Outcome()
        try:
            self.check_serving()
            handler = self.handler
            if self.batcher is None:  # not batched (handler.batched): run here, in the request's thread
                output = handler.predict([handler.preprocess(request)])[0]
            else:
                future = self._batch_done(request, client_gone)
                outcome.retried = future.retried  # a failure raises below: the line still says so
                output, outcome.batch = future.result()
            outcome.handler_fields = handler.log_fields(output)
            outcome.body = handler.postprocess(output, request)
        except Exception as exc:
            outcome.error = exc
        return outcome

    def _batch_done(self, request: InferenceRequest, client_gone) -> BatchFuture:
        """The request queued for a batch, once that batch has answered it."""
        handler = self.handler
        if client_gone is not None and client_gone():
            raise ClientGone("the client hung up before inference")
        if self.batcher.depth() >= self.settings.queue_size:
            # before preprocessing: an overloaded replica says so cheaply
            raise QueueFull(self.settings.retry_after_s)
        if handler.preprocess_in_batch_worker:
            future = self.batcher.submit(request)  # preprocessed by the batch worker
        else:
            # announced while preprocessing: the batcher waits for this item only if
            # one is on its way (a lone request never sits out BATCH_DELAY_MS)
            with self.batcher.arriving():
                future = self.batcher.submit(handler.preprocess(request))
        self._wait(future, client_gone)
        return future

    def _wait(self, future, client_gone):
        """Until `future` is done; withdraw it on the inference timeout or a gone client."""
        deadline = time.monotonic() + self.settings.inference_timeout_ms / 1000
        while True:
            remaining = deadline - time.monotonic()
            try:
                # exception(), not result(): a predict() that raised TimeoutError is
                # a fault, not our timeout
                future.exception(min(remaining, CLIENT_POLL_S) if client_gone else remaining)
                return
            except FutureTimeout:
                pass
            if time.monotonic() >= deadline:
                self.batcher.withdraw(future)  # not computed (or re-run) any more
                raise InferenceTimeout(
                    f"inference took longer than {self.settings.inference_timeout_ms:g} ms") from None
            if client_gone is not None and client_gone():
                if self.batcher.withdraw(future):
                    raise ClientGone("the client hung up before its batch ran")
                client_gone = None  # its batch is running: wait for it, the answer is logged
