"""Run a torchfaas function as a real server process, as the container does.

`shrinkwrap()` lays out a build folder the way `faas-cli build --shrinkwrap`
does (template, then the function over function/), and `FunctionProcess`
starts `python index.py` in it, reads its stdout line by line and stops it
with a signal.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template" / "python3-http-torch"
CLASSIFIER = REPO / "functions" / "classifier"
CLASSIFIER_ARTIFACTS = REPO / "artifacts" / "classifier"


def shrinkwrap(function_dir: Path, dest: Path) -> Path:
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(function_dir, dest / "function", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def prepare_artifacts(build_dir: Path, artifacts_dir: Path) -> Path:
    """Run the build-time step (as `make install` and the Dockerfile do) if needed."""
    if not (Path(artifacts_dir) / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "torchfaas.prepare"], cwd=build_dir, check=True,
                       env={**os.environ, "ARTIFACTS_DIR": str(artifacts_dir)},
                       stdout=subprocess.DEVNULL)
    return Path(artifacts_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    def start(self, wait_ready: bool = True, timeout: float = 90) -> "FunctionProcess":
        self.proc = subprocess.Popen([sys.executable, "index.py"], cwd=self.build_dir, env=self.env,
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
        return self.start()

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
