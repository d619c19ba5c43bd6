"""Summarise a function's JSON log: requests by status, latency percentiles, top classes.

    python load/logsummary.py reports/demo/function.log [--sent reports/demo/sent.jsonl]

With --sent (the locustfile's --sent-log), it also checks that every request the
load generator sent has its log line with the same status, and exits 1 if not.
A stdout line that is not a JSON object breaks the log contract and exits 1 too.
Percentiles are computed as Loki computes quantile_over_time (load/loadkit/stats.py), so
they are the numbers the SLO report gives for the same log.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from functools import partial

from loadkit import stats
from loadkit.functionlog import read_log

# Loki's quantile_over_time, so these agree with the SLO report on the same log; 0.0 for no requests
percentile = partial(stats.percentile, empty=0.0)


def summarise(lines: list[dict]) -> dict:
    requests = [line for line in lines if line.get("event") == "inference"]
    latencies = [float(r["latency_ms"]) for r in requests if "latency_ms" in r]
    ok = [float(r["latency_ms"]) for r in requests if r.get("status") == 200 and "latency_ms" in r]
    return {
        "lines": len(lines),
        "events": dict(Counter(line.get("event", "?") for line in lines)),
        "requests": len(requests),
        "by_status": dict(sorted(Counter(r.get("status") for r in requests).items(), key=lambda kv: str(kv[0]))),
        "errors": dict(Counter(r["error"] for r in requests if r.get("error")).most_common()),
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                       "p99": percentile(latencies, 0.99), "max": max(latencies, default=0.0)},
        "latency_200_ms": {"p50": percentile(ok, 0.5), "p99": percentile(ok, 0.99)},
        "top1_classes": dict(Counter(r["top1_class"] for r in requests if r.get("top1_class")).most_common(6)),
        "model_versions": dict(Counter(r.get("model_version") for r in requests)),
    }


def match_sent(lines: list[dict], sent_path: str) -> tuple[int, list[str]]:
    """(requests sent, problems): each sent request id must have its log line, same status."""
    logged = {line.get("request_id"): line for line in lines if line.get("event") == "inference"}
    problems, count = [], 0
    with open(sent_path, encoding="utf-8") as sent_file:
        for raw in sent_file:
            sent = json.loads(raw)
            count += 1
            # behind the gateway the function logs the gateway's call id, which it echoes back
            rid = sent.get("echoed_id") or sent["request_id"]
            line = logged.get(rid)
            if line is None:
                problems.append(f"{rid}: no log line")
            elif sent.get("status") and line.get("status") != sent["status"]:
                problems.append(f"{rid}: logged status {line.get('status')}, client saw {sent['status']}")
    return count, problems


def print_summary(path: str, summary: dict, broken: int) -> None:
    lat, ok = summary["latency_ms"], summary["latency_200_ms"]
    print(f"function log {path}: {summary['lines']} lines, {summary['requests']} requests"
          + (f", {broken} NOT JSON (log contract broken)" if broken else ""))
    print("  by status:   " + ", ".join(f"{k}: {v}" for k, v in summary["by_status"].items()))
    if summary["errors"]:
        print("  error codes: " + ", ".join(f"{k}: {v}" for k, v in summary["errors"].items()))
    print(f"  latency_ms:  p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, p99 {lat['p99']:.1f}, max {lat['max']:.1f}"
          f"  (200s only: p50 {ok['p50']:.1f}, p99 {ok['p99']:.1f})")
    if summary["top1_classes"]:  # a classifier's; a regression logs no class
        print("  top1 class:  " + ", ".join(f"{k} {v}" for k, v in summary["top1_classes"].items()))
    print("  versions:    " + ", ".join(f"{k}: {v}" for k, v in summary["model_versions"].items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("--sent", help="the locustfile's --sent-log: check every request has its log line")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    lines, broken_lines = read_log(args.log)
    broken = len(broken_lines)
    summary = summarise(lines)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(args.log, summary, broken)
    code = 1 if broken else 0
    if args.sent:
        count, problems = match_sent(lines, args.sent)
        if problems:
            print(f"  {len(problems)} of {count} requests sent have no matching log line, e.g.:")
            for problem in problems[:5]:
                print("    " + problem)
            code = 1
        else:
            print(f"  all {count} requests sent have their log line, with the status the client saw")
    return code


if __name__ == "__main__":
    sys.exit(main())
