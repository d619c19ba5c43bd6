"""Run a torchfaas function locally, laid out as the image lays it out.

`shrinkwrap()` builds the folder `faas-cli build --shrinkwrap` would: the
template, then the function's files over its `function/` folder. The Makefile
(`make shrinkwrap`), the benchmark and the tests all use this one copy.
`import_build()` loads a build's packages into the calling process (the
benchmark's in-process measurements) without touching sys.path.
`FunctionProcess` is the one way to start a function (`python index.py` in its
build folder), wait for its /ready and stop it: the tests, the soak, the
benchmark and `load/with_function.sh` all start it so.
`run_with_function()` runs a command against a started function and stops both
whatever happens; `load/local_function.py` is its command line.
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
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadkit import functionlog

LOAD = Path(__file__).resolve().parents[1]
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


def stop_group(proc: subprocess.Popen, timeout: float = 30, sig: int = signal.SIGTERM) -> int:
    """`sig` to the process group `proc` leads (it was started in a session of its own),
    SIGKILL to what is left of the group after `timeout`; `proc`'s exit code once the
    whole group is gone (a `make run` ends before the function it started has drained)."""
    def signal_group(signum: int) -> bool:
        try:
            os.killpg(proc.pid, signum)
            return True
        except ProcessLookupError:  # no process left in the group
            return False

    signal_group(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader: a zombie still counts as a member
        if not signal_group(0):
            break
        time.sleep(0.05)
    else:
        signal_group(signal.SIGKILL)
    return proc.wait()


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
    as this object. A file, not a pipe, by default: a process under load never waits
    for a reader. `stdout_pipe`: its stdout is a pipe instead, read line by line into
    `log` by a thread, as the of-watchdog reads it (what a pipe does to long lines and
    concurrent writers is what the tests check).
    `env` is laid over `base_env` (default: this process's environment) and the
    defaults: PORT and HOST (127.0.0.1), FUNCTION_NAME (`name`) and DRAIN_SECONDS
    (locally nothing routes to a stopping process, so 0.5 s instead of the
    container's 5). `command` replaces `python index.py` for another server that
    answers /ready the same way (pass it `port` too). `own_session`: the command and
    whatever it starts (`make run`, a watchdog and its function) form a process group
    of their own, which `stop()` signals and waits for as a whole.
    """

    def __init__(self, build_dir: Path, env: Mapping[str, str] | None = None, *, name: str = "classifier",
                 log: Path | None = None, port: int | None = None, base_env: Mapping[str, str] | None = None,
                 command: Sequence[str] = (sys.executable, "index.py"), own_session: bool = False,
                 stdout_pipe: bool = False):
        self.build_dir = Path(build_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**(os.environ if base_env is None else base_env), "PORT": str(self.port), "HOST": "127.0.0.1",
                    "FUNCTION_NAME": name, "DRAIN_SECONDS": "0.5", **(env or {})}
        self.command = list(command)
        self.own_session = own_session
        self.stdout_pipe = stdout_pipe
        self._relay: threading.Thread | None = None
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
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if self.stdout_pipe else out,
                                         stderr=err, start_new_session=self.own_session)
        if self.stdout_pipe:
            self._relay = threading.Thread(target=self._relay_stdout, daemon=True)
            self._relay.start()
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
        `timeout` (with `own_session`: to its whole group); its exit code (0 if it never started)."""
        if self.proc is None:
            return 0
        code = (stop_group if self.own_session else stop_process)(self.proc, timeout, sig)
        self._join_relay()
        return code

    def wait_exit(self, timeout: float = 30) -> int:
        """Its exit code, once it ends by itself (or after a signal sent through `.proc`)."""
        code = self.proc.wait(timeout)
        self._join_relay()
        return code

    def _relay_stdout(self) -> None:
        with open(self.log, "ab") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()

    def _join_relay(self) -> None:
        if self._relay is not None:
            self._relay.join(5)

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
        """Whether lines may still be on their way to the log."""
        relaying = self._relay is not None and self._relay.is_alive()
        return relaying or (self.proc is not None and self.proc.poll() is None)


class _Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _interrupt(signum, _frame):
    raise _Interrupted(signum)


def _exit_code(returncode: int) -> int:
    """A child's exit code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def _start_ignoring_ctrl_c(start):
    """Run `start()` (which starts a child) with SIGINT ignored, so the child inherits
    that (as a shell's background job does): a Ctrl-C reaches this process, which
    stops the command and then the function in that order."""
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return start()
    finally:
        signal.signal(signal.SIGINT, handler)


def _say(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def _stop_command(cmd: subprocess.Popen | None) -> None:
    if cmd is not None and cmd.poll() is None:
        _say(f"stopping the command (pid {cmd.pid}, SIGTERM)")
        cmd.terminate()
        cmd.wait()


def _stop_function(fn: FunctionProcess, stop_timeout: float) -> None:
    if fn.proc is None:
        return
    if fn.proc.poll() is None:
        _say(f"stopping the function (pid {fn.pid}, SIGTERM)")
    code = fn.stop(timeout=stop_timeout)
    if code == -signal.SIGKILL:
        _say(f"the function did not stop within {stop_timeout:g}s: SIGKILL")
    _say(f"function stopped (exit {_exit_code(code)}); its log: {fn.log}")


def run_with_function(build: Path, log_dir: Path, command: list[str], port: int, env: dict[str, str],
                      ready_timeout: float = 180, stop_timeout: float = 30) -> int:
    """Start the function in `build` on `port` (its log in LOG_DIR/function.log, its stderr
    beside it), run `command` once it is ready, then stop the function: after the command
    ends, or on Ctrl-C or SIGTERM (the command gets SIGTERM first). The exit code is the
    command's, 128 + N after signal N, 3 when the function could not be started."""
    if _port_taken(port):
        _say(f"port {port} is already in use (a `make run` still going?): stop it, pass PORT=... for another "
             f"port, or HOST=http://127.0.0.1:{port} to load what is running there", err=True)
        return 3
    fn = FunctionProcess(build, env, log=Path(log_dir) / "function.log", port=port)
    cmd = None
    # started with Ctrl-C ignored (by another run, as its command), it stays ignored, as a
    # shell keeps it: whoever started this stops it with SIGTERM
    caught = [signal.SIGTERM] + ([] if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else [signal.SIGINT])
    handlers = {sig: signal.signal(sig, _interrupt) for sig in caught}
    try:
        _say(f"starting the function on {fn.url} (log: {fn.log})")
        try:
            _start_ignoring_ctrl_c(lambda: fn.start(wait_ready=False))
        except OSError as e:  # no such build folder
            _say(f"cannot start the function: {e}", err=True)
            return 3
        try:
            _say(f"function ready after {fn.wait_ready(ready_timeout, poll=0.1):.0f}s")
        except FunctionExited:
            _say(f"the function exited during start-up; last lines of its stderr:\n{fn.stderr_tail()}", err=True)
            return 3
        except TimeoutError:
            _say(f"the function was not ready after {ready_timeout:g}s", err=True)
            return 3
        try:
            cmd = _start_ignoring_ctrl_c(lambda: subprocess.Popen(command, env={**os.environ, "FUNCTION_URL": fn.url}))
        except OSError as e:
            _say(f"cannot run {command[0]}: {e}", err=True)
            return 127
        return _exit_code(cmd.wait())
    except _Interrupted as stop:
        return stop.exit_code
    finally:
        for sig in handlers:  # a second Ctrl-C must not cut the stopping short
            signal.signal(sig, signal.SIG_IGN)
        _stop_command(cmd)
        _stop_function(fn, stop_timeout)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
