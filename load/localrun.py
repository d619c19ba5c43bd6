"""Run a torchfaas function locally, laid out as the image lays it out.

`shrinkwrap()` builds the folder `faas-cli build --shrinkwrap` would: the
template, then the function's files over its `function/` folder. The Makefile
(`make shrinkwrap`), the benchmark and the tests all use this one copy.
`import_build()` loads a build's packages into the calling process (the
benchmark's in-process measurements) without touching sys.path.
`FunctionProcess` is the one way to start a function (`python index.py` in its
build folder), wait for its /ready and stop it: the tests, the soak, the
benchmark and `load/with_function.sh` all start it so.

    python load/localrun.py shrinkwrap functions/classifier build/classifier
"""
from __future__ import annotations

import http.client
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import functionlog

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


def stop_process(proc: subprocess.Popen, timeout: float = 30, sig: int = signal.SIGTERM) -> int:
    """`sig` (SIGTERM: the function drains and logs `shutdown`), SIGKILL if it outlives
    `timeout`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
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


class FunctionExited(RuntimeError):
    """The function's process ended before it was ready."""


class FunctionProcess:
    """`python index.py` in a build folder, as the container starts it, on a port of its own.

        with FunctionProcess(build, {"ARTIFACTS_DIR": str(artifacts)}, log=Path("fn.log")) as fn:
            requests.post(fn.url + "/", data=photo)
        fn.lines()  # its JSON log, parsed

    Its stdout (the JSON log) goes to `log` and its stderr beside it (`function.log`
    -> `function.stderr.log`); without `log`, to a temporary folder that lives as long
    as this object. Files, not pipes: a process under load never waits for a reader.
    `env` is laid over `base_env` (default: this process's environment) and the
    defaults: PORT and HOST (127.0.0.1), FUNCTION_NAME (`name`) and DRAIN_SECONDS
    (locally nothing routes to a stopping process, so 0.5 s instead of the
    container's 5). `command` replaces `python index.py` for another server that
    answers /ready the same way (pass it `port` too).
    """

    def __init__(self, build_dir: Path, env: Mapping[str, str] | None = None, *, name: str = "classifier",
                 log: Path | None = None, port: int | None = None, base_env: Mapping[str, str] | None = None,
                 command: Sequence[str] = (sys.executable, "index.py")):
        self.build_dir = Path(build_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**(os.environ if base_env is None else base_env), "PORT": str(self.port), "HOST": "127.0.0.1",
                    "FUNCTION_NAME": name, "DRAIN_SECONDS": "0.5", **(env or {})}
        self.command = list(command)
        if log is None:
            folder = tempfile.mkdtemp(prefix="torchfaas-function-")
            weakref.finalize(self, shutil.rmtree, folder, True)
            log = Path(folder) / "function.log"
        self.log = Path(log)
        self.stderr_log = self.log.with_suffix(".stderr.log")
        self.proc: subprocess.Popen | None = None
        self.started: float | None = None   # time.perf_counter() just before the process started
        self.ready_at: float | None = None  # time.perf_counter() of the first /ready 200

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, wait_ready: bool = True, timeout: float = 180, prefix: Sequence[str] = ()) -> FunctionProcess:
        """Start it (under `prefix`, a command such as a sandbox, if given); with
        `wait_ready`, return once /ready answers 200."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out, open(self.stderr_log, "wb") as err:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen([*prefix, *self.command], cwd=self.build_dir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def is_ready(self, probe_timeout: float = 1.0) -> bool:
        """Whether /ready answers 200 within `probe_timeout` (a start-up that holds the CPU
        may answer late: that is a no). Raises FunctionExited if the process has ended."""
        if self.proc.poll() is not None:
            raise FunctionExited(f"the function exited with {self.proc.returncode} before it was ready; "
                                 f"the end of its stderr ({self.stderr_log}):\n{self.stderr_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=probe_timeout)
        try:
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):  # not listening yet, or too slow to answer
            return False
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 180, poll: float = 0.05) -> float:
        """Wait until /ready answers 200, polling every `poll` s; the seconds from the
        process start. Raises FunctionExited if it ends first, TimeoutError after `timeout`."""
        deadline = time.perf_counter() + timeout
        while not self.is_ready():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the function was not ready after {timeout:g} s; the end of its stderr "
                                   f"({self.stderr_log}):\n{self.stderr_tail()}")
            time.sleep(poll)
        self.ready_at = time.perf_counter()
        return self.ready_at - self.started

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """`sig` (SIGTERM: it drains and logs `shutdown`), SIGKILL if it outlives
        `timeout`; its exit code (0 if it never started)."""
        return 0 if self.proc is None else stop_process(self.proc, timeout, sig)

    def wait_exit(self, timeout: float = 30) -> int:
        """Its exit code, once it ends by itself (or after a signal sent through `.proc`)."""
        return self.proc.wait(timeout)

    def __enter__(self) -> FunctionProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what it wrote --------------------------------------------------------
    @property
    def raw_lines(self) -> list[str]:
        """Its stdout so far, line by line (a line still being written is left out)."""
        return functionlog.raw_lines(self.log, whole_lines_only=self._running())

    @property
    def stderr_lines(self) -> list[str]:
        return functionlog.raw_lines(self.stderr_log, whole_lines_only=self._running())

    def stderr_tail(self, count: int = 20) -> str:
        return "\n".join(self.stderr_lines[-count:])

    def read_log(self) -> functionlog.FunctionLog:
        """Its JSON log so far: the objects and the lines that are not one."""
        return functionlog.read_log(self.log, whole_lines_only=self._running())

    def lines(self) -> list[dict]:
        """Its JSON log so far, parsed; a line that is not a JSON object raises ValueError."""
        log = self.read_log()
        if log.broken:
            raise ValueError(f"{len(log.broken)} stdout lines are not JSON objects, e.g. {log.broken[0][:200]!r}")
        return log.lines

    def _running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "shrinkwrap":
        shrinkwrap(Path(argv[1]), Path(argv[2]))
        return 0
    print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
