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
"""
import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import traffic
from localrun import CLASSIFIER as FUNCTION
from localrun import REPO, free_port, import_build, shrinkwrap, stop_process
from stats import percentile

SEED = REPO / "load" / "benchmark" / "seed_handler" / "app.py"
# what every process the bench starts inherits: the environment it was given, not
# the torch allocator settings main() applies to its own in-process limits (the seed
# handler and the bare-load baseline run as they would anywhere; the function sets
# its own)
ORIGINAL_ENV = dict(os.environ)
# the runtime with no model: answers {"length": n} through the same path (ids,
# batching, JSON, the log line, metrics), so what it costs per request is the
# runtime's own work
STANDIN = REPO / "tests" / "support" / "functions" / "standin"

# issue 11's targets, per precision: (key, label, op, target)
TARGETS = {
    "fp32": [("c16_vs_seed", "served c16 / seed c16 throughput", ">=", 3.0),
             ("c16_vs_pipeline", "served c16 / pipeline limit (same variant)", ">=", 0.85),
             ("p50_c1_vs_seed", "p50 c1 / seed p50 c1", "<=", 0.5),
             ("cold_start_vs_bare", "cold start / (import torch + load)", "<=", 1.3),
             ("c16_vs_c4", "served c16 / served c4 throughput", ">=", 1.0),
             ("logging_share", "JSON logging / request CPU", "<=", 0.02)],
    # issue 26's, on a CPU with native bf16 (docs/precision.md)
    "bf16": [("c16_vs_seed", "served c16 / seed c16 throughput", ">=", 4.5),
             ("c16_vs_fp32", "served c16 / fp32 served c16 throughput", ">=", 1.5),
             ("model_vs_fp32", "model-only limit / fp32 model-only limit", ">=", 2.0),
             ("p50_c1_vs_seed", "p50 c1 / seed p50 c1", "<=", 0.4),
             ("c16_vs_pipeline", "served c16 / pipeline limit (same variant)", ">=", 0.85),
             ("c16_vs_c4", "served c16 / served c4 throughput", ">=", 1.0)],
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("?" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def real_jpegs() -> dict[str, bytes]:
    from photos import PHOTOS

    return {name: PHOTOS[name].read_bytes() for name in ("china.jpg", "flower.jpg", "rocket.jpg")}


# -- 1 + 2: in-process limits --------------------------------------------------
def best_rate(fn, items_per_call: int, seconds: float, repeats: int = 3) -> float:
    """Items per second, best of `repeats` windows of about `seconds` each."""
    fn()
    best = 0.0
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and calls >= 3:
                break
        best = max(best, calls * items_per_call / elapsed)
    return best


def parallel_window(fn, workers: int, seconds: float) -> tuple[int, float, float]:
    """`workers` threads calling fn side by side for about `seconds`: (calls, wall
    seconds, this process's CPU seconds)."""
    import threading

    counts = [0] * workers
    stop_at = time.perf_counter() + seconds

    def loop(k):
        while time.perf_counter() < stop_at:
            fn()
            counts[k] += 1

    started, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - started, time.process_time() - cpu


def parallel_rate(fn, items_per_call: int, workers: int, seconds: float, repeats: int = 3) -> float:
    """Items per second with `workers` threads calling fn side by side (best of repeats)."""
    fn()
    best = 0.0
    for _ in range(repeats):
        calls, wall, _ = parallel_window(fn, workers, seconds)
        best = max(best, calls * items_per_call / wall)
    return best


def measure_in_process(build: Path, artifacts: Path, jpegs: dict, seconds: float,
                       precision: str = "fp32") -> tuple[dict, "Pipeline"]:
    import_build(build)
    import numpy as np
    import torch

    import function.handler as handler_module  # before torch: see main()
    from torchfaas.toolkit import ImageSettings, open_image, read_verified_manifest

    results = {"torch_threads": None, "model": {}, "precision": precision}
    handlers = {}
    # the eager model is fp32 whatever MODEL_PRECISION says: measured with fp32 only
    for backend in ("aoti", "eager") if precision == "fp32" else ("aoti",):
        handler = handler_module.Classifier(handler_module.ClassifierSettings(
            model_backend=backend, model_precision=precision))
        settings = ImageSettings().for_handler(handler)
        try:
            handler.load(artifacts, read_verified_manifest(artifacts), settings)
        except Exception as exc:
            log(f"  {backend}: not available ({exc})")
            continue
        handlers[backend] = handler
        if backend == "aoti":
            results["served_precision"] = handler.precision
            results["precision_reason"] = handler.precision_reason
    results["torch_threads"] = torch.get_num_threads()
    pixels = np.zeros((224, 224, 3), dtype=np.uint8)
    for backend, handler in handlers.items():
        rates = {}
        for batch in (1, 2, 4, 8, 16):
            items = [pixels] * batch
            rates[batch] = best_rate(partial(handler.predict, items), batch, seconds)
            log(f"  {precision} model {backend} batch {batch}: {rates[batch]:.1f} images/s")
        results["model"][backend] = rates
    served = "aoti" if "aoti" in handlers else "eager"
    handler = handlers[served]
    workers = settings.batch_workers or handler.batch_workers
    results["workers"] = workers
    rates = results["model"][served]
    if workers > 1:  # the served layout: `workers` forward passes side by side
        parallel = {}
        for batch in (1, 2, 4, 8):
            items = [pixels] * batch
            parallel[batch] = parallel_rate(partial(handler.predict, items), batch, workers, seconds)
            log(f"  {precision} model {served} x{workers} streams, batch {batch}: {parallel[batch]:.1f} images/s")
        results["model"][f"{served} x{workers}"] = parallel
        rates = parallel
    best_batch = max(rates, key=rates.get)
    results["served_backend"], results["best_batch"] = served, best_batch
    results["model_limit"] = rates[best_batch]

    payloads = list(jpegs.values())

    turn = itertools.count(1)

    def preprocess_one():
        return handler_module.to_pixels(open_image(payloads[next(turn) % len(payloads)], settings.max_pixels))

    prep_rate = best_rate(preprocess_one, 1, seconds)

    def pipeline():
        handler.predict([preprocess_one() for _ in range(best_batch)])

    results["preprocess_per_s"] = prep_rate
    results["stages_ms"] = handler_stage_cpu_ms(handler, payloads, best_batch)
    results["pipeline_peak"], results["window_s"] = parallel_rate(pipeline, best_batch, workers, seconds), seconds
    log(f"  {precision} preprocess only: {prep_rate:.1f} images/s; pipeline x{workers} at batch {best_batch}: "
        f"{results['pipeline_peak']:.1f} images/s (best of 3 {seconds:g}-s windows)")
    return results, Pipeline(pipeline, best_batch, workers)


class Pipeline:
    """The in-process pipeline (decode + preprocess + forward, `workers` streams at
    `batch`), kept loaded so that its sustained windows can run between the served
    starts: a served run and the limit it is compared with then see the same minutes
    of this drifting machine, over windows of the same length."""

    def __init__(self, fn, batch: int, workers: int):
        self.fn, self.batch, self.workers = fn, batch, workers

    def window(self, seconds: float) -> dict:
        # the process's CPU time: it does nothing else meanwhile
        calls, wall, cpu = parallel_window(self.fn, self.workers, seconds)
        images = calls * self.batch
        return {"images_per_s": images / wall, "cpu_ms_per_image": cpu * 1000 / images}


def handler_stage_cpu_ms(handler, payloads: list, batch: int, repeats: int = 60) -> dict:
    """CPU ms per request of the handler's own stages, on this thread (thread_time, so
    less sensitive to other processes than wall time): the request's preprocess (body ->
    uint8 pixels: decode, crop, resize), its share of a forward pass at `batch`, and
    postprocess + log fields (topk=5). The served CPU per request minus these is the
    server's own work: HTTP, JSON, batching hand-offs, the log line, metrics."""
    import statistics

    from torchfaas import InferenceRequest

    def request(i):
        return InferenceRequest(body=payloads[i % len(payloads)], content_type="image/jpeg", headers={},
                                query={"topk": "5"}, request_id=f"bench-{i}")

    def cpu(fn):
        started = time.thread_time()
        fn()
        return (time.thread_time() - started) * 1000

    requests_, items = [request(i) for i in range(batch)], []
    pre = [cpu(partial(lambda i: items.append(handler.preprocess(requests_[i % batch])), i)) for i in range(repeats)]
    batch_items = items[:batch]
    outputs = handler.predict(batch_items)
    model = [cpu(lambda: handler.predict(batch_items)) / batch for _ in range(max(5, repeats // batch))]
    post = [cpu(lambda: (handler.postprocess(outputs[0], requests_[0]), handler.log_fields(outputs[0])))
            for _ in range(repeats)]
    return {"preprocess": statistics.median(pre), "model": statistics.median(model),
            "postprocess": statistics.median(post), "batch": batch}


# -- 3 + 4: closed-loop HTTP load ----------------------------------------------
def raw_post(path: str, content_type: str, body: bytes) -> bytes:
    """One prebuilt HTTP/1.1 POST, as the load client sends it."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def build_requests(jpegs: dict, path: str = "/?topk=5", content_type: str = "image/jpeg") -> list[bytes]:
    return [raw_post(path, content_type, body) for body in jpegs.values()]


async def _client(port: int, requests: list[bytes], offset: int, warm_until: float, stop_at: float,
                  records: list):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            payload = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            writer.write(payload)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            ended = time.perf_counter()
            if started >= warm_until:
                records.append((ended, ended - started, status))
    finally:
        writer.close()


def closed_loop(port: int, requests: list[bytes], concurrency: int, warmup: float, duration: float) -> dict:
    records: list = []

    async def run():
        now = time.perf_counter()
        warm_until, stop_at = now + warmup, now + warmup + duration
        await asyncio.gather(*(_client(port, requests, k, warm_until, stop_at, records)
                               for k in range(concurrency)))
        return warm_until, stop_at

    warm_until, stop_at = asyncio.run(run())
    done = [r for r in records if r[0] <= stop_at]
    latencies = sorted(r[1] * 1000 for r in records)
    errors = sum(1 for r in records if r[2] != 200)
    return {"concurrency": concurrency, "requests": len(records), "errors": errors,
            "throughput": len(done) / (stop_at - warm_until),
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120, poll: float = 0.005) -> float:
    import http.client

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ready")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(poll)
    raise TimeoutError("server did not become ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, argv: list[str], cwd: Path, env: dict, port: int, stdout):
        self.port = port
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**ORIGINAL_ENV, **env}, stdout=stdout,
                                     stderr=subprocess.DEVNULL)
        self.ready_at = wait_ready(port, self.proc)

    def stop(self):
        stop_process(self.proc)


def function_server(build: Path, artifacts: Path, extra_env: dict, stdout, name: str = "classifier") -> Server:
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "FUNCTION_NAME": name,
           "ARTIFACTS_DIR": str(artifacts), "DRAIN_SECONDS": "0", **extra_env}
    return Server([sys.executable, "index.py"], build, env, port, stdout)


def seed_server(artifacts: Path) -> Server:
    port = free_port()
    # one torch thread per forward pass: the seed's better setting on 2 cores with its 4
    # waitress threads (c16 62.4 vs 49.2 req/s, c1 p50 27.7 vs 31.3 ms against torch's
    # default of one per core), as docs/benchmarks.md, "What each figure means", describes it
    return Server([sys.executable, str(SEED), "--artifacts", str(artifacts), "--port", str(port)],
                  REPO, {"OMP_NUM_THREADS": "1"}, port, subprocess.DEVNULL)


def cpu_ms_per_request(result: dict, warmup: float, duration: float, key: str = "server_cpu_s") -> float:
    """A process's CPU per request over the whole run, warm-up included (closed_loop
    counts only the measured window's requests)."""
    total = result["requests"] * (warmup + duration) / duration
    return result[key] * 1000 / max(1, total)


def best_of_starts(runs: list[list[dict]]) -> list[dict]:
    """Per load level, the start with the highest throughput, with the lowest p50 of any start."""
    return [{**max(same_level, key=lambda r: r["throughput"]), "p50_ms": min(r["p50_ms"] for r in same_level)}
            for same_level in zip(*runs)]


def load_levels(server: Server, requests: list, levels: list, warmup: float, duration: float) -> list:
    out = []
    for concurrency in levels:
        cpu0, client0 = cpu_seconds(server.proc.pid), time.process_time()
        result = closed_loop(server.port, requests, concurrency, warmup, duration)
        result["server_cpu_s"] = cpu_seconds(server.proc.pid) - cpu0
        # the load generator shares the 2 CPUs: what it takes is not the server's to use
        result["client_cpu_s"] = time.process_time() - client0
        result["cpu_ms_per_request"] = cpu_ms_per_request(result, warmup, duration)
        result["client_cpu_ms_per_request"] = cpu_ms_per_request(result, warmup, duration, "client_cpu_s")
        log(f"  c={concurrency}: {result['throughput']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}, "
            f"server CPU {result['cpu_ms_per_request']:.2f} ms/request, "
            f"client {result['client_cpu_ms_per_request']:.2f}")
        out.append(result)
    return out


# -- 5: cold start -------------------------------------------------------------
BARE_LOAD = """
import json, sys, time
import torch
from pathlib import Path
art, package = Path(sys.argv[1]), sys.argv[2]
if (art / package).is_file():
    torch._C._aoti.AOTIModelPackageLoader(str(art / package), "model", False, 1, -1)
else:
    torch.load(art / "weights.pt", map_location="cpu", weights_only=True)
json.loads((art / "labels.json").read_text())
print("loaded", flush=True)
"""


def bare_load_seconds(artifacts: Path, package: str = "model.pt2") -> float:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BARE_LOAD, str(artifacts), package], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=ORIGINAL_ENV)
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def start_to_ready_seconds(build: Path, artifacts: Path, env: dict, name: str = "classifier") -> float:
    """One start of the served function: process start to /ready 200."""
    server = function_server(build, artifacts, env, subprocess.DEVNULL, name)
    server.stop()
    return server.ready_at - server.started


def measure_cold_start(build: Path, artifacts: Path, repeats: int, precision: str = "fp32") -> dict:
    served, bare = [], []
    package = "model-bf16.pt2" if precision == "bf16" else "model.pt2"
    for _ in range(repeats):
        bare.append(bare_load_seconds(artifacts, package))
        served.append(start_to_ready_seconds(build, artifacts, {"MODEL_PRECISION": precision}))
    result = {"served_s": statistics.median(served), "bare_s": statistics.median(bare),
              "served_all": served, "bare_all": bare}
    log(f"  {precision}: process start to ready {result['served_s']:.3f} s; import torch + artifact load "
        f"{result['bare_s']:.3f} s (medians of {repeats})")
    return result


# -- 6: JSON logging cost ------------------------------------------------------
def logging_cpu_ms(build: Path, count: int = 20000) -> float:
    import_build(build)
    from torchfaas.identity import CurrentModel, ModelIdentity
    from torchfaas.logs import EventLog

    with open(os.devnull, "w") as sink:
        events = EventLog(sink, CurrentModel(ModelIdentity("classifier", "efficientnet-lite0",
                                                           "sha256-0123456789ab")))
        fields = dict(request_id="0f8fad5b-d9cb-469f-a165-70867728950e", status=200, latency_ms=12.345,
                      method="POST", path="/", input_bytes=71453, batch_size=4, queue_ms=1.23,
                      inference_ms=8.76, top1_class="pagoda", top1_prob=0.4321)
        for _ in range(200):
            events.emit("inference", "inference", **fields)
        started = time.thread_time()
        for _ in range(count):
            events.emit("inference", "inference", **fields)
        return (time.thread_time() - started) * 1000 / count


# -- report --------------------------------------------------------------------
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


def report(res: dict) -> str:
    precisions = list(res["variants"])
    first = res["variants"][precisions[0]]["limits"]
    lines = [f"# torchfaas bench ({res['when']}, {res['cpus']} CPUs, torch threads {first['torch_threads']})",
             f"# CPU: {res.get('cpu_model', '?')}; native bf16: {res.get('bf16_feature') or 'none'}", ""]
    for precision in precisions:
        variant = res["variants"][precision]
        limits = variant["limits"]
        shown = limits.get("served_precision") or precision
        note = f" -> serves {shown}: {limits['precision_reason']}" if shown != precision else ""
        lines.append(f"## Limits, MODEL_PRECISION={precision}{note} (in-process, best of 3)")
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
        lines.append(f"  pipeline peak         : {limits['pipeline_peak']:.1f} images/s (best of 3 "
                     f"{limits['window_s']:g}-s windows before the served runs: the limit until 2026-12-02)")
        if limits.get("stages_ms"):
            lines.append(served_cpu_split(variant, res.get("runtime_only", [])))
        gate = variant.get("gate")
        if gate:
            lines.append(f"  bf16 accuracy gate    : where fp32 is confident, top-1 agreement "
                         f"{gate['confident_top1_agreement']:.2%} of {gate['confident_inputs']} (>= "
                         f"{gate['bounds']['confident_top1']:.0%}); fp32's top-1 in bf16's top 5 "
                         f"{gate['top5_contains_top1']:.2%} of {gate['inputs']}; top-1 probability shift mean "
                         f"{gate['prob_shift_mean']:.4f}, p99 {gate['prob_shift_p99']:.3f}; plain top-1 agreement "
                         f"{gate['top1_agreement']:.2%} (docs/precision.md)")
        lines.append("")
    lines.append("## Served, closed loop, real JPEGs (640x427)")
    lines.append(f"  {'':15s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
                 f"{'cpu ms/req':>10s} {'client ms/req':>13s}")
    rows = [(f"torchfaas {p}", res["variants"][p]["served"]) for p in precisions] + [("seed", res["seed"])]
    for name, served in rows:
        for r in served:
            lines.append(f"  {name:15s} {r['concurrency']:4d} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
                         f"{r['p99_ms']:8.1f} {r['errors']:6d} {r['cpu_ms_per_request']:10.2f} "
                         f"{r.get('client_cpu_ms_per_request', float('nan')):13.2f}")
    starts = [(f"torchfaas {p}", res["variants"][p].get("served_runs", [])) for p in precisions] + \
        [("seed", res.get("seed_runs", []))]
    if max(len(runs) for _, runs in starts) > 1:
        lines.append(f"  every server: best of {len(starts[0][1])} process starts per level (the p50 too), "
                     "interleaved round by round; top-level req/s by start:")
        for name, runs in starts:
            lines.append(f"    {name:15s} " + " / ".join(f"{run[-1]['throughput']:.1f}" for run in runs))
    lines.append("")
    lines.append("## Cold start (median)")
    for precision in precisions:
        cold = res["variants"][precision].get("cold_start")
        if cold:
            lines.append(f"  {precision}: process start -> ready {cold['served_s']:.3f} s; "
                         f"import torch + load {cold['bare_s']:.3f} s")
    lines.append("")
    lines.append("## JSON logging")
    lines.append(f"  one inference line     : {res['logging_ms']:.4f} ms CPU")
    res["ratios"] = {}
    lines.append("")
    lines.append("## Ratios (target)")
    for precision in precisions:
        ratios = ratios_of(res, precision)
        res["ratios"][precision] = ratios
        for key, text, op, target in TARGETS[precision]:
            if key not in ratios:
                continue
            value = ratios[key]
            ok = value >= target if op == ">=" else value <= target
            shown = f"{value:.1%}" if key == "logging_share" else f"{value:.2f}x"
            want = f"{target:.0%}" if key == "logging_share" else f"{target}x"
            lines.append(f"  {precision} {text:43s} {shown:>8s}  (target {op} {want})  {'ok' if ok else 'MISSED'}")
    budget = cpu_budget(res)
    if budget:
        lines += ["", "## What the throughput targets leave per request (both sides use the 2 CPUs; CPU ms)"] + budget
    return "\n".join(lines)


def pipeline_cpu_ms_per_image(variant: dict) -> float:
    """The in-process pipeline's CPU per image: its cheapest sustained window (nan: none)."""
    return min((w["cpu_ms_per_image"] for w in variant.get("pipeline_windows") or []), default=float("nan"))


def served_cpu_split(variant: dict, runtime_only: list) -> str:
    """The served function's CPU per request at its top level, by where it goes: the
    stages alone, what the pipeline's streams cost beyond them, the runtime's own work
    (the stand-in model) and what serving costs beyond both: request threads, the
    socket loop and the batch workers sharing 2 cores, their caches and the GIL.
    Until 2026-12-03 the last two differences were one "side by side" figure."""
    limits, stages = variant["limits"], variant["limits"]["stages_ms"]
    by_c = by_concurrency(variant.get("served", []))
    top = max(by_c) if by_c else None
    served_cpu = by_c[top]["cpu_ms_per_request"] if by_c else float("nan")
    runtime = by_concurrency(runtime_only).get(top)
    runtime_ms = runtime["cpu_ms_per_request"] if runtime else float("nan")
    stage_sum = stages["preprocess"] + stages["model"] + stages["postprocess"]
    pipeline = pipeline_cpu_ms_per_image(variant)
    variant["server_own_ms"], variant["runtime_own_ms"] = served_cpu - stage_sum, runtime_ms
    variant["serving_beside_ms"] = served_cpu - pipeline - runtime_ms

    def term(ms: float) -> str:
        return f"{'-' if ms < 0 else '+'} {abs(ms):.2f}"

    return (f"  server CPU per request at c{top if top else '?'}: {served_cpu:.2f} ms = "
            f"preprocess {stages['preprocess']:.2f} + model {stages['model']:.2f} (b{stages['batch']}) "
            f"+ postprocess {stages['postprocess']:.2f} {term(pipeline - stage_sum)} decode and forward "
            f"passes in {limits['workers']} streams against alone (the pipeline's {pipeline:.2f} per image) "
            f"+ the runtime's own {runtime_ms:.2f} (HTTP, Flask, batching, JSON, log line, metrics: a "
            f"stand-in model, same load) {term(variant['serving_beside_ms'])} serving beside the model "
            f"(request threads, socket loop and batch workers sharing the cores, caches and GIL)")


def cpu_budget(res: dict) -> list[str]:
    """Served c16 >= Nx the seed-style handler means at most the seed's CPU per request / N
    when both keep the 2 CPUs busy: set beside what the in-process pipeline alone costs
    (its cheapest sustained window) and the runtime's own work (the stand-in model)."""
    seed, runtime = by_concurrency(res.get("seed", [])), by_concurrency(res.get("runtime_only", []))
    out = []
    for precision, variant in res["variants"].items():
        target = next((t for key, _, _, t in TARGETS[precision] if key == "c16_vs_seed"), None)
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


def prepare_bf16(artifacts: Path, build: Path) -> Path:
    """The bf16 artifacts next to the fp32 ones: the build step with MODEL_PRECISION=bf16
    (the fp32 package and a current bf16 one are reused; the accuracy gate runs here)."""
    import shutil

    dest = artifacts.parent / f"{artifacts.name}-bf16"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("weights.pt", "labels.json"):
        shutil.copy2(artifacts / name, dest / name)
    # the fp32 package with its key and hash, so the build step reuses it instead of recompiling
    fp32 = json.loads((artifacts / "manifest.json").read_text())
    if (artifacts / "model.pt2").is_file() and fp32.get("aoti_key"):
        shutil.copy2(artifacts / "model.pt2", dest / "model.pt2")
        try:
            manifest = json.loads((dest / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = {"files": {}}
        manifest.update({k: v for k, v in fp32.items() if k.startswith("aoti_")})
        manifest.setdefault("files", {})["model.pt2"] = fp32["files"]["model.pt2"]
        (dest / "manifest.json").write_text(json.dumps(manifest))
    subprocess.run([sys.executable, "-m", "torchfaas.prepare"], cwd=build, check=True,
                   env={**os.environ, "ARTIFACTS_DIR": str(dest), "MODEL_PRECISION": "bf16"},
                   stdout=subprocess.DEVNULL)
    return dest


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


@dataclass
class Plan:
    """What every step of one run shares."""
    args: argparse.Namespace
    artifacts: Path  # the fp32 artifacts, which the seed-style handler serves too
    build: Path  # the shrinkwrapped classifier
    dirs: dict[str, Path]  # precision -> its artifacts
    jpegs: dict
    requests: list
    levels: list[int]
    extra_env: dict[str, str]
    tmp: Path

    @property
    def precisions(self) -> list[str]:
        return list(self.dirs)


def prepare_variants(build: Path, artifacts: Path, precisions: list[str], res: dict) -> dict[str, Path]:
    """Import the handler as the served process does; each precision's artifacts (bf16 prepared once)."""
    import_build(build)
    # The handler first, as in the served process: it sets OMP_NUM_THREADS before torch
    # is imported, and OpenMP reads it once. Imported after torch (as until 2026-12-02),
    # the compiled kernels ran 2-thread OpenMP teams in each of the 2 streams: bf16 b1 x2
    # read 9 images/s instead of 203-243.
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


def measure_limits(plan: Plan, res: dict) -> dict[str, "Pipeline"]:
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
        for name, precision in servers[round_ % len(servers):] + servers[:round_ % len(servers)]:
            log(f"{name}, round {round_ + 1} of {rounds}")
            if precision is None:
                server = seed_server(plan.artifacts)
                try:
                    runs[name].append(load_levels(server, plan.requests, plan.levels, plan.args.warmup,
                                                  plan.args.duration))
                finally:
                    server.stop()
            else:
                runs[name].append(serve_torchfaas(plan, precision, round_, pipelines, res["variants"][precision]))
    return runs


def serve_torchfaas(plan: Plan, precision: str, round_: int, pipelines: dict, variant: dict) -> dict:
    """One start of the served function at every level, then its pipeline limit right after."""
    log_path = plan.tmp / f"function-{precision}-{round_}.log"
    with open(log_path, "w") as out:
        server = function_server(plan.build, plan.dirs[precision],
                                 {"MODEL_PRECISION": precision, **plan.extra_env}, out)
        try:
            levels = load_levels(server, plan.requests, plan.levels, plan.args.warmup, plan.args.duration)
        finally:
            server.stop()
    if precision in pipelines:  # its limit, right after it, over as long a window
        window = pipelines[precision].window(plan.args.duration)
        variant.setdefault("pipeline_windows", []).append(window)
        log(f"  pipeline {precision}: {window['images_per_s']:.1f} images/s, "
            f"{window['cpu_ms_per_image']:.2f} ms CPU per image")
    lines = log_path.read_text().splitlines()
    loaded = [json.loads(x) for x in lines if '"model_loaded"' in x]
    variant["model_loaded"] = {k: loaded[0].get(k) for k in ("backend", "precision", "precision_reason")} \
        if loaded else None
    log(f"  model_loaded {variant['model_loaded']}, {len(lines)} log lines")
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


def measure_runtime_only(plan: Plan) -> dict:
    """The runtime's own work: the stand-in model under the same load, at the top level."""
    log("runtime only (stand-in model)")
    standin = function_server(shrinkwrap(STANDIN, plan.tmp / "standin"), plan.tmp / "none",
                              {"FUNCTION_NAME": "standin"}, subprocess.DEVNULL)
    try:
        return load_levels(standin, plan.requests, plan.levels[-1:], plan.args.warmup, plan.args.duration)
    finally:
        standin.stop()


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
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
           "env": dict(kv.split("=", 1) for kv in args.env), "variants": {}}
    jpegs = real_jpegs()
    with tempfile.TemporaryDirectory(prefix="torchfaas-bench-") as tmp:
        build = shrinkwrap(FUNCTION, Path(tmp) / "classifier")
        plan = Plan(args, artifacts, build, prepare_variants(build, artifacts, precisions, res), jpegs,
                    build_requests(jpegs), [int(c) for c in args.levels.split(",")], res["env"], Path(tmp))
        pipelines = {} if args.served_only else measure_limits(plan, res)
        servers = [(f"torchfaas {p}", p) for p in precisions] + ([] if args.served_only else [("seed", None)])
        keep_best_starts(servers, serve_rounds(plan, servers, pipelines, res), res)
        if args.served_only:
            return 0
        res["runtime_only"] = measure_runtime_only(plan)
        for precision in precisions:
            log(f"cold start, {precision}")
            res["variants"][precision]["cold_start"] = measure_cold_start(build, plan.dirs[precision],
                                                                          args.cold_repeats, precision)
    print(report(res))
    write_json(args.json, res)
    return 0


# -- any function: the generic part ---------------------------------------------
# what `make bench` measures that is the classifier's only, and why (printed when skipped)
CLASSIFIER_ONLY = [
    ("model and pipeline limits (1, 2)", "measured in-process through the classifier's handler stages"),
    ("seed-style handler (4)", "a naive server of the classifier's model, its baseline"),
    ("bare load beside the cold start (5)", "import torch + the classifier's artifact layout"),
    ("JSON logging cost (6)", "timed with the classifier's log fields"),
    ("MODEL_PRECISION=bf16", "the classifier's precision setting"),
    ("target ratios", "issue 11's and 26's targets are stated for the classifier"),
]


def payload_requests(payloads: list, count: int = 240, seed: int = 1) -> list[bytes]:
    """`count` raw HTTP requests drawn from a function's load inputs by their weights
    (seeded, so every start and every run sends the same sequence), each with its
    Content-Type and one of its query strings."""
    picker = traffic.Picker(payloads, seed=seed)
    out = []
    for _ in range(count):
        payload = picker.payload()
        query, _predictions = picker.query(payload)
        out.append(raw_post(f"/{'?' + query if query else ''}", payload.content_type, payload.body))
    return out


def cold_start(build: Path, artifacts: Path, repeats: int, name: str) -> dict:
    """Process start to /ready 200, median of `repeats` starts."""
    served = [start_to_ready_seconds(build, artifacts, {}, name) for _ in range(repeats)]
    log(f"  process start to ready {statistics.median(served):.3f} s (median of {repeats})")
    return {"served_s": statistics.median(served), "served_all": served}


def generic_bench(args: argparse.Namespace, function: Path, artifacts: Path) -> int:
    """What `make bench` means for any function: the served function under closed-loop
    load at --levels with its own load inputs (best of --rounds starts), the runtime alone
    (the stand-in model) at the top level under the same requests, and cold start."""
    name = function.name
    log(f"bench {name}: served c={args.levels} with its load inputs, the runtime alone, cold start; skipping the "
        "classifier-only parts: " + "; ".join(f"{part} ({why})" for part, why in CLASSIFIER_ONLY))
    payloads, _bad = traffic.load_inputs(str(function))
    requests = payload_requests(payloads)
    levels = [int(c) for c in args.levels.split(",")]
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
           "function": name, "env": extra_env, "payload_kinds": len(payloads),
           "skipped": {part: why for part, why in CLASSIFIER_ONLY}}
    with tempfile.TemporaryDirectory(prefix="torchfaas-bench-") as tmp:
        build = shrinkwrap(function, Path(tmp) / name)
        runs = []
        for round_ in range(args.rounds):
            log(f"{name}, start {round_ + 1} of {args.rounds}")
            server = function_server(build, artifacts, extra_env, subprocess.DEVNULL, name)
            try:
                runs.append(load_levels(server, requests, levels, args.warmup, args.duration))
            finally:
                server.stop()
        res["served_runs"], res["served"] = runs, best_of_starts(runs)
        if not args.served_only:
            log("runtime only (stand-in model)")
            standin = function_server(shrinkwrap(STANDIN, Path(tmp) / "standin"), Path(tmp) / "none",
                                      {"FUNCTION_NAME": "standin"}, subprocess.DEVNULL)
            try:
                res["runtime_only"] = load_levels(standin, requests, levels[-1:], args.warmup, args.duration)
            finally:
                standin.stop()
            log(f"cold start, {name}")
            res["cold_start"] = cold_start(build, artifacts, args.cold_repeats, name)
    print(generic_report(res))
    write_json(args.json, res)
    return 0


def generic_report(res: dict) -> str:
    lines = [f"# torchfaas bench: {res['function']} ({res['when']}, {res['cpus']} CPUs)",
             f"# CPU: {res.get('cpu_model', '?')}", "",
             f"## Served, closed loop, its load inputs ({res['payload_kinds']} kinds of request, drawn by weight)",
             f"  {'':15s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
             f"{'cpu ms/req':>10s} {'client ms/req':>13s}"]
    for name, rows in ((res["function"], res["served"]), ("runtime only", res.get("runtime_only", []))):
        for r in rows:
            lines.append(f"  {name:15s} {r['concurrency']:4d} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
                         f"{r['p99_ms']:8.1f} {r['errors']:6d} {r['cpu_ms_per_request']:10.2f} "
                         f"{r.get('client_cpu_ms_per_request', float('nan')):13.2f}")
    if len(res.get("served_runs", [])) > 1:
        lines.append(f"  best of {len(res['served_runs'])} process starts per level (the p50 too); top-level "
                     "req/s by start: " + " / ".join(f"{run[-1]['throughput']:.1f}" for run in res["served_runs"]))
    if res.get("runtime_only"):
        lines.append("  runtime only: the stand-in model (no model work) under the same requests: the runtime's own "
                     "share (HTTP, batching, JSON, log line, metrics)")
    cold = res.get("cold_start")
    if cold:
        lines += ["", "## Cold start (median)", f"  process start -> ready {cold['served_s']:.3f} s"]
    lines += ["", "## Not measured for this function (the classifier's; make bench FUNCTION=classifier)"]
    lines += [f"  {part}: {why}" for part, why in res["skipped"].items()]
    return "\n".join(lines)


def write_json(path: str | None, res: dict) -> None:
    """The run's raw numbers as JSON at `path` (--json), if one was given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
