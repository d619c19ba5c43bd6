"""ImageNet classifier: EfficientNet-Lite0 with the preprocessing it was trained with.

This file is the handler: what the runtime calls, and the one to copy for a new
function. The rest of the classifier lives beside it, by job:
- config.py: its environment variables (ClassifierSettings) and constants;
- preprocessing.py: image -> the uint8 NHWC pixels the model takes (TF eval crop,
  bicubic resize, JPEG draft decoding);
- network.py: the network and its exact surgery, and the bf16 precision recipe;
- packages.py: the AOTInductor packages, compiled, cached and gated at build time;
- loading.py: the backend and precision chosen at cold start (MODEL_BACKEND,
  MODEL_PRECISION), the package served through libtorch's C ABI.
Nothing a request or the cold start runs imports torch (the eager fallback aside):
numpy arrays in and out (docs/benchmarks.md, "Cold start and memory per replica").
docs/benchmarks.md, "The fast path", and docs/precision.md have the numbers behind the choices.
"""
import json
from pathlib import Path

import numpy as np

from torchfaas import TOP1_PROBABILITY, BadRequest, ModelHandler, Settings
from torchfaas.allocator import release_free_memory
from torchfaas.toolkit import ImageSettings, image_bytes_from, open_image

from .config import ARCH, IMAGE_SIZE, LABELS, SETTINGS, ClassifierSettings, log
from .loading import load_model
from .preprocessing import to_pixels


class Classifier(ModelHandler):
    model_name = ARCH
    prediction_metrics = (TOP1_PROBABILITY,)  # torchfaas_top1_probability, from top1_prob
    settings_class = ImageSettings  # the runtime's settings + MAX_PIXELS
    # Two batches at a time, one thread each: the compiled model frees the GIL,
    # so on 2 cores this beats one batch on 2 threads (docs/benchmarks.md, "The fast path").
    # BATCH_WORKERS overrides it.
    batch_workers = 2
    # Decoding and resizing run in the batch worker, right before the forward
    # pass, rather than in 16 request threads contending for 2 cores: 6-24%
    # more at c4, up to 10% more at c16, 0.5-1.2 ms less CPU per request
    # (docs/benchmarks.md, "The fast path"). Decoding never waits on I/O: the body is in memory.
    preprocess_in_batch_worker = True

    def __init__(self, settings: ClassifierSettings = SETTINGS):
        self.own = settings
        self.model = None  # callable: uint8 [B, 224, 224, 3] -> probabilities [B, 1000]
        self.backend = self.fallback_reason = None
        self.precision = self.precision_reason = self.bf16_agreement = None  # loading.LoadedModel
        self.threads = None  # OpenMP threads per forward pass, as loaded
        self.packing: dict = {}  # the package that serves and its weights' layout (loading.LoadedModel)
        self.labels: list[str] = []
        self.max_pixels = 0  # MAX_PIXELS, from the runtime settings load() receives
        # BATCH_SIZE as load() receives it: the warm-up runs every size up to it
        self.warmup_sizes = 1
        self.warmup_thread = None  # warms batch sizes 2..BATCH_SIZE after warmup() returns

    # -- build time ------------------------------------------------------
    def prepare(self, artifacts_dir: Path, settings: Settings) -> None:
        from .packages import build_artifacts  # torch and the compiler: build time only

        build_artifacts(artifacts_dir, self.own)

    # -- cold start ------------------------------------------------------
    def load(self, artifacts_dir: Path, manifest: dict | None, settings: Settings) -> None:
        self.max_pixels = settings.max_pixels
        self.warmup_sizes = max(1, settings.batch_size)
        self.labels = json.loads((artifacts_dir / LABELS).read_text())
        loaded = load_model(artifacts_dir, manifest or {}, self.own, settings.batch_workers)
        self.model, self.backend, self.fallback_reason = loaded.model, loaded.backend, loaded.fallback_reason
        self.precision, self.precision_reason = loaded.precision, loaded.precision_reason
        self.bf16_agreement = loaded.bf16_agreement
        self.packing = {"package": loaded.package, "packed_for": loaded.packed_for,
                        "packing_reason": loaded.packing_reason}
        # TORCH_THREADS, through OMP_NUM_THREADS (config) or torch.set_num_threads (eager)
        self.threads = loaded.threads

    def load_info(self) -> dict:
        """Extra fields for the model_loaded log line."""
        return {"backend": self.backend, "fallback_reason": self.fallback_reason,
                "precision": self.precision, "precision_reason": self.precision_reason,
                "bf16_top1_agreement": self.bf16_agreement, "torch_threads": self.threads, **self.packing}

    def warmup(self) -> None:
        # The first forward pass at each batch size sets up that shape's oneDNN
        # primitives: with the frozen package 10-30 ms of CPU more than later
        # passes (batch 2, 4, 6, 7, 8; batch 3 and 5 nothing measurable), shared
        # by the package's model instances (docs/benchmarks.md, "The fast path"). Batch 1 runs
        # here, before ready (it also pays the one-time set-up: thread pool,
        # allocator). Every other size the batcher can form (2..BATCH_SIZE) runs
        # once in a background thread right after: run before ready they cost
        # ~0.5 s of every cold start (measured: warm-up 550 ms instead of 35 ms)
        # to save at most ~30 ms on each of the first few batches. A batch the
        # batcher forms meanwhile waits for at most one warm-up pass.
        import threading

        image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        self.predict([image])
        # not a daemon: a process stopped during the warm-up (SIGTERM right after ready)
        # waits for it at exit; a daemon thread still inside the compiled model while
        # the interpreter finalizes aborted the process ("terminate called without an
        # active exception", exit -6; 1 of 8 quick start-stop cycles)
        self.warmup_thread = threading.Thread(target=self._warm_sizes, name="classifier-warmup", daemon=False,
                                              args=(image, range(2, self.warmup_sizes + 1)))
        self.warmup_thread.start()

    def _warm_sizes(self, image, sizes) -> None:
        for size in sizes:
            try:
                self.predict([image] * size)
            except Exception as exc:  # the request path reports its own errors; this one only logs
                log(f"warm-up at batch {size} failed: {type(exc).__name__}: {exc}")
                break
        # the activations of batches up to BATCH_SIZE, freed: back to the kernel rather than
        # held for sizes that may not come (an idle replica: ~70-90 MB less;
        # docs/benchmarks.md, "Cold start and memory per replica")
        release_free_memory()

    # -- per request -----------------------------------------------------
    def preprocess(self, request):
        request.params["topk"] = parse_topk(request.query, self.own.max_topk)
        data = image_bytes_from(request.body, request.content_type)
        return to_pixels(open_image(data, self.max_pixels), self.own.jpeg_draft_margin)

    def predict(self, items: list) -> list:
        """uint8 [224, 224, 3] images -> float32 [1000] probabilities, one array each."""
        outputs = []
        for start, stop in forward_passes(len(items), self.own.max_forward_batch):
            outputs.extend(self.model(np.stack(items[start:stop])))  # one copy: uint8 [B, 224, 224, 3]
        return outputs

    def postprocess(self, output: np.ndarray, request) -> dict:
        indices = top_indices(output, request.params["topk"])
        return {"predictions": [
            {"label": self.labels[i], "class_index": i, "probability": round(p, 6)}
            for p, i in zip(output[indices].tolist(), indices.tolist())]}

    def log_fields(self, output: np.ndarray) -> dict:
        index = int(output.argmax())
        return {"top1_class": self.labels[index], "top1_prob": round(float(output[index]), 4)}

    def metadata(self) -> dict:
        return {"input": {"content_types": ["image/jpeg", "image/png", "image/webp",
                                            "application/octet-stream", "application/json"],
                          "image_size": IMAGE_SIZE},
                "classes": len(self.labels), "max_topk": self.own.max_topk, "backend": self.backend,
                "precision": self.precision}


def forward_passes(count: int, most: int) -> list[tuple[int, int]]:
    """[start, stop) of each forward pass for a batch of `count`: as few passes of at
    most `most` images as there can be, their sizes within one of each other."""
    passes = max(1, -(-count // most)) if most > 0 else 1
    bounds = [count * k // passes for k in range(passes + 1)]
    return list(zip(bounds, bounds[1:]))


def top_indices(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The indices of the `k` largest probabilities, largest first (ties: the lower index first)."""
    return np.argsort(-probabilities, kind="stable")[:k]


def parse_topk(query, limit: int) -> int:
    raw = query.get("topk", "5")
    # ASCII digits only: "²".isdigit() is True but int("²") raises (a 500, not a 400)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= limit:
        raise BadRequest(f"topk must be an integer from 1 to {limit}", code="invalid_topk")
    return int(raw)
