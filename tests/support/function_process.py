"""A torchfaas function as a real server process, as the container runs it, for tests.

`FunctionProcess` is localrun's (load/loadkit/localrun.py: the one way to start a function
and wait for /ready) with what tests ask of a running function: a short drain,
`post()`, and its log lines by event. Tests start one through the
`function_process` fixture (tests/conftest.py), which stops it afterwards;
`TEST_FUNCTIONS` are the stand-in functions the tests build.
"""
import time
from pathlib import Path

import requests

from loadkit import localrun
from loadkit.localrun import FUNCTIONS as REAL_FUNCTIONS
from loadkit.localrun import REPO, TEMPLATE

FUNCTIONS = Path(__file__).resolve().parent / "functions"
# name -> function folder: the stand-ins the tests build, beside the real ones (functions/*)
TEST_FUNCTIONS = {"standin": FUNCTIONS / "standin", "plain": FUNCTIONS / "plain",
                  "skeleton": TEMPLATE / "function",
                  **{d.name: d for d in sorted(REAL_FUNCTIONS.iterdir()) if (d / "handler.py").is_file()}}


def real_artifacts(name: str) -> Path | None:
    """artifacts/<name>, where `make install FUNCTION=<name>` prepares a real function's
    build-time artifacts; None for the stand-ins."""
    return REPO / "artifacts" / name if (REAL_FUNCTIONS / name / "handler.py").is_file() else None


class FunctionProcess(localrun.FunctionProcess):
    def __init__(self, build_dir: Path, env: dict | None = None, **kwargs):
        # a test stops many processes: a short drain keeps the suite quick; stdout through a
        # pipe, as the of-watchdog reads it (tests/reliability/test_log_integrity.py)
        super().__init__(build_dir, {"DRAIN_SECONDS": "0.2", **(env or {})}, **{"stdout_pipe": True, **kwargs})

    def post(self, data: bytes, content_type: str = "image/jpeg", params=None, headers=None,
             timeout: float = 30) -> requests.Response:
        return requests.post(self.url + "/", data=data, params=params, timeout=timeout,
                             headers={"Content-Type": content_type, **(headers or {})})

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
