"""The handler author's toolkit: what a model handler uses, the runtime does not.

    from torchfaas.toolkit import image_bytes_from, open_image, decode_rgb_array   # images
    from torchfaas.toolkit import ImageSettings     # settings_class of image functions
    from torchfaas.toolkit import write_manifest, read_verified_manifest     # artifacts
    from torchfaas.toolkit import compile_package, CompiledModel, ...        # AOTInductor

images: the request body -> an encoded image (raw bytes or JSON base64), opened
lazily with its pixel count checked against MAX_PIXELS before decoding; 4xx
errors for everything a client can get wrong. MAX_PIXELS is read by `ImageSettings`,
the runtime's settings plus the image limit, which an image function opts into
(`settings_class = ImageSettings`).
artifacts: `write_manifest()` records each artifact's SHA-256 at build time; the
runtime verifies them before `load()` and passes the manifest to it
(`read_verified_manifest()` does the same check, e.g. in a handler's own test).
compiled (imports torch, so it loads on first use): `compile_package()` at build
time, `CompiledModel` (torch tensors in and out), `portable_x86_configs()`,
`package_isa()`, `cpu_supports()`.
libtorch (`from torchfaas.toolkit import libtorch`; no torch import): serving without the
torch Python package, numpy arrays in and out: `libtorch.CompiledPackage` (an AOTInductor
package), `libtorch.call_op()` (one ATen operator), the CPU's flags; about 1 s less cold
start and 80 MB less per replica than `import torch`.
precision_gate (build time, `from torchfaas.toolkit import precision_gate`): the
accuracy gate a reduced-precision (bf16...) package must pass against fp32 on
real photos before it ships: `gate_photos()`, `gate_inputs()`, `measure()`, `check()`.

None of this is on the runtime's request path: the runtime imports no module here.
"""
from ..artifacts import MANIFEST, ArtifactError, read_verified_manifest, sha256_of, write_manifest
from .images import RAW_TYPES, ImageSettings, decode_rgb, decode_rgb_array, image_bytes_from, media_type, open_image

# what `from torchfaas.toolkit import ...` offers at once; the AOTInductor names below load on first use
__all__ = ["MANIFEST", "ArtifactError", "read_verified_manifest", "sha256_of", "write_manifest", "RAW_TYPES",
           "ImageSettings", "decode_rgb", "decode_rgb_array", "image_bytes_from", "media_type", "open_image"]

_COMPILED = {"AOTIError", "CompiledModel", "compile_package", "cpu_supports", "package_isa",
             "portable_x86_configs", "ISA_ORDER"}


def __getattr__(name: str):
    # torch is imported only by handlers that use the AOTInductor helpers
    if name in _COMPILED:
        from . import compiled

        return getattr(compiled, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
