"""Goodput under overload with impatient clients: answers clients actually received.

N client threads each POST the function's own load inputs back to back (--function,
default classifier: traffic.load_inputs, functions/<name>/load_inputs.py; the
classifier's real photos, diabetes' real patients' rows), each request with a client
timeout (a caller that gives up, as mobile clients and upstream proxies do);
--timeout 0.3,2 gives every other client the second timeout (a mix of impatient
and patient callers). A 429 makes that client wait RETRY_S before its next request. Goodput is
the rate of 200 answers that arrived within the client's timeout; work the
function did for a client that had already hung up is wasted.

    python load/goodput.py --host http://127.0.0.1:8080 --clients 32 --timeout 0.3,2 --duration 20
    python load/goodput.py --host http://127.0.0.1:8080 --function diabetes --timeout 0.02,0.2

With --log (the function's JSON log) it also reports what the function did:
lines written, lines with client_gone, and how many of those were computed anyway.
"""
import argparse
import json
import sys
import threading
import time
from collections import Counter

import requests

from loadkit import traffic
from loadkit.functionlog import raw_lines, read_log

RETRY_S = 0.05


def client(host: str, timeout_s: float, stop_at: float, payloads: list, outcomes: Counter,
           lock: threading.Lock, seed: int):
    picker = traffic.Picker(payloads, seed=seed)  # each client its own generator: threads share none
    session = requests.Session()
    while time.monotonic() < stop_at:
        payload = picker.payload()
        query, _predictions = picker.query(payload)
        try:
            res = session.post(host + "/" + (f"?{query}" if query else ""), data=payload.body, timeout=timeout_s,
                               headers={"Content-Type": payload.content_type})
            outcome = str(res.status_code)
        except requests.Timeout:
            outcome = "client_timeout"
            session.close()
            session = requests.Session()  # the connection was cut: a new one
        except requests.ConnectionError:
            outcome = "connection_error"
            session = requests.Session()
        with lock:
            outcomes[outcome] += 1
        if outcome == "429":
            time.sleep(RETRY_S)


def summarise_log(path: str, since_line: int) -> dict:
    lines = [line for line in read_log(path, since_line).lines if line.get("event") == "inference"]
    gone = [line for line in lines if line.get("client_gone")]
    return {"log_lines": len(lines),
            "client_gone_lines": len(gone),
            "client_gone_computed": sum(1 for line in gone if line.get("status") == 200),
            "client_gone_skipped": sum(1 for line in gone if line.get("error") == "client_gone"),
            "computed": sum(1 for line in lines if line.get("batch_size"))}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--function", default="classifier",
                        help="whose load inputs to send: a folder of functions/ or a path to one (default classifier)")
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--timeout", default="0.3,2",
                        help="client timeout(s) in seconds, comma-separated: client i gets the i-th mod n")
    parser.add_argument("--duration", type=float, default=40)
    parser.add_argument("--log", help="the function's JSON log, to count what it computed")
    parser.add_argument("--json", help="write the summary here too")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    payloads, _bad = traffic.load_inputs(args.function)  # good requests only: goodput counts 200s
    since = 0
    if args.log:
        since = len(raw_lines(args.log))
    outcomes, lock = Counter(), threading.Lock()
    stop_at = time.monotonic() + args.duration
    timeouts = [float(t) for t in args.timeout.split(",")]
    per_timeout = [Counter() for _ in timeouts]
    threads = [threading.Thread(target=client, args=(args.host.rstrip("/"), timeouts[i % len(timeouts)], stop_at,
                                                      payloads, per_timeout[i % len(timeouts)], lock, i), daemon=True)
               for i in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + max(timeouts) + 30)
    elapsed = time.monotonic() - started
    for counts in per_timeout:
        outcomes.update(counts)
    summary = {"function": args.function, "clients": args.clients, "client_timeouts_s": timeouts,
               "duration_s": round(elapsed, 1),
               "by_timeout": {str(t): dict(c) for t, c in zip(timeouts, per_timeout)},
               "outcomes": dict(outcomes), "sent": sum(outcomes.values()),
               "goodput_rps": round(outcomes["200"] / elapsed, 2)}
    if args.log:
        time.sleep(1.0)  # the function finishes what it had
        summary.update(summarise_log(args.log, since))
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
