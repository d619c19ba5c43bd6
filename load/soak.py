"""Soak: steady load at ~80% of measured capacity with ~5% bad inputs, for a long time.

    python load/soak.py --build build/classifier --artifacts artifacts/classifier --duration 600
    python load/soak.py --function diabetes --build build/diabetes --artifacts artifacts/diabetes
    make soak FUNCTION=diabetes DURATION=300

Starts the function (python index.py in the build folder, as `make run` does),
measures its capacity with a short closed-loop burst (or takes --rate), then
sends an open-loop steady stream at --load-factor (0.8) of it: the function's own
load inputs (traffic.load_inputs: functions/<name>/load_inputs.py; the classifier's
real photos in JPEG/PNG/WebP at 320-1280 px, diabetes' real patients' rows), and
--bad-share (5%) of the client mistakes the function declares there (the
classifier's: empty, corrupt, truncated, bad topk, wrong Content-Type; diabetes':
malformed JSON, a missing feature, ...; a function that declares none gets none),
each with its own X-Request-Id. It prints, as it goes, the function's RSS every
--sample-s seconds and the p99 latency of every minute (beside its latency
contract's bound, for reference: the soak judges memory and the log, not latency),
and at the end:

- RSS growth after warm-up (--warmup-s, default 20% of the run, at least 20 s): the
  trend of the RSS floor (the lowest sample of each trailing --window-s, 10 s), as a
  Theil-Sen slope with its 95% interval, times the time after warm-up; fails when
  that exceeds --max-rss-growth-mib (32). The floor-to-floor difference is printed
  beside it;
- lost log lines: requests that got an answer but have no `inference` line in the
  function's log (and duplicated lines); fails on any;
- 5xx answers (any is a failure: the load stays below capacity) and bad inputs
  not answered with their 4xx.

Exit 0 when every check holds, 1 otherwise. --json writes the summary.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from scipy.stats import theilslopes

from loadkit import traffic
from loadkit.functionlog import FunctionLog
from loadkit.localrun import FunctionProcess, proc_kib
from loadkit.stats import percentile
from loadkit.traffic import Picker, RequestIds


def rss_mib(pid: int) -> float:
    return proc_kib(pid, "VmRSS") / 1024


def rss_growth(samples: list[tuple[float, float]], warmup_s: float, window_s: float) -> dict | None:
    """How much the RSS grew after the warm-up, as a trend; None with too few samples.

    Floors, not samples: a large photo's decode buffers lift RSS by tens of MiB for
    a moment and are given back, so any one sample may catch them; a leak lifts the
    floor itself. A trend, not first-to-last: glibc gives a waitress thread its own
    malloc arena the first time it allocates under a burst (docs/settings.md, Memory),
    which lifts the floor in a few steps of 10-25 MiB that then stay flat (a fresh
    clone's CI read +38.5 MiB first-to-last that way); a leak grows with every
    request. The Theil-Sen slope (scipy) follows the line most floor pairs agree on,
    so a few steps move it little and a steady leak sets it.
    """
    after = [(t, v) for t, v in samples if t >= warmup_s]
    if not after:
        return None
    first_t = after[0][0]
    floors = [(t, min(v for u, v in after if t - window_s <= u <= t)) for t, _ in after if t >= first_t + window_s]
    if len(floors) < 3:
        return None
    times, values = [t for t, _ in floors], [v for _, v in floors]
    fit = theilslopes(values, times, alpha=0.95)
    span = after[-1][0] - first_t
    return {"floor_first_mib": values[0], "floor_last_mib": values[-1],
            "floor_growth_mib": round(values[-1] - values[0], 1), "floors": len(floors), "span_s": span,
            "slope_mib_per_min": round(60 * float(fit.slope), 2),
            "slope_ci95_mib_per_min": [round(60 * float(fit.low_slope), 2), round(60 * float(fit.high_slope), 2)],
            "growth_mib": round(float(fit.slope) * span, 1)}


def p99(values: list[float]) -> float | None:
    """The p99 the SLO contracts compute (stats.percentile); None for no values."""
    return percentile(values, 0.99) if values else None


def measure_capacity(url: str, corpus, seconds: float, concurrency: int) -> float:
    """Closed-loop throughput with `concurrency` clients: what the replica can do."""
    picker = Picker(corpus, seed=1)
    stop_at = time.monotonic() + seconds
    done = [0]
    lock = threading.Lock()

    def client():
        session = requests.Session()
        while time.monotonic() < stop_at:
            payload = picker.payload()
            res = session.post(url + "/", data=payload.body, headers={"Content-Type": payload.content_type},
                               timeout=30)
            if res.status_code == 200:
                with lock:
                    done[0] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    return done[0] / (time.monotonic() - started)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="classifier",
                        help="the function: a folder of functions/ or a path to one; its load inputs and bad "
                             "requests are sent (functions/<name>/load_inputs.py) and it is started under its name")
    parser.add_argument("--build", required=True, help="shrinkwrapped build folder (build/<function>)")
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--duration", type=float, default=600, help="seconds of steady load")
    parser.add_argument("--rate", type=float, help="requests/s (default: --load-factor x measured capacity)")
    parser.add_argument("--load-factor", type=float, default=0.8)
    parser.add_argument("--capacity-s", type=float, default=10, help="length of the capacity burst")
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--warmup-s", type=float, help="default: 20%% of --duration, at least 20 s")
    parser.add_argument("--sample-s", type=float, default=5)
    parser.add_argument("--window-s", type=float, default=10, help="trailing window of each RSS floor")
    parser.add_argument("--max-rss-growth-mib", type=float, default=32)
    parser.add_argument("--report-dir", default="reports/soak")
    parser.add_argument("--json", help="summary file (default: REPORT_DIR/soak.json)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the function")
    args = parser.parse_args(argv)
    if args.warmup_s is None:
        args.warmup_s = max(20.0, 0.2 * args.duration)
    try:  # printed beside each minute's p99, for reference only
        args.slo_p99_ms = traffic.latency_objective_ms(args.function)
    except ValueError:  # the function has no latency contract
        args.slo_p99_ms = None
    return args


def steady_rate(fn: FunctionProcess, args: argparse.Namespace, corpus) -> tuple[float | None, float]:
    """(measured capacity or None, the steady rate): --rate, else --load-factor x a capacity burst."""
    if args.rate:
        return None, args.rate
    capacity = measure_capacity(fn.url, corpus, args.capacity_s, concurrency=16)
    return capacity, max(1.0, args.load_factor * capacity)


class _Sender:
    """Sends requests from a pool of threads, each thread with its own session, and keeps
    every request's (t, rid, status or None, latency_s, expected_status)."""

    def __init__(self, url: str, threads: int):
        self.url = url
        self.results: list[tuple] = []
        self.lock = threading.Lock()
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(threads)

    def submit(self, t_rel: float, rid: str, body: bytes, content_type: str, query: str, expected: int | None):
        self.pool.submit(self._send, t_rel, rid, body, content_type, query, expected)

    def _send(self, t_rel: float, rid: str, body: bytes, content_type: str, query: str, expected: int | None):
        session = getattr(self.local, "session", None) or requests.Session()
        self.local.session = session
        started = time.perf_counter()
        try:
            res = session.post(self.url + "/" + (f"?{query}" if query else ""), data=body, timeout=30,
                               headers={"Content-Type": content_type, "X-Request-Id": rid})
            status = res.status_code
        except requests.RequestException:
            status = None
            self.local.session = None
        with self.lock:
            self.results.append((t_rel, rid, status, time.perf_counter() - started, expected))

    def latencies_200(self, first_s: float, end_s: float) -> list[float]:
        """Latencies of the 200s sent in [first_s, end_s) of the run."""
        with self.lock:
            return [r[3] for r in self.results if first_s <= r[0] < end_s and r[2] == 200]

    def close(self):
        """Waits for every request sent."""
        self.pool.shutdown(wait=True)


class _MinuteP99:
    """Prints the p99 of each minute's 200s once the minute is over (and of the last,
    partial one at the end), beside the latency contract's bound."""

    def __init__(self, sender: _Sender, slo_p99_ms: float | None):
        self.sender = sender
        self.contract = f" (latency contract: p99 <= {slo_p99_ms:g} ms)" if slo_p99_ms else ""
        self.reported = 0

    def report_until(self, now: float):
        minute = int(now // 60)
        if minute > self.reported:
            lat = self.sender.latencies_200(self.reported * 60, minute * 60)
            value = p99(lat)
            print(f"minute {self.reported + 1}: {len(lat)} answers, p99 "
                  f"{value * 1000 if value else float('nan'):.0f} ms{self.contract}", flush=True)
            self.reported = minute

    def report_partial(self):
        lat = self.sender.latencies_200(self.reported * 60, float("inf"))
        if lat:
            print(f"minute {self.reported + 1} (partial): {len(lat)} answers, p99 {p99(lat) * 1000:.0f} ms"
                  f"{self.contract}")


def next_request(rng: random.Random, picker: Picker, bads, bad_share: float) -> tuple:
    """(body, content type, query, expected status): a bad input with probability
    `bad_share`, else a load input with its query."""
    if rng.random() < bad_share:
        bad = rng.choice(bads)
        return bad.body, bad.content_type, bad.query, bad.expected_status
    payload = picker.payload()
    query, _predictions = picker.query(payload)
    return payload.body, payload.content_type, query, 200


def run_load(fn: FunctionProcess, args: argparse.Namespace, corpus, bads, rate: float) -> tuple[list, list]:
    """Send at `rate` for --duration, printing RSS every --sample-s and p99 per minute.

    -> (results: (t, rid, status or None, latency_s, expected_status) per request,
        rss: (t, MiB) samples).
    """
    rss: list[tuple[float, float]] = []
    ids = RequestIds("soak")
    picker = Picker(corpus, seed=7)
    rng = random.Random(11)
    sender = _Sender(fn.url, max(8, int(rate)))
    minutes = _MinuteP99(sender, args.slo_p99_ms)
    start = time.monotonic()
    next_sample = 0.0
    n = 0
    while (now := time.monotonic() - start) < args.duration:
        if now >= next_sample:
            rss.append((round(now, 1), round(rss_mib(fn.pid), 1)))
            next_sample += args.sample_s
            print(f"t={now:6.0f}s rss={rss[-1][1]:.1f} MiB sent={n}", flush=True)
        minutes.report_until(now)
        wait = start + n / rate - time.monotonic()  # read the clock once: it moves between two reads
        if wait > 0:
            time.sleep(min(wait, 0.05))
            continue
        sender.submit(now, ids.next(), *next_request(rng, picker, bads, args.bad_share))
        n += 1
    sender.close()
    rss.append((round(time.monotonic() - start, 1), round(rss_mib(fn.pid), 1)))
    minutes.report_partial()
    return sender.results, rss


def verdict(args: argparse.Namespace, log: FunctionLog, results: list, rss: list, exit_code: int,
            capacity: float | None, rate: float) -> dict:
    """The run's summary, with `failures`: what broke a promise of the soak."""
    lines = log.lines
    per_id: dict[str, int] = {}
    for line in lines:
        if line.get("event") == "inference":
            per_id[line.get("request_id")] = per_id.get(line.get("request_id"), 0) + 1
    answered = [r for r in results if r[2] is not None]
    lost = [r[1] for r in answered if per_id.get(r[1], 0) == 0]
    duplicated = [rid for rid, count in per_id.items() if count > 1]
    not_json = len(log.broken)
    server_errors = [r for r in answered if r[2] >= 500]
    # a bad input may meet a full queue first (429 is checked before preprocessing)
    wrong_bad = [r for r in answered if r[4] != 200 and r[2] not in (r[4], 429)]
    after = [v for t, v in rss if t >= args.warmup_s]
    memory = rss_growth(rss, args.warmup_s, args.window_s)
    growth = memory and memory["growth_mib"]
    minutes = {}
    for r in answered:
        if r[2] == 200:
            minutes.setdefault(int(r[0] // 60) + 1, []).append(r[3])
    summary = {
        "function": args.function, "slo_p99_ms": args.slo_p99_ms,
        "duration_s": args.duration, "capacity_rps": capacity and round(capacity, 1), "rate_rps": round(rate, 1),
        "sent": len(results), "answered": len(answered), "no_answer": len(results) - len(answered),
        "statuses": {str(k): v for k, v in sorted(
            {s: sum(1 for r in answered if r[2] == s) for s in {r[2] for r in answered}}.items())},
        "p99_ms_per_minute": {m: round(p99(v) * 1000, 1) for m, v in sorted(minutes.items())},
        "rss_mib": rss, "rss_trend": memory, "rss_growth_mib": growth,
        "rss_max_after_warmup_mib": max(after) if after else None,
        "lost_lines": len(lost), "lost_examples": lost[:5], "duplicated_lines": len(duplicated),
        "not_json_lines": not_json, "server_errors": len(server_errors), "bad_inputs_misanswered": len(wrong_bad),
        "function_exit_code": exit_code, "shutdown_logged": any(line.get("event") == "shutdown" for line in lines),
    }
    failures = []
    if growth is None or growth > args.max_rss_growth_mib:
        failures.append(f"RSS grew {growth} MiB after warm-up by its trend (limit {args.max_rss_growth_mib:g})")
    if lost or duplicated or not_json:
        failures.append(f"log lines: {len(lost)} lost, {len(duplicated)} duplicated, {not_json} not JSON")
    if server_errors:
        failures.append(f"{len(server_errors)} answers were 5xx")
    if wrong_bad:
        failures.append(f"{len(wrong_bad)} bad inputs were not answered with their 4xx")
    if exit_code != 0:
        failures.append(f"the function exited with {exit_code}")
    summary["failures"] = failures
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    corpus, bads = traffic.load_inputs(args.function)
    if not bads:
        args.bad_share = 0.0  # the function declares no client mistakes to send
    env = {"ARTIFACTS_DIR": str(Path(args.artifacts).resolve()), **dict(item.split("=", 1) for item in args.env)}
    fn = FunctionProcess(Path(args.build).resolve(), env, name=traffic.function_dir(args.function).name,
                         log=report_dir / "function.log")
    try:
        fn.start(timeout=180)
        capacity, rate = steady_rate(fn, args, corpus)
        print(f"soak: {args.function}, capacity {capacity and round(capacity, 1)} req/s, steady load {rate:.1f} req/s "
              f"for {args.duration:g} s, {args.bad_share:.0%} bad inputs, warm-up {args.warmup_s:g} s", flush=True)
        results, rss = run_load(fn, args, corpus, bads, rate)
    finally:
        exit_code = fn.stop()
    summary = verdict(args, fn.read_log(), results, rss, exit_code, capacity, rate)
    memory = summary["rss_trend"]
    if memory:
        low, high = memory["slope_ci95_mib_per_min"]
        print(f"memory: RSS floor trend {memory['slope_mib_per_min']:+.2f} MiB/min (95% CI {low:+.2f} to {high:+.2f},"
              f" Theil-Sen over {memory['floors']} floors) -> {memory['growth_mib']:+.1f} MiB over the"
              f" {memory['span_s']:g} s after warm-up (limit {args.max_rss_growth_mib:g}); floor first to last"
              f" {memory['floor_growth_mib']:+.1f} MiB", flush=True)
    print("SOAK SUMMARY " + json.dumps(summary), flush=True)
    Path(args.json or report_dir / "soak.json").write_text(json.dumps(summary, indent=2))
    for failure in summary["failures"]:
        print("FAIL: " + failure, flush=True)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
