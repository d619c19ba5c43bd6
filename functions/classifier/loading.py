"""The cold start: which compiled package serves, loaded without the torch Python package.

MODEL_BACKEND=auto|aoti|eager picks the backend (`auto` falls back to the eager
network, channels_last, when the package is missing or does not load);
MODEL_PRECISION=bf16 serves the bf16 package only on CPUs with native bf16, else
fp32 with the reason. An fp32 package is picked by the layout its convolution weights
were packed in: model-avx2.pt2 on a CPU whose oneDNN runs AVX2 kernels, when the
build made one, else model.pt2 (a layout that is not this CPU's is reordered at every
forward pass, and model_loaded says so in `packing_reason`). A package is served
through `torchfaas.toolkit.libtorch` (libtorch's C ABI, numpy arrays in and out):
nothing on this path imports torch, which would add about 1 s to the cold start and
80 MB to the replica (docs/benchmarks.md, "Cold start and memory per replica"); only
the eager fallback does, when it is used. The packages themselves are built at image
build time (packages.py).
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchfaas.toolkit import libtorch
from torchfaas.toolkit.precision_gate import Bounds, failures

from .config import AVX2_PACKAGE, BF16_PACKAGE, PACKAGE, WEIGHTS, log

# the bf16 package ships only if it passes the accuracy gate against fp32 on real
# photos (torchfaas.toolkit.precision_gate; bounds and why in docs/precision.md)
BF16_GATE = Bounds()
# native bf16 arithmetic: oneDNN runs bf16 convolutions with these (toolkit.compiled.BF16_FEATURES)
BF16_FEATURES = ("amx_bf16", "avx512_bf16")


@dataclass
class LoadedModel:
    model: object  # callable: uint8 [B, 224, 224, 3] array -> probabilities [B, 1000] array
    backend: str  # "aoti" or "eager"
    precision: str = "fp32"  # what serves: "fp32" or "bf16"
    precision_reason: str | None = None  # why not the MODEL_PRECISION asked for, if not
    fallback_reason: str | None = None  # why not the compiled package, if eager under auto
    bf16_agreement: float | None = None  # the served bf16 package's measured top-1 agreement
    threads: int | None = None  # OpenMP threads per forward pass (TORCH_THREADS)
    package: str | None = None  # the compiled package that serves (None: eager)
    packed_for: str | None = None  # the oneDNN layout of its convolution weights: "AVX2", "AVX512"
    packing_reason: str | None = None  # why that layout is not this CPU's, if not


def onednn_bf16_capped() -> bool:
    """Whether oneDNN is held below its bf16 kernels (ONEDNN_MAX_CPU_ISA, read when
    libtorch loads: AVX2, AVX512_CORE, ... have none; AVX512_CORE_BF16, the AMX ISAs
    and ALL keep them), as torch.ops.mkldnn._is_mkldnn_bf16_supported() would say."""
    cap = libtorch.onednn_cap()
    return bool(cap) and "BF16" not in cap and "AMX" not in cap


def bf16_feature() -> str:
    """The CPU feature that makes bf16 fast here ("amx_bf16" or "avx512_bf16"), or ""."""
    return next((f for f in BF16_FEATURES if f in libtorch.cpu_flags()), "")


def load_model(artifacts_dir: Path, manifest: dict, own, concurrent_batches: int) -> LoadedModel:
    """The model `own` (ClassifierSettings) asks for, or the fallback it allows."""
    loaded = choose_model(artifacts_dir, manifest, own, concurrent_batches)
    loaded.threads = libtorch.openmp_threads()
    return loaded


def choose_model(artifacts_dir: Path, manifest: dict, own, concurrent_batches: int) -> LoadedModel:
    backend, precision_reason = own.model_backend, None
    if own.model_precision == "bf16":
        precision_reason = ("MODEL_BACKEND=eager: the eager model serves fp32" if backend == "eager"
                            else bf16_unavailable(artifacts_dir, manifest))
        if precision_reason:
            log(f"MODEL_PRECISION=bf16 not used, serving fp32: {precision_reason}")
        else:
            try:
                return LoadedModel(load_aoti(artifacts_dir, manifest, concurrent_batches, BF16_PACKAGE), "aoti",
                                   "bf16", bf16_agreement=manifest.get("bf16_top1_agreement"),
                                   package=BF16_PACKAGE)
            except Exception as exc:  # e.g. a package this torch cannot load: fp32 serves
                precision_reason = f"{BF16_PACKAGE} did not load: {type(exc).__name__}: {exc}"[:300]
                log(f"MODEL_PRECISION=bf16 not used, serving fp32: {precision_reason}")
    fallback_reason = None
    if backend in ("auto", "aoti"):
        package, packed_for, packing_reason = fp32_package_here(manifest)
        try:
            return LoadedModel(load_aoti(artifacts_dir, manifest, concurrent_batches, package), "aoti",
                               precision_reason=precision_reason, package=package, packed_for=packed_for,
                               packing_reason=packing_reason)
        except Exception as exc:
            if backend == "aoti":
                raise
            fallback_reason = f"{type(exc).__name__}: {exc}"[:300]
            log(f"compiled model not used, falling back to eager: {fallback_reason}")
    return LoadedModel(load_eager(artifacts_dir, own.torch_threads), "eager", precision_reason=precision_reason,
                       fallback_reason=fallback_reason)


def fp32_package_here(manifest: dict) -> tuple[str, str | None, str | None]:
    """(package, the layout its weights were packed in, why that is not this CPU's or None):
    model-avx2.pt2 where oneDNN runs AVX2 kernels and the build made one, else model.pt2
    (what the other layout costs: docs/benchmarks.md, "The fast path")."""
    here = libtorch.onednn_packing()
    if here == "AVX2" and AVX2_PACKAGE in manifest.get("files", {}):
        return AVX2_PACKAGE, "AVX2", None
    packed = manifest.get("aoti_packed_for")
    if not packed or packed == here:
        return PACKAGE, packed, None
    why = (f"{PACKAGE}'s convolution weights are packed for {packed} (the build machine's), this CPU's oneDNN runs "
           f"{here}: they are reordered at every forward pass (1.9x the time at batch 1)")
    if packed == "AVX512":
        why += f"; no {AVX2_PACKAGE} in the artifacts: {manifest.get('avx2_not_built', 'not built')}"
    else:
        why += "; build the image on an AVX-512 machine to pack for both"
    return PACKAGE, packed, why[:400]


def bf16_unavailable(artifacts_dir: Path, manifest: dict) -> str | None:
    """Why the bf16 package cannot serve here (None: it can)."""
    if not bf16_feature():
        return (f"this CPU has no native bf16 (none of {', '.join(BF16_FEATURES)}; "
                f"{libtorch.cpu_capability()}): bf16 would be slower than fp32")
    if onednn_bf16_capped():
        return (f"this CPU has no native bf16 for oneDNN (ONEDNN_MAX_CPU_ISA={libtorch.onednn_cap()}; "
                f"{libtorch.cpu_capability()}): bf16 would be slower than fp32")
    if BF16_PACKAGE not in manifest.get("files", {}):
        if manifest.get("bf16_not_built"):
            return f"no {BF16_PACKAGE} in the artifacts: {manifest['bf16_not_built']}"[:300]
        return f"no {BF16_PACKAGE} in the artifacts (build with MODEL_PRECISION=bf16)"
    gate = manifest.get("bf16_gate")
    if not isinstance(gate, dict) or gate.get("passed") is not True or failures(gate, BF16_GATE):
        return f"{BF16_PACKAGE} has no passing accuracy gate in the manifest ({gate!r})"[:300]
    return None


def load_aoti(artifacts_dir: Path, manifest: dict, concurrent_batches: int, package: str = PACKAGE):
    path = artifacts_dir / package
    if not path.is_file():
        raise FileNotFoundError(f"no {package} in {artifacts_dir}")
    isa = manifest.get({PACKAGE: "aoti_isa", AVX2_PACKAGE: "avx2_isa"}.get(package, "bf16_isa"), "")
    if not libtorch.cpu_runs(isa):
        # loading it would end in SIGILL at the first request, past any fallback
        raise RuntimeError(f"{package} needs {isa}; this CPU has {libtorch.cpu_capability()}")
    # the runtime has checked the package against the manifest before load()
    compiled = libtorch.CompiledPackage(path, num_models=max(1, concurrent_batches))
    return lambda pixels: compiled(pixels)[0]


def load_eager(artifacts_dir: Path, threads: int):
    """The network itself in torch (imported here, on this rare path only), channels_last."""
    import torch

    from .network import ServedModel, build_network

    torch.set_num_threads(threads)
    served = ServedModel(build_network(artifacts_dir / WEIGHTS)).eval()
    served.net.to(memory_format=torch.channels_last)

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return served(torch.from_numpy(pixels)).numpy()

    return run
