"""A real local HTTP server standing in for Loki (the client is never patched), and
an answer function replaying what the real Loki answered in the fixtures."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeLoki:
    """Serves canned Loki answers over HTTP and remembers every request it got.

    `answer(query_text) -> (http_status, json_body or raw bytes)` decides the reply.
    """

    def __init__(self, answer, delay_s=0.0):
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append({"path": url.path, "params": params, "headers": headers})
                if delay_s:
                    threading.Event().wait(delay_s)
                status, body = answer(url.path, params)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


_FIELD_LIST = re.compile(r"\| json [A-Za-z0-9_, ]+ \|")


def bare_json(query: str) -> str:
    """`| json event, status |` -> `| json |`: the fixtures were recorded with a bare
    `| json`; the file backend shows both give the same numbers over the fixture log
    (test_slo_fixtures), so the fake answers a field-list query with the recorded answer."""
    return _FIELD_LIST.sub("| json |", query)


def fixture_answer(answers):
    """An `answer` function that replies what the real Loki replied to each fixture query
    (asked with a bare `| json` or with the field list the contracts use)."""
    by_query = {item["query"]: item["response"] for item in answers["queries"].values()}
    for item in answers["range"].values():
        by_query[("range", item["query"])] = item["response"]

    def answer(path, params):
        text = bare_json(params["query"])
        key = ("range", text) if path.endswith("query_range") else text
        if key in by_query:
            return 200, by_query[key]
        # Loki answers an empty vector to a query over no data.
        return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}

    return answer
