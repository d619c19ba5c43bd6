"""How many demo users this machine can serve right now: measured, not assumed.

    python load/sizing.py --url http://127.0.0.1:8080 --function classifier [--max-users 6]

`make demo` runs it on the function it has just started, before the load. One
client posts the function's own load inputs back to back for --seconds (default 4) or
--requests (default 200: a fast function's probe must not outweigh the load in its log):
that throughput is what the machine serves one request at a time *now*, other work
on it included (a floor: batching and the second core raise it). Each demo user
posts, waits its think time (0.1-0.5 s, mean 0.3) and posts again, so U users offer
about U / (0.3 s + latency) requests a second. The demo takes the most users (up to
--max-users) that offer at most --share (default half) of the measured throughput:
queues stay short and the p99 contract judges the function, not an overloaded
laptop. A machine doing other work measures slower and gets fewer users.

Prints one line (what was measured, the users chosen and why) to stderr, the number
of users to stdout; --json writes the figures. Exit 1 when the probe got no answer.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

import requests

from loadkit import traffic
from loadkit.stats import percentile

THINK_MEAN_S = sum(traffic.THINK_SECONDS) / 2  # a Locust user's mean wait between requests


@dataclass
class Sizing:
    probe_seconds: float
    probe_requests: int
    probe_rps: float          # one client, back to back
    probe_p50_ms: float
    users: int
    offered_rps: float        # what `users` offer at the probe's latency
    share: float              # offered_rps / probe_rps
    limited_by: str           # "machine" (the share) or "max-users"

    def describe(self) -> str:
        why = "the demo's most" if self.limited_by == "max-users" else "more would offer over the share"
        return (f"sizing: one client back to back, {self.probe_requests} requests in {self.probe_seconds:.1f} s, "
                f"{self.probe_rps:.0f} req/s (p50 {self.probe_p50_ms:.1f} ms) from this machine now; "
                f"{self.users} users ({why}) offer about {self.offered_rps:.0f} req/s, {self.share:.0%} of it")


def users_for(probe_rps: float, probe_latency_s: float, share: float, max_users: int) -> tuple[int, str]:
    """The most users, 1 to max_users, whose offered rate is at most `share` of probe_rps."""
    if not (0 < share <= 1 and max_users >= 1):
        raise ValueError(f"share is in (0, 1] and max_users >= 1, got {share!r}, {max_users!r}")
    cycle_s = THINK_MEAN_S + probe_latency_s
    fits = max(1, math.floor(share * probe_rps * cycle_s))
    return (max_users, "max-users") if fits >= max_users else (fits, "machine")


def probe(url: str, payloads: list[traffic.Payload], seconds: float,
          requests_at_most: int) -> tuple[list[float], float]:
    """(round-trip seconds of the 200 answers, seconds taken): one client posting back to back
    for `seconds` or `requests_at_most` requests, whichever ends first."""
    ids = traffic.RequestIds("size")
    picker = traffic.Picker(payloads, seed=1)
    took, sent = [], 0
    with requests.Session() as session:
        began = time.monotonic()
        while time.monotonic() < began + seconds and sent < requests_at_most:
            sent += 1
            payload = picker.payload()
            start = time.monotonic()
            query = payload.queries[0][0]
            res = session.post(url.rstrip("/") + ("/?" + query if query else "/"), data=payload.body, timeout=30,
                               headers={"Content-Type": payload.content_type, "X-Request-Id": ids.next()})
            if res.status_code == 200:
                took.append(time.monotonic() - start)
        return took, time.monotonic() - began


def size(url: str, function: str, seconds: float, requests_at_most: int, share: float, max_users: int) -> Sizing:
    payloads, _bad = traffic.load_inputs(function)
    took, seconds = probe(url, payloads, seconds, requests_at_most)
    if not took:
        raise RuntimeError(f"the function at {url} answered no request with 200 in {seconds:.1f} s")
    rps = len(took) / seconds
    mean_s = sum(took) / len(took)
    users, limited_by = users_for(rps, mean_s, share, max_users)
    offered = users / (THINK_MEAN_S + mean_s)
    return Sizing(round(seconds, 2), len(took), round(rps, 1), round(percentile(took, 0.5) * 1000, 2),
                  users, round(offered, 1), round(offered / rps, 3), limited_by)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--function", required=True, help="a folder of functions/ (its load inputs are sent)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.5, help="of the measured throughput the users may offer")
    parser.add_argument("--max-users", type=int, default=6)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        sizing = size(args.url, args.function, args.seconds, args.requests, args.share, args.max_users)
    except (RuntimeError, requests.RequestException) as exc:
        print(f"sizing: {exc}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(asdict(sizing), out)
    print(sizing.describe(), file=sys.stderr)
    print(sizing.users)
    return 0


if __name__ == "__main__":
    sys.exit(main())
