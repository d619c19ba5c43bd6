"""The classifier's settings and constants, imported before libtorch loads.

ClassifierSettings reads the function's own environment variables (the
runtime's are in torchfaas.Settings). Importing this module sets
OMP_NUM_THREADS from TORCH_THREADS: compiled kernels size their OpenMP teams
from it, and OpenMP reads it once, when libtorch is first loaded (by
torchfaas.toolkit.libtorch, or by `import torch`), so every module of the
classifier imports this one first.
"""
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from torchfaas import env

BACKENDS = ("auto", "aoti", "eager")
PRECISIONS = ("fp32", "bf16")

ARCH = "efficientnet-lite0"
IMAGE_SIZE = 224
CROP_PADDING = 32
MEAN, STD = 127.0, 128.0
WEIGHTS, LABELS, PACKAGE = "weights.pt", "labels.json", "model.pt2"
BF16_PACKAGE = "model-bf16.pt2"
# model.pt2 with its convolution weights packed for oneDNN's AVX2 kernels, built beside it
# where the build machine packs for AVX-512: the layout an AVX2-only node serves fastest
AVX2_PACKAGE = "model-avx2.pt2"
HERE = Path(__file__).resolve().parent


def _backend(raw: str) -> str:
    backend = raw.lower()
    if backend not in BACKENDS:
        raise ValueError(f"MODEL_BACKEND must be one of {', '.join(BACKENDS)}, not {raw!r}")
    return backend


def _precision(raw: str) -> str:
    precision = raw.lower()
    if precision not in PRECISIONS:
        raise ValueError(f"MODEL_PRECISION must be one of {', '.join(PRECISIONS)}, not {raw!r}")
    return precision


@dataclass(frozen=True)
class ClassifierSettings:
    """The classifier's own environment variables (the runtime's are in torchfaas.Settings)."""
    # intra-op threads per forward pass (1, with two batch workers: docs/benchmarks.md, "The fast path")
    torch_threads: int = env("TORCH_THREADS", 1, int)
    # aoti: the compiled package or fail; eager: no package; auto: package, else eager
    model_backend: str = env("MODEL_BACKEND", "auto", _backend)
    # bf16: prepare() also builds a bf16 package (gated on its agreement with fp32),
    # load() serves it where the CPU has native bf16, else fp32 (docs/precision.md)
    model_precision: str = env("MODEL_PRECISION", "fp32", _precision)
    # JPEGs are decoded at 1/2-1/8 scale while the crop keeps this many x 224 pixels
    jpeg_draft_margin: float = env("JPEG_DRAFT_MARGIN", 2.0, float)
    # a batch of more images runs as near-equal forward passes of at most this many
    # (0: one pass per batch). Where 8 images' activations overflow the CPU's cache, one
    # pass of 8 costs 7-17% more per image than two of 4 (docs/benchmarks.md, "The fast path")
    max_forward_batch: int = env("MAX_FORWARD_BATCH", 6, int)
    max_topk: int = env("MAX_TOPK", 20, int)

    def __post_init__(self):
        _backend(self.model_backend)  # set in code rather than by MODEL_BACKEND: checked too
        _precision(self.model_precision)
        if self.max_forward_batch < 0:
            raise ValueError(f"MAX_FORWARD_BATCH must be 0 (one pass) or more, not {self.max_forward_batch}")


SETTINGS = ClassifierSettings()
os.environ.setdefault("OMP_NUM_THREADS", str(SETTINGS.torch_threads))


def log(message: str) -> None:
    # build time and start-up notes go to stderr: stdout belongs to the JSON log
    print(f"classifier: {message}", file=sys.stderr, flush=True)
