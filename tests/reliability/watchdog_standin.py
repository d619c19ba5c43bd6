"""A stand-in for the of-watchdog's shutdown sequence (http mode), for tests.

What it copies from of-watchdog's main.go / executor/http_runner.go: it starts the
function process with its stdout piped and relays every line to its own stdout;
it proxies requests to `upstream_url`; on SIGTERM it forwards SIGTERM to the
function at once, keeps routing for `healthcheck_interval`, then stops accepting,
waits for the requests it has in flight and exits at once (when idle, right at
`healthcheck_interval`). Exiting ends the container: the function is killed
(SIGKILL) and whatever it writes after that is lost.

    python watchdog_standin.py PORT UPSTREAM_URL HEALTHCHECK_S -- python index.py
"""
import http.server
import signal
import subprocess
import sys
import threading
import time

import requests


class Inflight:
    """The requests being proxied now: `with inflight:` around each."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.count += 1

    def __exit__(self, *exc):
        with self.lock:
            self.count -= 1

    def wait_idle(self):
        while True:
            with self.lock:
                if self.count == 0:
                    return
            time.sleep(0.001)


def proxy_handler(upstream: str, inflight: Inflight) -> type[http.server.BaseHTTPRequestHandler]:
    """The handler that proxies every GET and POST to `upstream`, one connection each."""
    session = requests.Session()

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _proxy(self):
            with inflight:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    res = session.request(self.command, upstream + self.path, data=body, timeout=30,
                                          headers={k: v for k, v in self.headers.items()
                                                   if k.lower() not in ("host", "connection")})
                    status, payload, ctype = res.status_code, res.content, res.headers.get("Content-Type", "")
                except requests.RequestException as exc:  # what the watchdog answers then
                    status, payload, ctype = 500, str(exc).encode(), "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)

        do_GET = do_POST = _proxy

    return Proxy


def relay(child: subprocess.Popen, out):
    for line in child.stdout:
        out.write(line)
        out.flush()


def main() -> int:
    port, upstream, routing_s = int(sys.argv[1]), sys.argv[2].rstrip("/"), float(sys.argv[3])
    command = sys.argv[sys.argv.index("--") + 1:]
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    out = sys.stdout.buffer
    threading.Thread(target=relay, args=(child, out), daemon=True).start()
    inflight = Inflight()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), proxy_handler(upstream, inflight))
    server.daemon_threads = True
    done = threading.Event()

    def shutdown():
        time.sleep(routing_s)  # still routing
        server.shutdown()
        server.server_close()  # no new connections
        inflight.wait_idle()  # its own requests answered: exit at once
        done.set()

    def on_sigterm(*_):
        child.send_signal(signal.SIGTERM)  # forwarded at once
        threading.Thread(target=shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Python runs a signal's handler in the main thread, between bytecodes; the kernel
    # may deliver SIGTERM to any thread, and then nothing wakes a main thread blocked
    # in a plain wait(): the handler would never run (seen under load, 1 in ~10).
    # Waking every 50 ms lets it run.
    while not done.wait(0.05):
        pass
    out.flush()
    child.kill()  # the container ends with the watchdog
    child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
