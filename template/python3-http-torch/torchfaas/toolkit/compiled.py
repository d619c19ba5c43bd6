"""Build-time compiled models: torch.export + AOTInductor packages.

At image build time `compile_package()` exports a module with a dynamic batch
dimension and compiles it with AOTInductor into one `.pt2` file (a zip holding
a shared library and the weights). It needs a C++ compiler, so it runs in the
Dockerfile's build stage only.

At cold start `CompiledModel(path)` unpacks the package's shared library and
creates its model container through the package's C ABI: no compiler, no
`torch._inductor` import (`torch._inductor.aoti_load_package` costs ~0.8 s
more, as it imports the compiler), about 0.02 s. See CompiledModel for why the
forward pass is not called through `torch._C._aoti.AOTIModelPackageLoader`.
A handler that needs no torch of its own serves the same package without importing
torch at all: `toolkit.libtorch.CompiledPackage` (numpy arrays in and out).
"""
import contextlib
import ctypes
import json
import os
import platform
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch


class AOTIError(RuntimeError):
    pass


def _capsule_api():
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return get, new


class CompiledModel:
    """A loaded AOTInductor package: `model(*tensors)` -> list of tensors.

    torch's own runners (`AOTIModelPackageLoader.run`, `AOTIModelContainerRunnerCpu.run`)
    hold the GIL for the whole forward pass, so while a batch runs no request
    thread can parse, decode or answer. This calls the package's C ABI
    (`AOTInductorModelContainerRun`) through ctypes, which releases the GIL,
    with tensors passed as the same AtenTensorHandles torch's runner uses.
    `num_models` forward passes can run at the same time.
    """

    def __init__(self, path: str | os.PathLike, model_name: str = "model", num_models: int = 1):
        self.path = str(path)
        with zipfile.ZipFile(self.path) as archive:
            libraries = [n for n in archive.namelist()
                         if n.endswith(".so") and f"/data/aotinductor/{model_name}/" in f"/{n}"]
            if len(libraries) != 1:
                raise AOTIError(f"{self.path}: expected one shared library for {model_name!r}, found {libraries}")
            # unpacked to a scratch directory that is deleted as soon as the library
            # is mapped: nothing piles up in /tmp across restarts
            scratch = tempfile.mkdtemp(prefix="torchfaas-aoti-")
            try:
                library = archive.extract(libraries[0], scratch)
                self._lib = ctypes.CDLL(library)  # CDLL: the GIL is released during calls
                container = ctypes.c_void_p()
                self._check(self._lib.AOTInductorModelContainerCreateWithDevice(
                    ctypes.byref(container), ctypes.c_size_t(num_models), b"cpu", None), "create")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        self._container = container
        outputs = ctypes.c_size_t()
        self._check(self._lib.AOTInductorModelContainerGetNumOutputs(container, ctypes.byref(outputs)),
                    "get_num_outputs")
        self._num_outputs = outputs.value
        self._run = self._lib.AOTInductorModelContainerRun
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        self._get_pointer, self._new_capsule = _capsule_api()

    @staticmethod
    def _check(code: int, what: str):
        if code != 0:
            raise AOTIError(f"AOTInductor {what} failed (error {code})")

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        # the compiled kernels index their inputs as contiguous, and nothing checks strides
        # on this path: a transposed view would be read as garbage, not refused
        tensors = [t.contiguous() for t in tensors]
        # new handles the model takes ownership of ("steals"), as torch's runner does
        handles = torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(tensors)
        inputs = (ctypes.c_void_p * len(handles))(*(self._get_pointer(h, None) for h in handles))
        outputs = (ctypes.c_void_p * self._num_outputs)()
        self._check(self._run(self._container, inputs, len(handles), outputs, self._num_outputs,
                              None, None), "run")
        return torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(
            [self._new_capsule(outputs[i], None, None) for i in range(self._num_outputs)])


# Vector ISAs in increasing order; a package built for one runs on CPUs with it or a later one.
ISA_ORDER = ["DEFAULT", "AVX2", "AVX512"]


def portable_x86_configs(simdlen: int = 256, march: str = "x86-64-v3") -> dict:
    """Inductor options that make an x86 package portable and its build deterministic.

    By default Inductor compiles with -march=native and the widest ISA of the
    build machine (a package built on an AVX-512 host dies with SIGILL on an
    AVX2 node), and it picks the ISA by test-compiling a probe, which can fail
    under load and silently yield scalar code (3x slower). x86-64-v3 (AVX2+FMA,
    every x86 server since 2013) with 256-bit vectors avoids both; the
    convolutions themselves run in oneDNN, which dispatches at run time anyway.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    return {"cpp.march": march, "cpp.simdlen": simdlen, "cpp.vec_isa_ok": True}


def package_isa(path: str | os.PathLike) -> str:
    """The vector ISA a package's kernels were compiled for, e.g. "AVX2"; "" if scalar."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("_metadata.json"):
                isa = json.loads(archive.read(name)).get("AOTI_CPU_ISA", "")
                return "" if "INVALID" in isa.upper() else isa.split()[0] if isa else ""
    return ""


def cpu_supports(isa: str) -> bool:
    """Can this CPU run code built for `isa`? (torch's own run-time CPU capability)"""
    if isa not in ISA_ORDER[1:]:
        return True  # scalar, or a non-x86 ISA this check does not judge
    capability = torch.backends.cpu.get_cpu_capability().upper()
    have = next((i for i, name in enumerate(ISA_ORDER) if capability.startswith(name)), 0)
    return have >= ISA_ORDER.index(isa)


def cpu_features() -> set[str]:
    """The CPU's feature flags (e.g. "avx512_bf16", "amx_bf16"), as torch's cpuinfo sees them.

    Falls back to /proc/cpuinfo's flags when this torch has no such query.
    """
    try:
        return {name for name, value in torch._C._cpu._get_cpu_capability().items() if value is True}
    except (AttributeError, RuntimeError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# native bf16 arithmetic: oneDNN runs bf16 convolutions with these; without them
# it emulates bf16 in fp32 registers, slower than plain fp32
BF16_FEATURES = ("amx_bf16", "avx512_bf16")


def bf16_feature() -> str:
    """The CPU feature that makes bf16 fast here ("amx_bf16" or "avx512_bf16"), or ""."""
    have = cpu_features()
    return next((f for f in BF16_FEATURES if f in have), "")


@contextlib.contextmanager
def conv_weights_packed_for_dynamic_batch():
    """While compiling: let Inductor's freezing pack convolution weights into oneDNN's
    blocked layout even though the batch dimension is dynamic.

    Inductor packs a convolution's weight at freeze time only when the input shape is
    fully static; with a dynamic batch it leaves the weight plain ("pack weight in
    runtime"), and oneDNN then reorders every weight at every forward pass (49 reorders
    a pass here, ONEDNN_VERBOSE). The blocked layout depends on the channels, kernel and
    ISA, not on the batch, so this packs for the batch's size hint (the example's), as
    Inductor already does for linear weights. Measured (fp32, one thread): no reorder
    left at batch 1, 3, 4 or 8; the same answers (max difference 0); batch 1 17.5-18.0
    vs 20.5-20.9 ms, batch 4 12.7-13.4 vs 13.1-13.6 ms per image (docs/benchmarks.md, "The fast path").
    The layout is the build machine's: where oneDNN picks another ISA at run time (held
    to AVX2 by ONEDNN_MAX_CPU_ISA on this AVX-512 machine) it reorders the weights per
    pass as before, with the same answers (tests/speed/test_frozen.py).
    Build time only; on a torch whose Inductor lacks these hooks it changes nothing.
    """
    try:
        from torch._inductor.fx_passes import mkldnn_fusion
        from torch.fx.experimental.symbolic_shapes import optimization_hint

        free, pack = mkldnn_fusion.has_free_symbols, mkldnn_fusion.CpuMkldnnDeviceOp.pack_conv_weight
    except (ImportError, AttributeError):
        yield
        return

    def free_beyond_batch(value):
        # an input shape [N, C, H, W(, D)] counts as static when only N is symbolic
        if isinstance(value, (torch.Size, tuple, list)) and len(value) in (4, 5):
            return any(free(size) for size in value[1:])
        return free(value)

    def pack_for_hint(self, graph, is_transposed, weight, constant_args, input_size):
        hinted = [optimization_hint(size) if free(size) else size for size in input_size]
        return pack(self, graph, is_transposed, weight, constant_args, hinted)

    mkldnn_fusion.has_free_symbols = free_beyond_batch
    mkldnn_fusion.CpuMkldnnDeviceOp.pack_conv_weight = pack_for_hint
    try:
        yield
    finally:
        mkldnn_fusion.has_free_symbols = free
        mkldnn_fusion.CpuMkldnnDeviceOp.pack_conv_weight = pack


def compile_package(module: torch.nn.Module, example: torch.Tensor, package_path: str | os.PathLike,
                    max_batch: int = 256, inductor_configs: dict | None = None,
                    pack_conv_weights: bool = False) -> Path:
    """Export `module(example)` with a dynamic dim 0 and AOT-compile it to `package_path`.

    `pack_conv_weights=True` compiles under `conv_weights_packed_for_dynamic_batch()`:
    a patch of Inductor's internals that packs convolution weights into oneDNN's
    layout despite the dynamic batch (it takes effect with `{"freezing": True}` in
    `inductor_configs`). Written for and measured on a convolutional network (the
    classifier's EfficientNet: no weight reordered per pass, batch 1 17.5-18.0 instead
    of 20.5-20.9 ms; docs/benchmarks.md, "The fast path"). Off by default: a model
    without convolutions gains nothing, and another convolutional one should measure
    its answers and speed with it first (tests/speed/test_frozen.py shows how).

    Build time only: imports torch._inductor and calls the C++ compiler.
    """
    import torch._inductor  # the compiler: build time only

    package_path = Path(package_path)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.inference_mode():
        exported = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    # written next to its final place, then renamed: never a half-written package
    # under the real name (the file name also names the package's root folder)
    with tempfile.TemporaryDirectory(dir=package_path.parent, prefix=".compiling-") as tmp:
        staged = Path(tmp) / package_path.name
        # Inductor freezes (folds the weights in as constants and prepacks the
        # convolutions for oneDNN) only when grad is off: with grad enabled
        # {"freezing": True} is silently ignored (prepacked_calls() checks it)
        packing = conv_weights_packed_for_dynamic_batch() if pack_conv_weights else contextlib.nullcontext()
        with torch.no_grad(), packing:
            torch._inductor.aoti_compile_and_package(exported, package_path=str(staged),
                                                     inductor_configs=dict(inductor_configs or {}))
        staged.replace(package_path)
    return package_path


def wrapper_calls(path: str | os.PathLike) -> dict[str, int]:
    """How often the package's generated C++ wrapper calls each ATen/oneDNN op.

    e.g. {"aoti_torch_cpu_convolution": 49} for an unfrozen model, or the
    prepacked oneDNN calls (`mkldnn__convolution_pointwise...`) of a frozen one.
    """
    import collections
    import re

    calls: collections.Counter = collections.Counter()
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(".wrapper.cpp") or name.endswith("wrapper.cpp"):
                text = archive.read(name).decode("utf-8", "replace")
                calls.update(re.findall(r"\baoti_torch_cpu_[A-Za-z0-9_]+", text))
    return dict(calls)


def prepacked_calls(path: str | os.PathLike) -> tuple[int, int]:
    """(prepacked oneDNN convolution calls, plain ATen convolution calls) in a package."""
    calls = wrapper_calls(path)
    packed = sum(n for op, n in calls.items() if "mkldnn" in op and "conv" in op)
    plain = sum(n for op, n in calls.items() if op in ("aoti_torch_cpu_convolution",
                                                       "aoti_torch_cpu_convolution_out"))
    return packed, plain
