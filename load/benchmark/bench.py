"""`make bench`: how fast the classifier serves, and how far from its limits.

One run measures, on this machine:
  1. model-only forward throughput per batch size (compiled and eager): the limit;
  2. the in-process pipeline limit: decode + preprocess + forward per image, over
     windows as long as a served level's, each right after a served start of the
     same variant (the served run and its limit see the same minutes);
  3. the served function under closed-loop load (concurrency 1, 4, 16, real JPEGs):
     throughput, p50, p99;
     and the runtime alone (a stand-in model) under the same load at the top level,
     which splits the server's CPU per request into stages;
  4. the same load against the seed-style handler (load/benchmark/seed_handler): the baseline;
     3 and 4 start every server --rounds times, interleaved, and count the best start;
  5. cold start (process start to /ready 200) against `import torch` + artifact load;
  6. JSON logging cost as a share of a request's CPU time;
and prints the ratios the speed targets are stated in (docs/benchmarks.md, "Targets").
1-3 and 5 run for each MODEL_PRECISION (fp32, bf16) in the same run, side by side:
the bf16 artifacts are prepared once next to the fp32 ones (artifacts/classifier-bf16,
the fp32 package reused; the build's accuracy gate runs there) and served with
MODEL_PRECISION=bf16. On a CPU without native bf16 that variant serves fp32 (and says so).

    PYTHONPATH=load .venv/bin/python load/benchmark/bench.py [--duration 8] [--json reports/bench.json] \\
        [--precisions fp32]

Any other function (`make bench FUNCTION=diabetes`, `--function NAME`) gets the part that
means the same for every function (generic_bench): 3 with its own load inputs
(functions/<name>/load_inputs.py) and the runtime alone beside it, and 5 without the bare
load (process start to /ready). 1, 2, 4, 6, bf16 and the ratios are the classifier's: its
handler's in-process stages, a seed-style handler of the classifier, its artifact layout,
its log fields, targets stated for it; the run says it skips them.

The load generator is a small asyncio HTTP/1.1 client (keep-alive, prebuilt
requests) so that it takes as little of the shared CPUs as possible; it loads
both servers the same way. Limits (1, 2) are the best of a few repeats, served
numbers the best of --rounds process starts, for every server alike.

This file is the command: what runs in which order. The parts it runs are libraries
beside it: serving.py (starting a function, the closed loop, load levels, rounds),
limits.py (1, 2, 6 in process), coldstart.py (5), bench_report.py (the figures derived
from the measured ones, then the text), results.py (targets, JSON).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_report import derive, generic_report, report
from coldstart import cold_start, measure_cold_start
from limits import Pipeline, logging_cpu_ms, measure_in_process, prepare_bf16
from loadkit import traffic
from loadkit.localrun import CLASSIFIER as FUNCTION
from loadkit.localrun import REPO, FunctionProcess, free_port, import_build, shrinkwrap
from memory import ResidentMemory
from results import cpu_capability, cpu_model, write_json
from serving import (
    ORIGINAL_ENV,
    ClientCpu,
    Load,
    best_of_starts,
    build_requests,
    load_levels,
    log,
    payload_requests,
    real_jpegs,
    rotated,
    start_function,
    started,
)

SEED = REPO / "load" / "benchmark" / "seed_handler" / "app.py"
# the runtime with no model: answers {"length": n} through the same path (ids,
# batching, JSON, the log line, metrics), so what it costs per request is the
# runtime's own work
STANDIN = REPO / "tests" / "support" / "functions" / "standin"
# what `make bench` measures that is the classifier's only, and why (printed when skipped)
CLASSIFIER_ONLY = [
    ("model and pipeline limits (1, 2)", "measured in-process through the classifier's handler stages"),
    ("seed-style handler (4)", "a naive server of the classifier's model, its baseline"),
    ("bare load beside the cold start (5)", "import torch + the classifier's artifact layout"),
    ("JSON logging cost (6)", "timed with the classifier's log fields"),
    ("MODEL_PRECISION=bf16", "the classifier's precision setting"),
    ("target ratios", 'the targets are stated for the classifier (docs/benchmarks.md, "Targets")'),
]


def served_levels(server: FunctionProcess, load: Load) -> list[dict]:
    """One start of a server at every load level, with the client's CPU beside the server's
    and the server's resident memory (anonymous and file-backed) at the end of and during each."""
    return load_levels(server, load, meters=(ClientCpu(load), ResidentMemory(server.proc.pid)))


def seed_server(artifacts: Path) -> FunctionProcess:
    """The seed-style handler, started and ready."""
    port = free_port()
    # one torch thread per forward pass: the seed's better setting on 2 cores with its 4
    # waitress threads (c16 62.4 vs 49.2 req/s, c1 p50 27.7 vs 31.3 ms against torch's
    # default of one per core), as docs/benchmarks.md, "What each figure means", describes it
    return started(FunctionProcess(REPO, {"OMP_NUM_THREADS": "1"}, name="seed", port=port, base_env=ORIGINAL_ENV,
                                   command=[sys.executable, str(SEED), "--artifacts", str(artifacts),
                                            "--port", str(port)]))


def measure_runtime_only(tmp: Path, load: Load) -> list[dict]:
    """The runtime's own work: the stand-in model under the same requests, at the top level."""
    log("runtime only (stand-in model)")
    top = Load(load.requests, load.levels[-1:], load.warmup, load.duration)
    with start_function(shrinkwrap(STANDIN, tmp / "standin"), tmp / "none", {}, "standin") as standin:
        return served_levels(standin, top)


# -- the classifier -------------------------------------------------------------------
@dataclass
class Plan:
    """What every step of one run shares."""
    args: argparse.Namespace
    artifacts: Path  # the fp32 artifacts, which the seed-style handler serves too
    build: Path  # the shrinkwrapped classifier
    dirs: dict[str, Path]  # precision -> its artifacts
    jpegs: dict
    load: Load
    extra_env: dict[str, str]
    tmp: Path

    @property
    def precisions(self) -> list[str]:
        return list(self.dirs)


def prepare_variants(build: Path, artifacts: Path, precisions: list[str], res: dict) -> dict[str, Path]:
    """Import the handler as the served process does; each precision's artifacts (bf16 prepared once)."""
    import_build(build)
    # The handler first, as in the served process: it sets OMP_NUM_THREADS before torch
    # is imported, and OpenMP reads it once. Imported after torch, the compiled kernels
    # run 2-thread OpenMP teams in each of the 2 streams: bf16 b1 x2 measured 9 images/s
    # instead of 203-243.
    import function.handler  # noqa: F401 imported for its side effect, named above
    from torchfaas import Settings
    # the in-process limits allocate as the served function does (server.main)
    Settings().apply_torch_allocator()
    from torchfaas.toolkit.compiled import bf16_feature
    # ratios only compare within one run: the header says which machine it was
    res["bf16_feature"] = bf16_feature()
    dirs = {"fp32": artifacts}
    if "bf16" in precisions:
        log("bf16 artifacts (prepared once, then reused)")
        dirs["bf16"] = prepare_bf16(artifacts, build)
    for precision in precisions:
        variant = res["variants"][precision] = {"artifacts": str(dirs[precision])}
        if precision == "bf16":
            manifest = json.loads((dirs["bf16"] / "manifest.json").read_text())
            variant["gate"] = {k: v for k, v in (manifest.get("bf16_gate") or {}).items() if k != "photos"}
    return {p: dirs[p] for p in precisions}


def measure_limits(plan: Plan, res: dict) -> dict[str, Pipeline]:
    """The model-only and pipeline limits of each precision, and the log line's cost."""
    pipelines = {}
    for precision in plan.precisions:
        log(f"limits (in-process), {precision}")
        res["variants"][precision]["limits"], pipelines[precision] = measure_in_process(
            plan.build, plan.dirs[precision], plan.jpegs, plan.args.limit_seconds, precision)
    res["logging_ms"] = logging_cpu_ms(plan.build)
    return pipelines


def serve_rounds(plan: Plan, servers: list[tuple[str, str | None]], pipelines: dict, res: dict) -> dict[str, list]:
    """Every server started --rounds times, interleaved round by round: name -> its starts' levels.

    CPU per request moves between process starts (the seed's by 25-35%: on 4 KiB pages
    its page faults depend on how glibc's heaps settle) and this machine's speed drifts
    over minutes: interleaving exposes every server to the same drift, and best-of-N
    (keep_best_starts) treats them alike.
    """
    runs: dict[str, list] = {name: [] for name, _ in servers}
    rounds = plan.args.rounds
    for round_ in range(rounds):
        for name, precision in rotated(servers, round_):
            log(f"{name}, round {round_ + 1} of {rounds}")
            if precision is None:
                with seed_server(plan.artifacts) as seed:
                    runs[name].append(served_levels(seed, plan.load))
            else:
                runs[name].append(serve_torchfaas(plan, precision, round_, pipelines, res["variants"][precision]))
    return runs


def serve_torchfaas(plan: Plan, precision: str, round_: int, pipelines: dict, variant: dict) -> list[dict]:
    """One start of the served function at every level, then its pipeline limit right after."""
    with start_function(plan.build, plan.dirs[precision], {"MODEL_PRECISION": precision, **plan.extra_env},
                        log=plan.tmp / f"function-{precision}-{round_}.log") as server:
        levels = served_levels(server, plan.load)
    if precision in pipelines:  # its limit, right after it, over as long a window
        window = pipelines[precision].window(plan.load.duration)
        variant.setdefault("pipeline_windows", []).append(window)
        log(f"  pipeline {precision}: {window['images_per_s']:.1f} images/s, "
            f"{window['cpu_ms_per_image']:.2f} ms CPU per image")
    written = server.read_log()
    loaded = [line for line in written.lines if line.get("event") == "model_loaded"]
    variant["model_loaded"] = {k: loaded[0].get(k) for k in ("backend", "precision", "precision_reason")} \
        if loaded else None
    log(f"  model_loaded {variant['model_loaded']}, {len(written.lines) + len(written.broken)} log lines")
    return levels


def keep_best_starts(servers: list[tuple[str, str | None]], runs: dict[str, list], res: dict) -> None:
    """Each server's best start, level by level; each variant's best pipeline window."""
    for name, precision in servers:
        if precision is None:
            res["seed_runs"], res["seed"] = runs[name], best_of_starts(runs[name])
        else:
            variant = res["variants"][precision]
            variant.update(served_runs=runs[name], served=best_of_starts(runs[name]))
            if "limits" in variant:  # the best window, as the best served start counts
                variant["limits"]["pipeline_limit"] = max(w["images_per_s"] for w in variant["pipeline_windows"])


def classifier_bench(args: argparse.Namespace, artifacts: Path) -> int:
    """`make bench`: the classifier's limits, its served variants and the seed-style handler
    over interleaved rounds, the runtime alone, cold starts; the report and its ratios."""
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
           "cpu_capability": cpu_capability(),
           "env": dict(kv.split("=", 1) for kv in args.env), "variants": {}}
    jpegs = real_jpegs()
    with tempfile.TemporaryDirectory(prefix="torchfaas-bench-") as tmp:
        build = shrinkwrap(FUNCTION, Path(tmp) / "classifier")
        plan = Plan(args, artifacts, build, prepare_variants(build, artifacts, precisions, res), jpegs,
                    load_of(args, build_requests(jpegs)), res["env"], Path(tmp))
        pipelines = {} if args.served_only else measure_limits(plan, res)
        servers = [(f"torchfaas {p}", p) for p in precisions] + ([] if args.served_only else [("seed", None)])
        keep_best_starts(servers, serve_rounds(plan, servers, pipelines, res), res)
        if args.served_only:
            return 0
        res["runtime_only"] = measure_runtime_only(plan.tmp, plan.load)
        for precision in precisions:
            log(f"cold start, {precision}")
            res["variants"][precision]["cold_start"] = measure_cold_start(build, plan.dirs[precision],
                                                                          args.cold_repeats, precision)
    print(report(derive(res)))
    write_json(args.json, res)
    return 0


# -- any function -----------------------------------------------------------------------
def generic_bench(args: argparse.Namespace, function: Path, artifacts: Path) -> int:
    """What `make bench` means for any function: the served function under closed-loop
    load at --levels with its own load inputs (best of --rounds starts), the runtime alone
    (the stand-in model) at the top level under the same requests, and cold start."""
    name = function.name
    log(f"bench {name}: served c={args.levels} with its load inputs, the runtime alone, cold start; skipping the "
        "classifier-only parts: " + "; ".join(f"{part} ({why})" for part, why in CLASSIFIER_ONLY))
    payloads, _bad = traffic.load_inputs(str(function))
    load = load_of(args, payload_requests(payloads))
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
           "cpu_capability": cpu_capability(),
           "function": name, "env": extra_env, "payload_kinds": len(payloads),
           "skipped": {part: why for part, why in CLASSIFIER_ONLY}}
    with tempfile.TemporaryDirectory(prefix="torchfaas-bench-") as tmp:
        build = shrinkwrap(function, Path(tmp) / name)
        runs = []
        for round_ in range(args.rounds):
            log(f"{name}, start {round_ + 1} of {args.rounds}")
            with start_function(build, artifacts, extra_env, name) as server:
                runs.append(served_levels(server, load))
        res["served_runs"], res["served"] = runs, best_of_starts(runs)
        if not args.served_only:
            res["runtime_only"] = measure_runtime_only(Path(tmp), load)
            log(f"cold start, {name}")
            res["cold_start"] = cold_start(build, artifacts, args.cold_repeats, name)
    print(generic_report(res))
    write_json(args.json, res)
    return 0


# -- the command --------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--function", default="classifier",
                        help="the function (a folder of functions/, or a path to one); any but the classifier "
                             "gets the generic part only: served c1/4/16 with its load inputs, cold start")
    parser.add_argument("--artifacts", help="its prepared artifacts (default artifacts/<function>)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per load level")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--limit-seconds", type=float, default=1.0, help="seconds per in-process window")
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--cold-repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3,
                        help="process starts of every served variant and the seed-style handler, "
                             "interleaved; the best of them counts, level by level")
    parser.add_argument("--precisions", default="fp32,bf16", help="MODEL_PRECISION variants, side by side")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the served function (tuning runs)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--served-only", action="store_true",
                        help="tuning runs: only the served function's load levels")
    return parser.parse_args()


def load_of(args: argparse.Namespace, requests: list[bytes]) -> Load:
    return Load(requests, [int(c) for c in args.levels.split(",")], args.warmup, args.duration)


def main() -> int:
    args = parse_args()
    function = traffic.function_dir(args.function)
    artifacts = Path(args.artifacts or REPO / "artifacts" / function.name).resolve()
    if not (artifacts / "manifest.json").is_file():
        install = "make install" + ("" if function == FUNCTION else f" FUNCTION={function.name}")
        log(f"no artifacts in {artifacts}: run `{install}` first")
        return 2
    if function.resolve() != FUNCTION.resolve():
        return generic_bench(args, function, artifacts)
    return classifier_bench(args, artifacts)


if __name__ == "__main__":
    sys.exit(main())
