"""Run a torchfaas function as a real server process, as the container does.

`FunctionProcess` starts `python index.py` in a build folder laid out by
`localrun.shrinkwrap()` (load/localrun.py), reads its stdout line by line and
stops it with a signal. Tests start one through the `function_process` fixture
(tests/conftest.py), which stops it afterwards; `TEST_FUNCTIONS` are the stand-in
functions the tests build.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from localrun import FUNCTIONS as REAL_FUNCTIONS
from localrun import REPO, TEMPLATE, free_port

FUNCTIONS = Path(__file__).resolve().parent / "functions"
# name -> function folder: the stand-ins the tests build, beside the real ones (functions/*)
TEST_FUNCTIONS = {"standin": FUNCTIONS / "standin", "plain": FUNCTIONS / "plain",
                  "skeleton": TEMPLATE / "function",
                  **{d.name: d for d in sorted(REAL_FUNCTIONS.iterdir()) if (d / "handler.py").is_file()}}


def real_artifacts(name: str) -> Path | None:
    """artifacts/<name>, where `make install FUNCTION=<name>` prepares a real function's
    build-time artifacts; None for the stand-ins."""
    return REPO / "artifacts" / name if (REAL_FUNCTIONS / name / "handler.py").is_file() else None


class FunctionProcess:
    def __init__(self, build_dir: Path, env: dict | None = None, function_name: str = "classifier"):
        self.build_dir = Path(build_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1",
                    "FUNCTION_NAME": function_name, "DRAIN_SECONDS": "0.2", **(env or {})}
        self.raw_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    # -- process ---------------------------------------------------------
    def start(self, wait_ready: bool = True, timeout: float = 90, prefix: tuple = ()) -> "FunctionProcess":
        """`prefix`: a command to run `python index.py` under (e.g. a read-only sandbox)."""
        self.proc = subprocess.Popen([*prefix, sys.executable, "index.py"], cwd=self.build_dir, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()  # never let stderr block
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def _read_stdout(self):
        for raw in self.proc.stdout:
            self.raw_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_ready(self, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"function exited with {self.proc.returncode}: {self.raw_lines[-3:]}")
            try:
                if requests.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # a busy start-up can be slow to answer
                pass
            time.sleep(0.05)
        raise TimeoutError("function did not become ready")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code

    def wait_exit(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def post(self, data: bytes, content_type: str = "image/jpeg", params=None, headers=None,
             timeout: float = 30) -> requests.Response:
        return requests.post(self.url + "/", data=data, params=params, timeout=timeout,
                             headers={"Content-Type": content_type, **(headers or {})})

    def __enter__(self):
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- log lines -------------------------------------------------------
    def lines(self) -> list[dict]:
        """Every stdout line, parsed; a line that is not JSON raises."""
        return [json.loads(line) for line in list(self.raw_lines)]

    def events(self, event: str) -> list[dict]:
        return [line for line in self.lines() if line.get("event") == event]

    def wait_for_lines(self, event: str, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(event)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return self.events(event)
