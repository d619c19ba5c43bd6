"""`make bench-judge`: what one comparison costs, in time and peak memory, at 10^4, 10^5,
10^6 and 10^7 requests a version, by the path that reads the versions (docs/review.md).

Every input is the committed log of identical code (slo/calibration/identical-code.jsonl.gz)
resampled to the size, the candidate 25% slower (every latency x1.25), so that each run
must hold:

  lines       `make compare`'s line path on a log file (every line held by the file
              backend, the contracts' LogQL evaluated on it, every request judged): the
              file is the pool's lines drawn with replacement, 100 requests a second a
              version, interleaved. Above the line path's budget (COMPARE_MEMORY_MB, 1024
              by default) the run is the refusal, as the command prints it; at 10^7 the
              file is not written whole but sized (a real first MiB, the rest a sparse
              hole): the refusal reads only that much;
  streamed    the aggregate path on the same log file: read once, line by line, into bins
              (compare/stream.py); up to --stream-max requests a version (10^7 would write
              a 9 GB file: the time grows with the lines, the memory does not);
  aggregates  the aggregate path from aggregate answers (the interface of
              compare/binned.py, as JSON): per version a latency histogram in Loki's 1 ms
              `floor` bins, status and class counts, and the same histogram over 240 steps,
              each count drawn (multinomial) from the pool's own distribution.

Each run is a child process: its wall time and its peak RSS (VmHWM of its program) are
the tool's, imports included.

    PYTHONPATH=slo .venv/bin/python load/benchmark/judge_bench.py [--sizes 10000,100000] \\
        [--json reports/bench-judge.json] [--work /tmp/bench-judge]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POOL = os.path.join(REPO, "slo", "calibration", "identical-code.jsonl.gz")
FEATURE = os.path.join(REPO, "functions", "classifier", "compare", "canary.feature")
BASE, CAND = "base-5a0ed7050d97", "candidate-5a0ed7050d97-dirty"
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
RATE = 100.0  # requests a second a version
SLOWER = 1.25
STEPS = 240  # of the stepped aggregate answer
T0 = 1_796_500_000.0  # the logs' first second (unix)


def duration_s(n: int) -> float:
    return n / RATE


def window(n: int) -> tuple[float, int]:
    """(evaluation time, window seconds) that hold the whole generated log."""
    return T0 + duration_s(n) + 1, int(duration_s(n)) + 2


# -- inputs ------------------------------------------------------------------------------

def read_pool() -> list:
    from logslo import calibration
    return calibration.read_pool(POOL)


def templates(pool: list) -> tuple[list, list]:
    """Each pool line as JSON without its timestamp, as a baseline and as the slower candidate."""
    base, cand = [], []
    for line in pool:
        rest = {k: v for k, v in line.items() if k != "timestamp"}
        base.append(json.dumps({**rest, "model_version": BASE})[1:])
        slower = round(line["latency_ms"] * SLOWER, 3)
        cand.append(json.dumps({**rest, "model_version": CAND, "latency_ms": slower})[1:])
    return base, cand


def stamp(at: float) -> str:
    millis = round(at * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(millis // 1000)) + f"{millis % 1000:03d}Z"


def write_log(path: str, pool: list, n: int, seed: int = 0) -> None:
    """n lines a version drawn with replacement from the pool, interleaved at RATE a version."""
    rng = np.random.default_rng(seed)
    base, cand = templates(pool)
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, n, 100_000):
            count = min(100_000, n - start)
            picks = rng.integers(0, len(pool), size=(count, 2))
            for i, (b, c) in enumerate(picks, start):
                at = T0 + i / RATE
                out.write(f'{{"timestamp": "{stamp(at)}", {base[b]}\n{{"timestamp": "{stamp(at + 0.5 / RATE)}", '
                          f"{cand[c]}\n")


def sized_log(path: str, pool: list, n: int) -> None:
    """A log file of the size n lines a version would have: a real first MiB, then a hole."""
    write_log(path, pool, 4_000)
    probe = os.path.getsize(path) / 8_000
    os.truncate(path, int(probe * 2 * n))


def write_counts(path: str, pool: list, n: int, seed: int = 0) -> None:
    """Both versions' aggregate answers at n requests a version (binned.py's interface)."""
    rng = np.random.default_rng(seed)
    ok = [line for line in pool if line["status"] == 200]
    status = Counter(str(line["status"]) for line in pool)
    classes = Counter(line["top1_class"] for line in ok if line.get("top1_class"))
    out = {}
    for version, factor in ((BASE, 1.0), (CAND, SLOWER)):
        floors = np.floor(np.array([line["latency_ms"] for line in pool]) * factor).astype(int)
        low, high = int(floors.min()), int(floors.max())
        share = np.bincount(floors - low, minlength=high - low + 1) / len(floors)
        per_step = rng.multinomial(n, np.full(STEPS, 1 / STEPS))
        rows = np.array([rng.multinomial(k, share) for k in per_step])
        uppers = [float(b + 1) for b in range(low, high + 1)]
        codes = list(status)
        drawn = rng.multinomial(n, np.array([status[c] for c in codes]) / len(pool))
        answers = int(drawn[codes.index("200")])
        names = list(classes)
        picked = rng.multinomial(answers, np.array([classes[c] for c in names]) / len(ok))
        step_s = duration_s(n) / STEPS
        out[version] = {
            "requests": n,
            "latency_bins": [[float(low), 0]] + [[u, int(c)] for u, c in zip(uppers, rows.sum(axis=0))],
            "status": {c: int(k) for c, k in zip(codes, drawn) if k},
            "classes": {c: int(k) for c, k in zip(names, picked) if k},
            "latency_steps": [[T0 + s * step_s, [[uppers[i], int(row[i])] for i in np.flatnonzero(row)]]
                              for s, row in enumerate(rows)],
        }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(out, handle)


# -- one run (a child process) -------------------------------------------------------------

def child(kind: str, path: str, n: int) -> dict:
    from logslo import settings
    from logslo.compare import feature, paths
    from logslo.compare.binned import Binned
    from logslo.compare.sampling import Comparison
    contracts = feature.read(FEATURE)
    at, window_s = window(n)
    if kind == "aggregates":
        with open(path, encoding="utf-8") as handle:
            answers = json.load(handle)
        compared = feature.pair(Binned.from_counts(answers[BASE]), Binned.from_counts(answers[CAND]), BASE, CAND)
    else:
        slo = settings.from_env({"LOG_FILE": path, "COMPARE_PATH": "lines" if kind == "lines" else "aggregates"})
        try:
            reading = paths.choose(slo)
        except paths.TooBig as refusal:
            return {"refused": str(refusal)}
        compared = Comparison(reading.backend, "classifier", at, window_s, BASE, CAND, path=reading.path)
    verdict, judged = feature.decide(contracts, compared)
    return {"verdict": verdict, "requests": [compared.samples[v].requests for v in (BASE, CAND)],
            "contracts": {j.contract: [j.verdict, j.estimate, j.low, j.high] for j in judged}}


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program (VmHWM: getrusage's
    maxrss would count the forking parent's memory too, carried over the exec)."""
    with open("/proc/self/status", encoding="utf-8") as status:
        kb = next(int(text.split()[1]) for text in status if text.startswith("VmHWM:"))
    return round(kb / 1024, 1)


def measure(kind: str, path: str, n: int) -> dict:
    """One run in a child process: its answer, wall time and peak RSS."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "slo"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", kind, path, str(n)],
                            stdout=subprocess.PIPE, env=env)
    output = proc.stdout.read()
    proc.wait()
    seconds = time.perf_counter() - started
    result = json.loads(output) if proc.returncode == 0 else {"error": f"exit {proc.returncode}", "peak_rss_mb": 0}
    return {"kind": kind, "requests_a_version": n, "seconds": round(seconds, 2), **result}


# -- the command -----------------------------------------------------------------------

def run(sizes, work: str, stream_max: int, lines_max: int) -> list:
    os.makedirs(work, exist_ok=True)
    pool = read_pool()
    rows = []
    for n in sizes:
        counts = os.path.join(work, f"counts-{n}.json")
        write_counts(counts, pool, n)
        rows.append(measure("aggregates", counts, n))
        print(line(rows[-1]), flush=True)
        log = os.path.join(work, f"log-{n}.jsonl")
        written = n <= max(stream_max, lines_max)
        (write_log if written else sized_log)(log, pool, n)
        if n <= stream_max:
            rows.append(measure("streamed", log, n))
            print(line(rows[-1]), flush=True)
        rows.append(measure("lines", log, n))
        print(line(rows[-1]), flush=True)
        os.remove(log)
    return rows


def cpu() -> str:
    """The CPU the figures came from: its model and torch's capability level (when installed)."""
    model = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((text.split(":", 1)[1].strip() for text in info if text.startswith("model name")), model)
    try:
        import torch
        capability = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        capability = "torch not installed"
    return f"{model}, {os.cpu_count()} CPUs, capability {capability}"


def line(row: dict) -> str:
    what = row.get("refused") or row.get("error") or f"{row['verdict']}"
    return (f"{row['kind']:>10} {row['requests_a_version']:>10,} a version: {row['seconds']:7.2f} s, "
            f"{row['peak_rss_mb']:7.1f} MB peak RSS: {what}")


def table(rows: list) -> str:
    out = ["| path | requests a version | time (s) | peak RSS (MB) | verdict |", "|---|---:|---:|---:|---|"]
    for row in rows:
        what = ("refused: " + row["refused"]) if "refused" in row else row.get("verdict", row.get("error"))
        out.append(f"| {row['kind']} | {row['requests_a_version']:,} | {row['seconds']:.2f} | "
                   f"{row['peak_rss_mb']:.0f} | {what} |")
    return "\n".join(out)


def main(argv: list) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps({**child(argv[1], argv[2], int(argv[3])), "peak_rss_mb": peak_rss_mb()}))
        return 0
    parser = argparse.ArgumentParser(prog="judge_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="requests a version, comma separated")
    parser.add_argument("--work", default="/tmp/bench-judge", help="where the generated inputs go (removed logs)")
    parser.add_argument("--stream-max", type=int, default=1_000_000,
                        help="largest size streamed from a written log file")
    parser.add_argument("--lines-max", type=int, default=100_000,
                        help="largest size whose log is written for the line path (above: a sized file)")
    parser.add_argument("--json", help="write the rows here too")
    args = parser.parse_args(argv)
    print(f"judge bench on {cpu()}", flush=True)
    rows = run([int(s) for s in args.sizes.split(",")], args.work, args.stream_max, args.lines_max)
    print("\n" + table(rows))
    failed = [r for r in rows if "error" in r or ("verdict" in r and r["verdict"] != "hold")]
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"rows": rows, "cpu": cpu()}, handle, indent=2)
    for row in failed:
        print(f"NOT A HOLD: {line(row)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
