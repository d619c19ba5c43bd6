"""What a function declares: the model lifecycle.

A torchfaas handler subclasses `ModelHandler`, defines `load` and `predict`
(abstract: a handler without them fails when it is made, naming what it lacks)
and overrides the other hooks it needs; every hook the runtime calls is declared
here, the optional ones with their defaults. The runtime owns the request
lifecycle (ids, limits, batching, errors, the log line):

    prepare(artifacts_dir, settings)          image build time: export/compile the model
    load(artifacts_dir, manifest, settings)   required: once at cold start, before /ready says 200
    load_info() -> dict                       extra fields for the model_loaded line
    warmup()                                  once after load, still before ready
    preprocess(request)                       per request, in the request's thread
                                              (or the batch worker's: see below)
    predict(items) -> list                    required: per batch, preprocessed items -> outputs
    postprocess(output, request) -> dict      the JSON response body
    log_fields(output) -> dict                extra fields for the log line (top1_class,
                                              instances, prediction_mean, ...)
    metadata() -> dict                        extra fields for GET /
    route(method, path) -> str                what a request asks for: "inference" or
                                              "metadata" (default: POST / and GET /;
                                              404/405 for the rest)

Class attributes: `model_name`, `model_version` (None: the manifest's hash names
the version), `batch_workers` (batches run side by side; BATCH_WORKERS wins) and
`preprocess_in_batch_worker` (False: each request preprocesses in its own thread
before it queues; True: it queues raw and the batch worker preprocesses it just
before the forward pass, for CPU-bound preprocessing such as image decoding; never
for preprocessing that waits on I/O, which would stall the forward passes), and
`batched` (False: no batcher, `predict([item])` runs in the request's own thread;
the plain python3-http adapter, torchfaas.plain_handler).
`prediction_metrics` lists the Prometheus series fed from `log_fields()` of 200
answers (torchfaas.predictions: a value histogram, a label counter); the runtime
adds no prediction metric of its own. `settings_class` opts into settings beyond
the runtime's own (image functions: `toolkit.images.ImageSettings`, MAX_PIXELS).
Tools for writing one (image decoding and limits, manifests, AOTInductor
packages) are in `torchfaas.toolkit`.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MethodNotAllowed, NotFound
from .request_id import sanitise
from .settings import Settings


@dataclass
class InferenceRequest:
    body: bytes
    content_type: str
    headers: Any
    query: Any
    request_id: str
    method: str = "POST"
    path: str = "/"
    # preprocess() may keep parsed per-request options here for postprocess()
    params: dict = field(default_factory=dict)


class ModelHandler(ABC):
    """The model lifecycle a function declares (the hooks: see the module docstring).

    A minimal one, with no artifacts (a real one loads its weights from
    `artifacts_dir` and writes them there in prepare())::

        import json
        import torch
        from torchfaas import BadRequest, ModelHandler

        class Handler(ModelHandler):
            model_name = "softmax"

            def load(self, artifacts_dir, manifest, settings):
                self.model = torch.nn.Softmax(dim=-1)

            def preprocess(self, request):  # one request -> one model input
                try:
                    return torch.tensor(json.loads(request.body)["scores"], dtype=torch.float32)
                except (ValueError, KeyError, TypeError):
                    raise BadRequest('send {"scores": [numbers]}') from None

            def predict(self, items):  # a batch of inputs -> one output each, in order
                with torch.inference_mode():
                    return list(self.model(torch.stack(items)))

            def postprocess(self, output, request):  # one output -> the JSON answer
                return {"probabilities": output.tolist()}
    """

    model_name: str = "model"
    # None: the runtime names the version after the verified manifest's hash
    # (MODEL_VERSION overrides both)
    model_version: str | None = None
    # batches run side by side: more than 1 suits a model that frees the GIL
    batch_workers: int = 1
    # where preprocess() runs (see the module docstring)
    preprocess_in_batch_worker: bool = False
    # False: no batcher; predict([item]) runs in the request's thread
    batched: bool = True
    # Prometheus series fed from log_fields() (torchfaas.predictions)
    prediction_metrics: tuple = ()
    # the settings the runtime builds for it: Settings, or a subclass adding what this
    # kind of function needs (toolkit.images.ImageSettings: MAX_PIXELS)
    settings_class: type = Settings

    def prepare(self, artifacts_dir: Path, settings: Settings) -> None:  # noqa: B027 (optional: no-op)
        """Build time: write artifacts (and their manifest) into `artifacts_dir`."""

    @abstractmethod
    def load(self, artifacts_dir: Path, manifest: dict | None, settings: Settings) -> None:
        """Cold start: load the model. `manifest` was verified against every file
        it lists before this call (None when the function has no artifacts)."""

    def load_info(self) -> dict:
        """Extra fields for the model_loaded log line (e.g. which backend loaded)."""
        return {}

    def warmup(self) -> None:  # noqa: B027 (optional: no-op)
        """Run the model once or more so the first request is not slow."""

    def preprocess(self, request: InferenceRequest) -> Any:
        """One request -> one model input; raise BadRequest & co. for client mistakes."""
        return request.body

    @abstractmethod
    def predict(self, items: list) -> list:
        """A batch of preprocessed items -> one output per item, in order."""

    def postprocess(self, output: Any, request: InferenceRequest) -> dict:
        """One output -> the JSON response body."""
        return {"output": output}

    def log_fields(self, output: Any) -> dict:
        """Extra fields for the request's log line."""
        return {}

    def metadata(self) -> dict:
        """Extra fields for GET / (input types, labels count, ...)."""
        return {}

    def route(self, method: str, path: str) -> str:
        """What a request asks for: "inference" (POST /) or "metadata" (GET /).
        `path` is the request's path without its leading slash."""
        if path:
            raise NotFound(f"no such path /{sanitise(path, 64)}; POST to / for inference")
        if method == "GET":
            return "metadata"
        if method != "POST":
            raise MethodNotAllowed(f"{method} is not allowed; POST an input to /",
                                   headers={"Allow": "GET, POST"})
        return "inference"
