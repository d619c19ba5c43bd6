"""Run a torchfaas function locally, laid out as the image lays it out.

`shrinkwrap()` builds the folder `faas-cli build --shrinkwrap` would: the
template, then the function's files over its `function/` folder. The Makefile
(`make shrinkwrap`), the benchmark and the tests all use this one copy.
`import_build()` loads a build's packages into the calling process (the
benchmark's in-process measurements) without touching sys.path.

    python load/localrun.py shrinkwrap functions/classifier build/classifier
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parent
REPO = LOAD.parent
TEMPLATE = REPO / "template" / "python3-http-torch"
FUNCTIONS = REPO / "functions"
CLASSIFIER = FUNCTIONS / "classifier"
CLASSIFIER_ARTIFACTS = REPO / "artifacts" / "classifier"

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def shrinkwrap(function_dir: Path, dest: Path) -> Path:
    """The build folder for `function_dir`, replacing whatever `dest` held."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TEMPLATE, dest, ignore=_IGNORE)
    shutil.copytree(function_dir, dest / "function", dirs_exist_ok=True, ignore=_IGNORE)
    return dest


def prepare_artifacts(build_dir: Path, artifacts_dir: Path, python: str = sys.executable) -> Path:
    """Run the build-time step (as `make install` and the Dockerfile do) unless done."""
    if not (Path(artifacts_dir) / "manifest.json").is_file():
        subprocess.run([python, "-m", "torchfaas.prepare"], cwd=build_dir, check=True,
                       env={**os.environ, "ARTIFACTS_DIR": str(artifacts_dir)},
                       stdout=subprocess.DEVNULL)
    return Path(artifacts_dir)


def import_build(build_dir: Path, packages: tuple[str, ...] = ("torchfaas", "function")) -> None:
    """Import a build folder's packages in this process, as `python index.py` there finds them.

    Each package is loaded from `build_dir` and registered under its own name, so
    `import torchfaas.config` or `import function.handler` afterwards get the build's
    code. A package already imported from somewhere else is refused rather than mixed.
    """
    build_dir = Path(build_dir).resolve()
    for name in packages:
        loaded = sys.modules.get(name)
        if loaded is not None:
            where = [Path(p).resolve() for p in getattr(loaded, "__path__", [])]
            if build_dir / name not in where:
                raise RuntimeError(f"{name} is already imported from {where or loaded}, not from {build_dir}")
            continue
        spec = importlib.machinery.PathFinder.find_spec(name, [str(build_dir)])
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"no package {name!r} in {build_dir}", name=name)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise


def import_function(function_dir: Path, name: str, module: str = "handler"):
    """`module` of a function's folder (e.g. functions/classifier/handler.py), imported as
    `<name>.<module>` with the folder as package `name`, as the image imports it as
    `function.handler`: its relative imports of its sibling modules work. The package
    is registered once per name; every module of it is `sys.modules[f"{name}.<module>"]`."""
    if name not in sys.modules:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(Path(function_dir).resolve())]
        sys.modules[name] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{name}.{module}")


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM (the function drains and logs `shutdown`), SIGKILL if it outlives
    `timeout`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def proc_kib(pid: int, key: str, file: str = "status") -> int:
    """A `key: N kB` figure of /proc/PID/<file> (VmRSS, VmHWM in status; Pss in
    smaps_rollup); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "shrinkwrap":
        shrinkwrap(Path(argv[1]), Path(argv[2]))
        return 0
    print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
