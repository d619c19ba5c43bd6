"""SIGTERM with the watchdog in front: the `shutdown` line survives, nothing routed is refused.

The of-watchdog routes for `healthcheck_interval` (H) after SIGTERM, then exits as
soon as its own requests are answered, and the container (our process with it)
ends: a `shutdown` line written after that never reaches the log. The app reads
H from the same environment, writes `shutdown` a little before H and keeps
serving until DRAIN_SECONDS (> H). Checked through watchdog_standin.py, which
copies the watchdog's sequence (relayed stdout, forwarded SIGTERM, routing for H,
exit when idle, the function killed with it), under steady traffic.
"""
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from loadkit.localrun import FunctionProcess, free_port

HERE = Path(__file__).resolve().parent
# the image's ratio (healthcheck_interval 5s, DRAIN_SECONDS 6), shortened
ROUTING_S, DRAIN_S = 2.0, 2.5


def run_under_watchdog(build: Path, routing_s: float, app_env: dict) -> tuple[list, list[dict]]:
    port, app_port = free_port(), free_port()
    watchdog = FunctionProcess(
        build, {"PORT": str(app_port), **app_env}, name="standin", port=port,
        command=[sys.executable, str(HERE / "watchdog_standin.py"), str(port), f"http://127.0.0.1:{app_port}",
                 str(routing_s), "--", sys.executable, "index.py"],
        own_session=True)  # the function in the watchdog's process group: stop() ends both
    stop = threading.Event()
    clients = []
    try:
        watchdog.start(timeout=60)
        url = watchdog.url
        results = []  # (seconds after SIGTERM, request id, status or the error)
        sigterm_at = [None]

        def client():
            while not stop.is_set():
                rid = "wd-" + uuid.uuid4().hex[:8]
                sent = time.monotonic()
                try:
                    status = requests.post(url + "/", data=b"ok", headers={"X-Request-Id": rid,
                                           "Content-Type": "application/octet-stream"}, timeout=10).status_code
                except requests.ConnectionError:
                    status = "refused"  # the watchdog stopped accepting: routing is over
                    stop.set()
                at = sent - sigterm_at[0] if sigterm_at[0] else -1.0
                results.append((at, rid, status))
                time.sleep(0.02)

        clients += [threading.Thread(target=client, daemon=True) for _ in range(3)]
        for t in clients:
            t.start()
        time.sleep(0.5)
        sigterm_at[0] = time.monotonic()
        watchdog.proc.send_signal(signal.SIGTERM)  # to the watchdog only: it forwards SIGTERM itself
        watchdog.wait_exit(60)
    finally:  # a watchdog that never gets ready or never exits fails the test, and leaves nothing running
        stop.set()
        watchdog.stop(signal.SIGKILL)
    for t in clients:
        t.join(15)
    return results, watchdog.lines()  # what it relayed: what reaches the container's log


def test_the_shutdown_line_is_written_before_the_watchdog_exits(build):
    results, lines = run_under_watchdog(build("standin"), ROUTING_S,
                                        {"healthcheck_interval": f"{ROUTING_S:g}s", "DRAIN_SECONDS": str(DRAIN_S)})
    events = [line["event"] for line in lines]
    assert "shutdown" in events, events[-5:]
    shutdown = lines[events.index("shutdown")]
    assert shutdown["still_serving"] is True and shutdown["drain_ms"] < ROUTING_S * 1000
    # every request the watchdog routed was answered, before and after SIGTERM
    routed = [r for r in results if r[2] != "refused"]
    assert routed and {r[2] for r in routed} == {200}, [r for r in routed if r[2] != 200][:5]
    assert max(r[0] for r in routed) > ROUTING_S - 0.5  # traffic ran until routing ended
    # and each has its one line, those answered after the shutdown line included
    per_id = {}
    for line in lines:
        if line.get("event") == "inference":
            per_id[line["request_id"]] = per_id.get(line["request_id"], 0) + 1
    missing = [r for r in routed if per_id.get(r[1]) != 1]
    assert len(missing) <= 1, missing  # at most the very last, in the pipe when the watchdog exits
