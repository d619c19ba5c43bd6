"""Build-time compiled models: torch.export + AOTInductor packages.

At image build time `compile_package()` exports a module with a dynamic batch
dimension and compiles it with AOTInductor into one `.pt2` file (a zip holding
a shared library and the weights). It needs a C++ compiler, so it runs in the
Dockerfile's build stage only.

At cold start `load_package()` opens that file through the low-level loader
`torch._C._aoti.AOTIModelPackageLoader`, which only unpacks and dlopens it
(about 0.02 s). `torch._inductor.aoti_load_package` does the same thing but
imports the whole compiler first (about 0.8 s more) and runs pytree on every
call; neither is needed for a model that takes and returns plain tensors.
"""
import os
import shutil
import tempfile
from pathlib import Path

import torch


class CompiledModel:
    """A loaded AOTInductor package: `model(*tensors)` -> list of tensors."""

    def __init__(self, path: str | os.PathLike, model_name: str = "model"):
        self.path = str(path)
        # The loader unpacks the shared library (~the model's size) into a fresh
        # $TMPDIR/aotinductor_* directory and never removes it when the process
        # exits. Point it at a scratch directory and delete that once the library
        # is mapped: nothing piles up in /tmp across restarts.
        scratch = tempfile.mkdtemp(prefix="torchfaas-aoti-")
        previous = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = scratch
        try:
            # (path, model name in the package, run_single_threaded, num_runners, device_index)
            self._loader = torch._C._aoti.AOTIModelPackageLoader(self.path, model_name, False, 1, -1)
        finally:
            if previous is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous
            shutil.rmtree(scratch, ignore_errors=True)
        self._run = self._loader.run

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        return self._run(list(tensors))

    def metadata(self) -> dict[str, str]:
        return dict(self._loader.get_metadata())


def load_package(path: str | os.PathLike, model_name: str = "model") -> CompiledModel:
    return CompiledModel(path, model_name)


def compile_package(module: torch.nn.Module, example: torch.Tensor, package_path: str | os.PathLike,
                    max_batch: int = 256, inductor_configs: dict | None = None) -> Path:
    """Export `module(example)` with a dynamic dim 0 and AOT-compile it to `package_path`.

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
        torch._inductor.aoti_compile_and_package(exported, package_path=str(staged),
                                                 inductor_configs=dict(inductor_configs or {}))
        staged.replace(package_path)
    return package_path
