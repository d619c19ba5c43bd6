"""EfficientNet-Lite0 behind LitServe 0.2.19 (load/benchmark/peer_bench.py starts it in .peers/litserve).

    .peers/litserve/bin/python load/benchmark/peers/litserve_server.py --port 8000

LitServe's API for images is JSON: POST /predict {"image": "<base64 JPEG>"} (a raw
body goes through `await request.json()` in LitServe's handler and fails). Its own
dynamic batching: the inference workers collect up to `max_batch_size` decoded
requests, waiting at most `batch_timeout` seconds, then call predict() once.
Preprocessing (decode + crop + resize) runs per request in decode_request, inside
the inference worker, as LitServe's examples do; model and preprocessing: common.py.

Best setting on 2 cores (peer_bench.py --servers litserve --peer-env ..., quiet machine,
see docs/benchmarks.md "Against the peer servers"): BEST below.
"""
import argparse
import base64
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 after sys.path points at this folder

# The best of the settings tried, by c16 throughput (peer_bench.py --servers litserve --rounds 1
# --levels 1,16 --duration 6 --peer-env litserve:PEER_...=..., 2026-11-25; c16 req/s / c1 p50 ms):
#   2 workers x 1 thread, batch 4 (5 ms)  : 91.0 / 22.8 (quiet); paired on a busier machine 50.8, 87.2
#   2 workers x 1 thread, batch 2         : 95.3 / 22.5 (quiet); paired 44.3, 35.7
#   2 workers x 1 thread, batch 8 (10 ms) : 83.5 / 26.9 (quiet); 76.8 busier
#   1 worker x 2 threads, batch 4         : 72.0 / 18.1 (quiet): lower c1 latency, less throughput
#   fast_queue (ZeroMQ), batch 4          : 83.0, 35.5 paired with 50.8, 87.2: no clear gain, default kept
# Batch 4 and 2 tie quiet; 4 won both busier pairs. Eager per-image cost grows with the batch
# here (common.py), so batching buys little beyond keeping both workers fed.
# Override with PEER_*.
BEST = dict(
    workers=2,          # PEER_WORKERS: inference worker processes (workers_per_device on cpu)
    threads=1,          # PEER_THREADS: torch threads per worker (workers x threads = 2 cores)
    max_batch=4,        # PEER_MAX_BATCH: LitAPI(max_batch_size=...)
    batch_timeout=0.005,  # PEER_BATCH_TIMEOUT_S: LitAPI(batch_timeout=...) in seconds
    fast_queue=False,   # PEER_FAST_QUEUE: LitServer(fast_queue=...), ZeroMQ between processes
    api_servers=0,      # PEER_API_SERVERS: run(num_api_servers=...); 0 = LitServe's default (= workers)
)
WORKERS = common.env_int("PEER_WORKERS", BEST["workers"])
THREADS = common.env_int("PEER_THREADS", BEST["threads"])
MAX_BATCH = common.env_int("PEER_MAX_BATCH", BEST["max_batch"])
BATCH_TIMEOUT = common.env_float("PEER_BATCH_TIMEOUT_S", BEST["batch_timeout"])
FAST_QUEUE = os.environ.get("PEER_FAST_QUEUE", str(int(BEST["fast_queue"]))) == "1"
API_SERVERS = common.env_int("PEER_API_SERVERS", BEST["api_servers"])

import litserve as ls  # noqa: E402 after its settings above are read


class EfficientNetAPI(ls.LitAPI):
    def setup(self, device):
        self.model = common.Classifier(THREADS, warmup_batches=(1, MAX_BATCH))

    def decode_request(self, request):
        return common.to_pixels(base64.b64decode(request["image"]))

    def batch(self, inputs):
        return inputs  # a list of uint8 images; common.to_batch stacks them

    def predict(self, pixels):
        return self.model.answers(self.model.forward(pixels if isinstance(pixels, list) else [pixels]))

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return output[0] if isinstance(output, list) else output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    api = EfficientNetAPI(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=WORKERS, timeout=60,
                          fast_queue=FAST_QUEUE)
    print(f"litserve: workers {WORKERS}, torch threads {THREADS}, max_batch_size {MAX_BATCH}, "
          f"batch_timeout {BATCH_TIMEOUT}, fast_queue {FAST_QUEUE}, api servers {API_SERVERS or 'default'}",
          file=sys.stderr, flush=True)
    # num_api_servers=None: one API server process per inference worker (LitServe's default)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False,
               num_api_servers=API_SERVERS or None)


if __name__ == "__main__":
    os.environ.setdefault("LITSERVE_DISABLE_USAGE_STATS", "1")
    main()
