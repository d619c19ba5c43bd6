"""`make bench`'s report: the figures derived from a run's measurements, and their text.

`derive(res)` adds what is computed from the measured figures (the target ratios, the
split of the served CPU per request) to the run's results, once; `report()` and
`generic_report()` render results and change nothing, so the JSON written after them
holds exactly what the text shows.
"""
from dataclasses import dataclass

from coldstart import phases_text
from results import Target, verdict

# The speed targets, per precision (docs/benchmarks.md, "Targets"); bf16's hold on a CPU
# with native bf16 (docs/precision.md)
TARGETS = {
    "fp32": [Target("c16_vs_seed", "served c16 / seed c16 throughput", ">=", 3.0),
             Target("c16_vs_pipeline", "served c16 / pipeline limit (same variant)", ">=", 0.85),
             Target("p50_c1_vs_seed", "p50 c1 / seed p50 c1", "<=", 0.5),
             Target("cold_start_vs_bare", "cold start / (import torch + load)", "<=", 1.3),
             Target("c16_vs_c4", "served c16 / served c4 throughput", ">=", 1.0),
             Target("logging_share", "JSON logging / request CPU", "<=", 0.02)],
    "bf16": [Target("c16_vs_seed", "served c16 / seed c16 throughput", ">=", 4.5),
             Target("c16_vs_fp32", "served c16 / fp32 served c16 throughput", ">=", 1.5),
             Target("model_vs_fp32", "model-only limit / fp32 model-only limit", ">=", 2.0),
             Target("p50_c1_vs_seed", "p50 c1 / seed p50 c1", "<=", 0.4),
             Target("c16_vs_pipeline", "served c16 / pipeline limit (same variant)", ">=", 0.85),
             Target("c16_vs_c4", "served c16 / served c4 throughput", ">=", 1.0)],
}
SERVED_HEADER = (f"  {'':15s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
                 f"{'cpu ms/req':>10s} {'client ms/req':>13s}")


# -- derived figures --------------------------------------------------------------
def by_concurrency(rows: list) -> dict:
    """Load-level results keyed by their concurrency."""
    return {r["concurrency"]: r for r in rows}


def ratios_of(res: dict, precision: str) -> dict:
    variant = res["variants"][precision]
    limits, served = variant["limits"], variant["served"]
    by_c, seed_c = by_concurrency(served), by_concurrency(res["seed"])
    lo, hi = min(by_c), max(by_c)  # the targets are stated at 1 and 16
    ratios = {"c16_vs_seed": by_c[hi]["throughput"] / seed_c[hi]["throughput"],
              "c16_vs_pipeline": by_c[hi]["throughput"] / limits["pipeline_limit"],
              "p50_c1_vs_seed": by_c[lo]["p50_ms"] / seed_c[lo]["p50_ms"],
              "logging_share": res["logging_ms"] / by_c[hi]["cpu_ms_per_request"]}
    if 4 in by_c:
        ratios["c16_vs_c4"] = by_c[hi]["throughput"] / by_c[4]["throughput"]
    fp32 = res["variants"].get("fp32")
    if precision != "fp32" and fp32 and fp32.get("served") and fp32.get("limits"):
        ratios["c16_vs_fp32"] = by_c[hi]["throughput"] / by_concurrency(fp32["served"])[hi]["throughput"]
        ratios["model_vs_fp32"] = limits["model_limit"] / fp32["limits"]["model_limit"]
    if variant.get("cold_start"):
        ratios["cold_start_vs_bare"] = variant["cold_start"]["served_s"] / variant["cold_start"]["bare_s"]
    return ratios


def pipeline_cpu_ms_per_image(variant: dict) -> float:
    """The in-process pipeline's CPU per image: its cheapest sustained window (nan: none)."""
    return min((w["cpu_ms_per_image"] for w in variant.get("pipeline_windows") or []), default=float("nan"))


@dataclass(frozen=True)
class CpuSplit:
    """The served function's CPU per request at its top level, by where it goes: the
    handler's stages alone, what the pipeline's streams cost beyond them, the runtime's own
    work (the stand-in model) and what serving costs beyond both: request threads, the
    socket loop and the batch workers sharing 2 cores, their caches and the GIL."""
    top: int | None  # the top concurrency level
    served_ms: float  # the served CPU per request there
    stages: dict  # the handler's stages, CPU ms per request (limits["stages_ms"])
    pipeline_ms: float  # the in-process pipeline's CPU per image
    runtime_ms: float  # the stand-in model's CPU per request at the same level
    workers: int

    @property
    def stage_sum(self) -> float:
        return self.stages["preprocess"] + self.stages["model"] + self.stages["postprocess"]

    @property
    def server_own_ms(self) -> float:
        return self.served_ms - self.stage_sum

    @property
    def serving_beside_ms(self) -> float:
        return self.served_ms - self.pipeline_ms - self.runtime_ms


def cpu_split(variant: dict, runtime_only: list) -> CpuSplit:
    by_c = by_concurrency(variant.get("served", []))
    top = max(by_c) if by_c else None
    runtime = by_concurrency(runtime_only).get(top)
    return CpuSplit(top=top, served_ms=by_c[top]["cpu_ms_per_request"] if by_c else float("nan"),
                    stages=variant["limits"]["stages_ms"], pipeline_ms=pipeline_cpu_ms_per_image(variant),
                    runtime_ms=runtime["cpu_ms_per_request"] if runtime else float("nan"),
                    workers=variant["limits"]["workers"])


def derive(res: dict) -> dict:
    """Adds the figures computed from a classifier run's measurements, once: each variant's
    split of the served CPU (`server_own_ms`, `runtime_own_ms`, `serving_beside_ms`) and
    `ratios` per precision. Returns `res`."""
    for variant in res["variants"].values():
        if variant["limits"].get("stages_ms"):
            split = cpu_split(variant, res.get("runtime_only", []))
            variant.update(server_own_ms=split.server_own_ms, runtime_own_ms=split.runtime_ms,
                           serving_beside_ms=split.serving_beside_ms)
    res["ratios"] = {precision: ratios_of(res, precision) for precision in res["variants"]}
    return res


# -- text ---------------------------------------------------------------------------
def served_rows(name: str, rows: list) -> list[str]:
    """One line per load level of a server, under SERVED_HEADER."""
    return [f"  {name:15s} {r['concurrency']:4d} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
            f"{r['p99_ms']:8.1f} {r['errors']:6d} {r['cpu_ms_per_request']:10.2f} "
            f"{r.get('client_cpu_ms_per_request', float('nan')):13.2f}" for r in rows]


def served_cpu_split(split: CpuSplit) -> str:
    """The CpuSplit as one sum that adds up to the served CPU per request."""
    stages = split.stages

    def term(ms: float) -> str:
        return f"{'-' if ms < 0 else '+'} {abs(ms):.2f}"

    return (f"  server CPU per request at c{split.top if split.top else '?'}: {split.served_ms:.2f} ms = "
            f"preprocess {stages['preprocess']:.2f} + model {stages['model']:.2f} (b{stages['batch']}) "
            f"+ postprocess {stages['postprocess']:.2f} {term(split.pipeline_ms - split.stage_sum)} decode and "
            f"forward passes in {split.workers} streams against alone (the pipeline's {split.pipeline_ms:.2f} per "
            f"image) + the runtime's own {split.runtime_ms:.2f} (HTTP, Flask, batching, JSON, log line, metrics: a "
            f"stand-in model, same load) {term(split.serving_beside_ms)} serving beside the model "
            f"(request threads, socket loop and batch workers sharing the cores, caches and GIL)")


def cpu_budget(res: dict) -> list[str]:
    """Served c16 >= Nx the seed-style handler means at most the seed's CPU per request / N
    when both keep the 2 CPUs busy: set beside what the in-process pipeline alone costs
    (its cheapest sustained window) and the runtime's own work (the stand-in model)."""
    seed, runtime = by_concurrency(res.get("seed", [])), by_concurrency(res.get("runtime_only", []))
    out = []
    for precision, variant in res["variants"].items():
        target = next((t.target for t in TARGETS[precision] if t.key == "c16_vs_seed"), None)
        windows = variant.get("pipeline_windows")
        served = by_concurrency(variant.get("served", []))
        top = max(served) if served else None
        if not (target and windows and top in seed and top in runtime):
            continue
        pipeline = pipeline_cpu_ms_per_image(variant)
        own = runtime[top]["cpu_ms_per_request"]
        out.append(f"  {precision}: >= {target:g}x the seed leaves {seed[top]['cpu_ms_per_request'] / target:.2f} "
                   f"(seed {seed[top]['cpu_ms_per_request']:.2f} / {target:g}); served "
                   f"{served[top]['cpu_ms_per_request']:.2f}; the pipeline alone {pipeline:.2f} per image "
                   f"+ the runtime's own {own:.2f} = {pipeline + own:.2f}")
    return out


def limits_section(res: dict, precision: str) -> list[str]:
    variant = res["variants"][precision]
    limits = variant["limits"]
    shown = limits.get("served_precision") or precision
    note = f" -> serves {shown}: {limits['precision_reason']}" if shown != precision else ""
    lines = [f"## Limits, MODEL_PRECISION={precision}{note} (in-process, best of 3)"]
    for backend, rates in limits["model"].items():
        lines.append(f"  model {backend:5s}: " + ", ".join(f"b{b} {r:.0f}/s" for b, r in rates.items()))
    lines.append(f"  model-only limit      : {limits['model_limit']:.1f} images/s "
                 f"({limits['served_backend']}, batch {limits['best_batch']}, {limits['workers']} streams)")
    lines.append(f"  preprocess only       : {limits['preprocess_per_s']:.1f} images/s "
                 "(decode + crop/resize, 1 thread)")
    windows = variant.get("pipeline_windows", [])
    lines.append(f"  pipeline limit        : {limits['pipeline_limit']:.1f} images/s (decode + preprocess + "
                 f"forward, {limits['workers']} streams; best of {len(windows)} windows as long as a "
                 f"served level's, each right after a served start)")
    lines.append("    by window           : " + " / ".join(
        f"{w['images_per_s']:.1f}/s at {w['cpu_ms_per_image']:.2f} ms CPU per image" for w in windows))
    # short windows before any served run: on a drifting machine, its luckiest second
    lines.append(f"  pipeline peak         : {limits['pipeline_peak']:.1f} images/s (best of 3 "
                 f"{limits['window_s']:g}-s windows before the served runs: not the limit, its luckiest second)")
    if limits.get("stages_ms"):
        lines.append(served_cpu_split(cpu_split(variant, res.get("runtime_only", []))))
    gate = variant.get("gate")
    if gate:
        lines.append(f"  bf16 accuracy gate    : where fp32 is confident, top-1 agreement "
                     f"{gate['confident_top1_agreement']:.2%} of {gate['confident_inputs']} (>= "
                     f"{gate['bounds']['confident_top1']:.0%}); fp32's top-1 in bf16's top 5 "
                     f"{gate['top5_contains_top1']:.2%} of {gate['inputs']}; top-1 probability shift mean "
                     f"{gate['prob_shift_mean']:.4f}, p99 {gate['prob_shift_p99']:.3f}; plain top-1 agreement "
                     f"{gate['top1_agreement']:.2%} (docs/precision.md)")
    return lines + [""]


def served_section(res: dict, precisions: list[str]) -> list[str]:
    lines = ["## Served, closed loop, real JPEGs (640x427)", SERVED_HEADER]
    for name, served in [(f"torchfaas {p}", res["variants"][p]["served"]) for p in precisions] + \
            [("seed", res["seed"])]:
        lines += served_rows(name, served)
    starts = [(f"torchfaas {p}", res["variants"][p].get("served_runs", [])) for p in precisions] + \
        [("seed", res.get("seed_runs", []))]
    if max(len(runs) for _, runs in starts) > 1:
        lines.append(f"  every server: best of {len(starts[0][1])} process starts per level (the p50 too), "
                     "interleaved round by round; top-level req/s by start:")
        for name, runs in starts:
            lines.append(f"    {name:15s} " + " / ".join(f"{run[-1]['throughput']:.1f}" for run in runs))
    return lines + [""]


def memory_section(servers: list[tuple[str, list]]) -> list[str]:
    """Resident memory per replica (memory.ResidentMemory), per server over its starts: after
    the lowest level (warmed up, serving one request at a time) and the peak at the top one."""
    header = ("## Resident memory per replica, MB (anonymous: the replica's own; file-backed: mapped "
              "libraries, shared between replicas of an image)")
    rows = []
    for name, runs in servers:
        runs = [run for run in runs if run and "memory_mb" in run[0]]
        if not runs:
            continue
        low, top = runs[0][0]["concurrency"], runs[0][-1]["concurrency"]
        after = [run[0]["memory_mb"] for run in runs]
        peak = [run[-1]["peak_memory_mb"] for run in runs]

        def median(values: list[dict], key: str) -> float:
            return sorted(v.get(key, float("nan")) for v in values)[len(values) // 2]

        rows.append(f"  {name:15s} after c{low}: anon {median(after, 'anon_mb'):.0f} + file "
                    f"{median(after, 'file_mb'):.0f} = {median(after, 'rss_mb'):.0f}; peak at c{top}: RSS "
                    f"{median(peak, 'rss_mb'):.0f} (anon {median(peak, 'anon_mb'):.0f}, file "
                    f"{median(peak, 'file_mb'):.0f}); medians of {len(runs)} starts")
    return [header, *rows, ""] if rows else []


def ratio_lines(res: dict, precisions: list[str]) -> list[str]:
    lines = ["## Ratios (target)"]
    for precision in precisions:
        ratios = res["ratios"][precision]
        for t in TARGETS[precision]:
            if t.key not in ratios:
                continue
            value = ratios[t.key]
            shown = f"{value:.1%}" if t.key == "logging_share" else f"{value:.2f}x"
            want = f"{t.target:.0%}" if t.key == "logging_share" else f"{t.target}x"
            lines.append(f"  {precision} {t.label:43s} {shown:>8s}  (target {t.op} {want})  "
                         f"{verdict(t.met_by(value))}")
    return lines


def report(res: dict) -> str:
    """A classifier run, after derive(), as text."""
    precisions = list(res["variants"])
    first = res["variants"][precisions[0]]["limits"]
    lines = [f"# torchfaas bench ({res['when']}, {res['cpus']} CPUs, torch threads {first['torch_threads']})",
             f"# CPU: {res.get('cpu_model', '?')} ({res.get('cpu_capability', '?')}); "
             f"native bf16: {res.get('bf16_feature') or 'none'}", ""]
    for precision in precisions:
        lines += limits_section(res, precision)
    lines += served_section(res, precisions)
    lines += memory_section([(f"torchfaas {p}", res["variants"][p].get("served_runs", [])) for p in precisions]
                            + [("seed", res.get("seed_runs", []))])
    lines.append("## Cold start (median)")
    for precision in precisions:
        cold = res["variants"][precision].get("cold_start")
        if cold:
            lines.append(f"  {precision}: process start -> ready {cold['served_s']:.3f} s "
                         f"({phases_text(cold)}); import torch + load {cold['bare_s']:.3f} s")
    lines += ["", "## JSON logging", f"  one inference line     : {res['logging_ms']:.4f} ms CPU", ""]
    lines += ratio_lines(res, precisions)
    budget = cpu_budget(res)
    if budget:
        lines += ["", "## What the throughput targets leave per request (both sides use the 2 CPUs; CPU ms)"] + budget
    return "\n".join(lines)


def generic_report(res: dict) -> str:
    """Any other function's run (bench.generic_bench) as text."""
    lines = [f"# torchfaas bench: {res['function']} ({res['when']}, {res['cpus']} CPUs)",
             f"# CPU: {res.get('cpu_model', '?')} ({res.get('cpu_capability', '?')})", "",
             f"## Served, closed loop, its load inputs ({res['payload_kinds']} kinds of request, drawn by weight)",
             SERVED_HEADER]
    lines += served_rows(res["function"], res["served"]) + served_rows("runtime only", res.get("runtime_only", []))
    if len(res.get("served_runs", [])) > 1:
        lines.append(f"  best of {len(res['served_runs'])} process starts per level (the p50 too); top-level "
                     "req/s by start: " + " / ".join(f"{run[-1]['throughput']:.1f}" for run in res["served_runs"]))
    if res.get("runtime_only"):
        lines.append("  runtime only: the stand-in model (no model work) under the same requests: the runtime's own "
                     "share (HTTP, batching, JSON, log line, metrics)")
    lines += [""] + memory_section([(res["function"], res.get("served_runs", []))])
    cold = res.get("cold_start")
    if cold:
        lines += ["## Cold start (median)", f"  process start -> ready {cold['served_s']:.3f} s ({phases_text(cold)})"]
    lines += ["", "## Not measured for this function (the classifier's; make bench FUNCTION=classifier)"]
    lines += [f"  {part}: {why}" for part, why in res["skipped"].items()]
    return "\n".join(lines)
