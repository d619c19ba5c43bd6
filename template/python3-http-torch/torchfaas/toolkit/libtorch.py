"""A compiled model served without the torch Python package: libtorch through its C ABI.

`import torch` costs a cold start about 1 s and a replica about 80 MB of anonymous
memory (measured here: 1.0 s and 142 MB for `import torch` alone, against 0.17 s and
60 MB for loading libtorch_cpu.so): torch's Python side imports its exporter, its
compiler's decompositions and operator registrations, none of which a request to an
AOTInductor package runs. What a request does run is libtorch: the package's kernels
call into it. So this module loads libtorch_cpu.so itself, from the installed torch
package (found without importing it), and offers, with numpy arrays in and out:

- `CompiledPackage(path, num_models)`: an AOTInductor package (`model(*arrays)` -> list
  of arrays), through the same C ABI calls as `toolkit.compiled.CompiledModel` (which
  takes torch tensors): the GIL is released for the forward pass;
- `call_op(name, overload, *args)`: one ATen operator through the dispatcher's stable
  C ABI (`torch_call_dispatcher`), for preprocessing that wants an ATen kernel; arrays
  are passed as tensors over their own memory (no copy), so an `out=` overload writes
  straight into an array;
- `cpu_flags()` / `cpu_capability()` / `onednn_cap()` / `onednn_packing()`: what the CPU runs,
  from /proc/cpuinfo and ONEDNN_MAX_CPU_ISA.

Nothing here imports torch; in a process that has (a test, the eager fallback) the
library is the one torch loaded. Linux only (the image's platform).
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np

# torch_call_dispatcher's extension version: the stable ABI of torch 2.10 (lists as list
# handles, optionals as pointers), which later versions keep
STABLE_ABI_2_10 = (2 << 56) | (10 << 48)
# the dtypes arrays cross in (numpy and libtorch name them alike)
_DTYPES = ("uint8", "int8", "int32", "int64", "float32", "float64", "bool")
_INT64 = ctypes.c_int64
_HANDLE = ctypes.c_void_p


class LibtorchError(RuntimeError):
    pass


def torch_lib_dir() -> Path:
    """torch/lib of the installed torch package, found without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise LibtorchError("torch is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


@cache
def library() -> ctypes.CDLL:
    """libtorch_cpu.so, loaded once with its symbols global (a package's kernels link against them)."""
    lib = ctypes.CDLL(str(torch_lib_dir() / "libtorch_cpu.so"), mode=ctypes.RTLD_GLOBAL)
    for name in ("aoti_torch_get_data_ptr", "aoti_torch_get_sizes", "aoti_torch_get_strides"):
        getattr(lib, name).argtypes = [_HANDLE, ctypes.c_void_p]
    lib.aoti_torch_get_dim.argtypes = [_HANDLE, ctypes.POINTER(_INT64)]
    lib.aoti_torch_get_dtype.argtypes = [_HANDLE, ctypes.POINTER(ctypes.c_int32)]
    lib.aoti_torch_delete_tensor_object.argtypes = [_HANDLE]
    lib.aoti_torch_create_tensor_from_blob.argtypes = [
        ctypes.c_void_p, _INT64, ctypes.POINTER(_INT64), ctypes.POINTER(_INT64), _INT64,
        ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(_HANDLE)]
    lib.torch_call_dispatcher.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64),
                                          ctypes.c_uint64]
    lib.torch_new_list_reserve_size.argtypes = [ctypes.c_size_t, ctypes.POINTER(_HANDLE)]
    lib.torch_list_push_back.argtypes = [_HANDLE, ctypes.c_uint64]
    return lib


@cache
def _dtype_codes() -> dict[str, int]:
    """numpy dtype name -> libtorch's dtype code."""
    lib = library()
    codes = {}
    for name in _DTYPES:
        code = getattr(lib, f"aoti_torch_dtype_{name}")
        code.restype = ctypes.c_int32
        codes[name] = code()
    return codes


def _check(code: int, what: str) -> None:
    if code != 0:  # libtorch has written why to stderr
        raise LibtorchError(f"libtorch {what} failed (error {code})")


def tensor_handle(array: np.ndarray) -> int:
    """A new tensor handle over `array`'s memory (not a copy: keep the array alive while
    the handle is used). Strides of size-1 dimensions are laid out as torch lays them."""
    codes = _dtype_codes()
    if array.dtype.name not in codes:
        raise LibtorchError(f"no libtorch dtype for {array.dtype}")
    ndim, itemsize = array.ndim, array.itemsize
    strides = [s // itemsize for s in array.strides]
    for d in range(ndim - 1, -1, -1):
        if array.shape[d] == 1:  # numpy may say 0 here; layout checks want the dense stride
            strides[d] = strides[d + 1] * array.shape[d + 1] if d + 1 < ndim else 1
    handle = _HANDLE()
    _check(library().aoti_torch_create_tensor_from_blob(
        ctypes.c_void_p(array.ctypes.data), ndim, (_INT64 * ndim)(*array.shape), (_INT64 * ndim)(*strides),
        0, codes[array.dtype.name], 0, 0, ctypes.byref(handle)), "create_tensor_from_blob")  # device: CPU
    return handle.value


def to_array(handle: int) -> np.ndarray:
    """A tensor handle's values as a new numpy array; the handle is deleted."""
    lib = library()
    try:
        dim, dtype, data = _INT64(), ctypes.c_int32(), ctypes.c_void_p()
        sizes, strides = ctypes.POINTER(_INT64)(), ctypes.POINTER(_INT64)()
        _check(lib.aoti_torch_get_dim(handle, ctypes.byref(dim)), "get_dim")
        _check(lib.aoti_torch_get_dtype(handle, ctypes.byref(dtype)), "get_dtype")
        _check(lib.aoti_torch_get_data_ptr(handle, ctypes.byref(data)), "get_data_ptr")
        _check(lib.aoti_torch_get_sizes(handle, ctypes.byref(sizes)), "get_sizes")
        _check(lib.aoti_torch_get_strides(handle, ctypes.byref(strides)), "get_strides")
        names = {code: name for name, code in _dtype_codes().items()}
        if dtype.value not in names:
            raise LibtorchError(f"libtorch dtype {dtype.value} has no numpy counterpart")
        np_dtype = np.dtype(names[dtype.value])
        shape = tuple(sizes[k] for k in range(dim.value))
        if 0 in shape:
            return np.empty(shape, np_dtype)
        span = 1 + sum((n - 1) * s for n, s in zip(shape, (strides[k] for k in range(dim.value))))
        flat = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8)), (span * np_dtype.itemsize,))
        view = np.lib.stride_tricks.as_strided(flat.view(np_dtype), shape,
                                               [strides[k] * np_dtype.itemsize for k in range(dim.value)])
        return view.copy()
    finally:
        lib.aoti_torch_delete_tensor_object(handle)


def _int_list(values) -> int:
    handle = _HANDLE()
    _check(library().torch_new_list_reserve_size(len(values), ctypes.byref(handle)), "new_list")
    for value in values:
        _check(library().torch_list_push_back(handle, int(value) & 0xFFFF_FFFF_FFFF_FFFF), "list_push_back")
    return handle.value


def _stable_value(arg) -> int:
    """One argument as a StableIValue (the dispatcher takes ownership of tensors and lists)."""
    if arg is None:
        return 0  # an optional argument left out
    if isinstance(arg, np.ndarray):
        return tensor_handle(arg)
    if isinstance(arg, bool):
        return int(arg)
    if isinstance(arg, int):
        return arg & 0xFFFF_FFFF_FFFF_FFFF
    if isinstance(arg, (list, tuple)) and all(isinstance(v, int) for v in arg):
        return _int_list(arg)
    raise LibtorchError(f"call_op takes arrays, ints, bools, int lists and None, not {type(arg).__name__}")


def call_op(name: str, overload: str, *args, returns: int = 1) -> None:
    """Run the ATen operator `name.overload` (e.g. "aten::_upsample_bicubic2d_aa", "out")
    on `args`, in its schema's order. For `out=` overloads: the results are written into
    the arrays passed as `out`; the tensors it returns (`returns` of them) are released.
    Optional float arguments can only be left out (None)."""
    stack = (ctypes.c_uint64 * max(len(args), returns, 1))(*(_stable_value(a) for a in args))
    _check(library().torch_call_dispatcher(name.encode(), overload.encode(), stack, STABLE_ABI_2_10),
           f"call of {name}.{overload}")
    for k in range(returns):
        if stack[k]:
            library().aoti_torch_delete_tensor_object(stack[k])


class CompiledPackage:
    """An AOTInductor package served from numpy arrays: `model(*arrays)` -> list of arrays.

    The package's shared library is unpacked to a scratch directory that is deleted as
    soon as it is mapped (nothing piles up in /tmp across restarts); its model container
    holds `num_models` instances, so as many forward passes can run at once. A call
    releases the GIL (ctypes.CDLL) for the whole forward pass.
    """

    def __init__(self, path: str | os.PathLike, model_name: str = "model", num_models: int = 1):
        self.path = str(path)
        lib = library()  # first: the package's library links against it
        with zipfile.ZipFile(self.path) as archive:
            libraries = [n for n in archive.namelist()
                         if n.endswith(".so") and f"/data/aotinductor/{model_name}/" in f"/{n}"]
            if len(libraries) != 1:
                raise LibtorchError(f"{self.path}: expected one shared library for {model_name!r}, found {libraries}")
            scratch = tempfile.mkdtemp(prefix="torchfaas-aoti-")
            try:
                self._lib = ctypes.CDLL(archive.extract(libraries[0], scratch))
                container = _HANDLE()
                _check(self._lib.AOTInductorModelContainerCreateWithDevice(
                    ctypes.byref(container), ctypes.c_size_t(num_models), b"cpu", None), "model container create")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        self._container = container
        outputs = ctypes.c_size_t()
        _check(self._lib.AOTInductorModelContainerGetNumOutputs(container, ctypes.byref(outputs)), "get_num_outputs")
        self._num_outputs = outputs.value
        self._run = self._lib.AOTInductorModelContainerRun
        self._run.restype = ctypes.c_int
        self._run.argtypes = [_HANDLE, ctypes.POINTER(_HANDLE), ctypes.c_size_t,
                              ctypes.POINTER(_HANDLE), ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        self._delete = lib.aoti_torch_delete_tensor_object

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        # the compiled kernels index their inputs as contiguous and check no strides
        arrays = [np.ascontiguousarray(a) for a in arrays]
        # the model takes ownership of the input handles (not of the arrays' memory)
        inputs = (_HANDLE * len(arrays))(*(tensor_handle(a) for a in arrays))
        outputs = (_HANDLE * self._num_outputs)()
        code = self._run(self._container, inputs, len(arrays), outputs, self._num_outputs, None, None)
        if code != 0:
            for handle in outputs:
                if handle:
                    self._delete(handle)
            _check(code, "model run")
        return [to_array(handle) for handle in outputs]


def openmp_threads() -> int:
    """The OpenMP threads a forward pass started from this thread runs on (what
    `torch.get_num_threads()` says; OMP_NUM_THREADS sets it before the library loads)."""
    get = library().omp_get_max_threads  # libgomp, which libtorch_cpu.so loads
    get.restype = ctypes.c_int
    return get()


# -- the CPU -------------------------------------------------------------------------
# the x86-64 micro-architecture levels a package's ISA names (toolkit.compiled.ISA_ORDER):
# AVX2 packages are compiled for x86-64-v3, AVX512 ones need v4's AVX-512 subsets too
_ISA_FLAGS = {"AVX2": {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"},
              "AVX512": {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe",
                         "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}}


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo: "avx2", "avx512_bf16", "amx_bf16", ...)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_runs(isa: str) -> bool:
    """Can this CPU run code compiled for `isa` ("AVX2", "AVX512"; anything else: yes)?"""
    return _ISA_FLAGS.get(isa, set()) <= cpu_flags()


def onednn_cap() -> str:
    """ONEDNN_MAX_CPU_ISA as oneDNN reads it when libtorch loads ("AVX2", "AVX512_CORE_BF16",
    ...), or "" when oneDNN is not held below the CPU ("ALL" or unset)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return "" if cap == "ALL" else cap


def onednn_packing() -> str:
    """The layout oneDNN wants fp32 convolution weights in here: "AVX512" (16-wide blocks:
    AVX-512 and up) or "AVX2" (8-wide: AVX2 and below), held to ONEDNN_MAX_CPU_ISA as
    oneDNN holds itself. A package packed for the other one serves the same answers,
    its weights reordered at every forward pass (toolkit.compiled, pack_conv_weights)."""
    cap = onednn_cap()
    if cap and not cap.startswith(("AVX512", "AVX10")):
        return "AVX2"
    return "AVX512" if cpu_runs("AVX512") else "AVX2"


def cpu_capability() -> str:
    """The widest of "AVX512", "AVX2", "DEFAULT" this CPU runs, as torch names them, held
    to ATEN_CPU_CAPABILITY when that asks for less (as torch holds its own kernels)."""
    order = ("AVX512", "AVX2", "DEFAULT")
    widest = next((isa for isa in order[:2] if cpu_runs(isa)), "DEFAULT")
    asked = os.environ.get("ATEN_CPU_CAPABILITY", "").upper()
    return asked if asked in order and order.index(asked) > order.index(widest) else widest
