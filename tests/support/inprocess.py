"""A function assembled in the test process: the real app, runtime, log and metrics
around a handler (`torchfaas.assembly.assemble`), driven with Flask's test client.
No subprocess, no socket, no waitress: what needs those is in the process suites.
"""
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

from support.metrics import parse_samples
from torchfaas.assembly import assemble
from torchfaas.settings import Settings


class InProcessFunction:
    """`InProcessFunction(handler, batch_size=2, ...)`: keyword arguments are Settings fields;
    `artifact_check` is passed to assemble() (the check server.main() starts early)."""

    def __init__(self, handler, artifact_check=None, **settings):
        self.handler = handler
        self.stream = io.StringIO()  # the log; EventLog writes each line under a lock
        settings_class = getattr(handler, "settings_class", Settings)  # e.g. ImageSettings (MAX_PIXELS)
        self.function = assemble(settings_class(**settings), handler, self.stream, artifact_check=artifact_check)
        self.app, self.runtime, self.metrics = self.function.app, self.function.runtime, self.function.metrics
        self.settings = self.function.settings
        self._local = threading.local()

    # -- lifecycle ---------------------------------------------------------
    def load(self) -> bool:
        return self.runtime.load()

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.runtime.load, daemon=True)
        thread.start()
        return thread

    def close(self):
        if self.runtime.batcher is not None:
            self.runtime.batcher.stop()

    # -- requests ----------------------------------------------------------
    @property
    def client(self):
        """A test client per thread (concurrent requests each use their own)."""
        if not hasattr(self._local, "client"):
            self._local.client = self.app.test_client()
        return self._local.client

    def request(self, method: str, path: str = "/", data: bytes = b"", content_type: str | None = None,
                params=None, headers=None):
        headers = dict(headers or {})
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.client.open(path, method=method, data=data, query_string=params, headers=headers)

    def post(self, data: bytes, content_type: str | None = "application/octet-stream", params=None,
             headers=None, path: str = "/"):
        return self.request("POST", path, data, content_type, params, headers)

    def get(self, path: str = "/", headers=None):
        return self.request("GET", path, headers=headers)

    def concurrently(self, calls, workers: int = 16) -> list:
        """Run each zero-argument callable in its own thread; their results, in order."""
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda call: call(), calls))

    # -- the log -----------------------------------------------------------
    @property
    def raw_lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def lines(self) -> list[dict]:
        """Every log line, parsed; a line that is not JSON raises."""
        return [json.loads(line) for line in self.raw_lines]

    def events(self, event: str) -> list[dict]:
        return [line for line in self.lines() if line.get("event") == event]

    def lines_for(self, request_id: str, event: str = "inference") -> list[dict]:
        return [line for line in self.lines() if line.get("request_id") == request_id
                and line.get("event") == event]

    # -- /metrics ----------------------------------------------------------
    def samples(self) -> list:
        res = self.get("/metrics")
        assert res.status_code == 200 and res.headers["Content-Type"].startswith("text/plain")
        return parse_samples(res.data)
