"""What a function declares: the model lifecycle.

A torchfaas handler subclasses `ModelHandler`. The runtime owns the request
lifecycle (ids, limits, batching, errors, the log line) and calls:

    prepare(artifacts_dir)   at image build time: export/compile the model
    load(artifacts_dir)      once at cold start, before /ready says 200
    warmup()                 once after load, still before ready
    preprocess(request)      per request, in the request's thread
    predict(items)           per batch: a list of preprocessed items -> outputs
    postprocess(output, request) -> dict    the JSON response body
    log_fields(output) -> dict              extra fields for the log line
                                            (e.g. top1_class, top1_prob)
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


class ModelHandler:
    # the runtime sets this before load(): limits such as max_pixels live there
    settings = None
    model_name = "model"
    # None: the runtime derives the version from the loaded artifact (see version())
    model_version: str | None = None

    def prepare(self, artifacts_dir: Path) -> None:
        """Build-time preparation; default: nothing to prepare."""

    def load(self, artifacts_dir: Path) -> None:
        raise NotImplementedError

    def warmup(self) -> None:
        """Run the model once or more so the first request is not slow."""

    def preprocess(self, request: InferenceRequest) -> Any:
        return request.body

    def predict(self, items: list) -> list:
        raise NotImplementedError

    def postprocess(self, output: Any, request: InferenceRequest) -> dict:
        return {"output": output}

    def log_fields(self, output: Any) -> dict:
        return {}

    def metadata(self) -> dict:
        """Extra fields for GET / (input types, labels count, ...)."""
        return {}
