"""EfficientNet-Lite0 behind BentoML 1.4.40 (load/benchmark/peer_bench.py starts it in .peers/bentoml).

    .peers/bentoml/bin/python load/benchmark/peers/bentoml_server.py --port 3000

runs `bentoml serve bentoml_server:EfficientNetLite0` here (one API server process per
worker under BentoML's process manager). BentoML's service APIs take JSON or multipart,
not a raw image body: POST /classify {"images": ["<base64 JPEG>"]} (a batchable API
takes a list; one image per request here), answered with a list of one answer.
BentoML's own adaptive batching (@bentoml.api(batchable=True)): each worker's
dispatcher merges concurrent calls into one call of up to max_batch_size images,
waiting as its latency model allows within max_latency_ms. Preprocessing (decode +
crop + resize) runs in the batched call; model and preprocessing: common.py.

Best setting on 2 cores (docs/benchmarks.md "Against the peer servers"): BEST below.
"""
import base64
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    """The launcher: exec `bentoml serve` on this module (before the heavy imports below,
    so that the cold start measured from here is BentoML's own)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.execv(str(bentoml_cli), [str(bentoml_cli), "serve", "bentoml_server:EfficientNetLite0",
                                "--working-dir", str(HERE), "--host", "127.0.0.1", "--port", str(args.port)])


if __name__ == "__main__":
    main()

sys.path.insert(0, str(HERE))
import common  # noqa: E402 after sys.path points at this folder

# The best of the settings tried, by c16 throughput (peer_bench.py --servers bentoml --rounds 1
# --levels 1,16 --duration 6 --peer-env bentoml:PEER_...=..., 2026-11-25; c16 req/s / c1 p50 ms):
#   2 workers x 1 thread, max_batch_size 4 : 94.3 / 17.7 (quiet); paired busier 62.8, 45.3
#   2 workers x 1 thread, max_batch_size 2 : paired busier 60.0, 40.2
#   2 workers x 1 thread, max_batch_size 8 : 79.0 / 18.8 (quiet)
#   1 worker x 2 threads, max_batch_size 4 : 64.2 / 23.1 (quiet); batch 8: 58.7 / 23.5
#   max_latency_ms 200: the dispatcher rejects requests it cannot serve in time (3773 errors
#   in 8 s at c16), 1000: some under load; BentoML's default 60000 kept.
# Override with PEER_*.
BEST = dict(
    workers=2,            # PEER_WORKERS: @bentoml.service(workers=...), processes
    threads=1,            # PEER_THREADS: torch threads per worker (workers x threads = 2 cores)
    max_batch=4,          # PEER_MAX_BATCH: @bentoml.api(max_batch_size=...)
    max_latency_ms=60000,  # PEER_MAX_LATENCY_MS: @bentoml.api(max_latency_ms=...), BentoML's default
)
WORKERS = common.env_int("PEER_WORKERS", BEST["workers"])
THREADS = common.env_int("PEER_THREADS", BEST["threads"])
MAX_BATCH = common.env_int("PEER_MAX_BATCH", BEST["max_batch"])
MAX_LATENCY_MS = common.env_int("PEER_MAX_LATENCY_MS", BEST["max_latency_ms"])

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
import bentoml  # noqa: E402 after BENTOML_DO_NOT_TRACK is set


@bentoml.service(workers=WORKERS, traffic={"timeout": 60})
class EfficientNetLite0:
    def __init__(self) -> None:
        print(f"bentoml worker: workers {WORKERS}, torch threads {THREADS}, max_batch_size {MAX_BATCH}, "
              f"max_latency_ms {MAX_LATENCY_MS}", file=sys.stderr, flush=True)
        self.model = common.Classifier(THREADS, warmup_batches=(1, MAX_BATCH))

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def classify(self, images: list[str]) -> list[dict]:
        return self.model.classify([base64.b64decode(image) for image in images])

