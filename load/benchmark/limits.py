"""The classifier's limits, measured in this process through its handler: what the served
function is compared with.

The model-only limit (forward passes per batch size, compiled and eager, one stream and
the served layout of `workers` streams side by side), the in-process pipeline (decode +
preprocess + forward) kept loaded as a `Pipeline` so that its windows can run between the
served starts, the handler's stages' CPU per request, one JSON log line's CPU, and the
bf16 artifacts prepared next to the fp32 ones.
"""
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

from loadkit.localrun import import_build
from serving import log


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


def load_handlers(handler_module, artifacts: Path, precision: str, results: dict) -> tuple[dict, object]:
    """The classifier loaded with each backend measured, those that load -> ({backend:
    handler}, the settings of the last backend tried); the served precision and its
    reason go in `results`."""
    from torchfaas.toolkit import ImageSettings, read_verified_manifest

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
    return handlers, settings


def model_rates(handler, backend: str, pixels, precision: str, seconds: float) -> dict:
    """Images per second of the model alone, one stream, by batch size."""
    rates = {}
    for batch in (1, 2, 4, 8, 16):
        items = [pixels] * batch
        rates[batch] = best_rate(partial(handler.predict, items), batch, seconds)
        log(f"  {precision} model {backend} batch {batch}: {rates[batch]:.1f} images/s")
    return rates


def parallel_model_rates(handler, served: str, workers: int, pixels, precision: str, seconds: float) -> dict:
    """Images per second of the model alone in the served layout, `workers` forward
    passes side by side, by batch size."""
    parallel = {}
    for batch in (1, 2, 4, 8):
        items = [pixels] * batch
        parallel[batch] = parallel_rate(partial(handler.predict, items), batch, workers, seconds)
        log(f"  {precision} model {served} x{workers} streams, batch {batch}: {parallel[batch]:.1f} images/s")
    return parallel


def measure_in_process(build: Path, artifacts: Path, jpegs: dict, seconds: float,
                       precision: str = "fp32") -> tuple[dict, "Pipeline"]:
    import_build(build)
    import numpy as np
    import torch

    import function.handler as handler_module  # before torch: see bench.prepare_variants()
    from torchfaas.toolkit import open_image

    results = {"torch_threads": None, "model": {}, "precision": precision}
    handlers, settings = load_handlers(handler_module, artifacts, precision, results)
    results["torch_threads"] = torch.get_num_threads()
    pixels = np.zeros((224, 224, 3), dtype=np.uint8)
    for backend, handler in handlers.items():
        results["model"][backend] = model_rates(handler, backend, pixels, precision, seconds)
    served = "aoti" if "aoti" in handlers else "eager"
    handler = handlers[served]
    workers = settings.batch_workers or handler.batch_workers
    results["workers"] = workers
    rates = results["model"][served]
    if workers > 1:  # the served layout: `workers` forward passes side by side
        rates = parallel_model_rates(handler, served, workers, pixels, precision, seconds)
        results["model"][f"{served} x{workers}"] = rates
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


def prepare_bf16(artifacts: Path, build: Path) -> Path:
    """The bf16 artifacts next to the fp32 ones: the build step with MODEL_PRECISION=bf16
    (the fp32 package and a current bf16 one are reused; the accuracy gate runs here)."""
    dest = artifacts.parent / f"{artifacts.name}-bf16"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("weights.pt", "labels.json"):
        shutil.copy2(artifacts / name, dest / name)
    # the fp32 packages with their keys and hashes, so the build step reuses them instead of recompiling
    fp32 = json.loads((artifacts / "manifest.json").read_text())
    if (artifacts / "model.pt2").is_file() and fp32.get("aoti_key"):
        try:
            manifest = json.loads((dest / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = {"files": {}}
        manifest.update({k: v for k, v in fp32.items() if k.startswith(("aoti_", "avx2_"))})
        for package in ("model.pt2", "model-avx2.pt2"):
            if package in fp32["files"]:
                shutil.copy2(artifacts / package, dest / package)
                manifest.setdefault("files", {})[package] = fp32["files"][package]
        (dest / "manifest.json").write_text(json.dumps(manifest))
    subprocess.run([sys.executable, "-m", "torchfaas.prepare"], cwd=build, check=True,
                   env={**os.environ, "ARTIFACTS_DIR": str(dest), "MODEL_PRECISION": "bf16"},
                   stdout=subprocess.DEVNULL)
    return dest
