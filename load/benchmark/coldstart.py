"""Cold start: process start to the first /ready 200, where its time went (the phases
the `model_loaded` line gives: docs/log-format.md), and, for the classifier, the bare
`import torch` + artifact load it is compared with."""
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serving import ORIGINAL_ENV, log, start_function

# model_loaded's phases, in the order they follow one another from the process start
PHASES = ("interpreter_ms", "imports_ms", "setup_ms", "load_ms", "warmup_ms")

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


def one_start(build: Path, artifacts: Path, env: dict, name: str = "classifier") -> tuple[float, dict]:
    """One start of the served function: seconds from process start to /ready 200, and
    its model_loaded line's phases (empty if it wrote none)."""
    with start_function(build, artifacts, env, name) as process:
        ready_s = process.ready_at - process.started
    loaded = [line for line in process.read_log().lines if line.get("event") == "model_loaded"]
    return ready_s, {k: loaded[0][k] for k in PHASES if loaded and k in loaded[0]}


def medians(starts: list[tuple[float, dict]]) -> dict:
    """`served_s` and each phase: the medians over the starts, and every start's figures."""
    phases = {k: statistics.median(p[k] for _, p in starts) for k in PHASES if all(k in p for _, p in starts)}
    return {"served_s": statistics.median(s for s, _ in starts), "phases_ms": phases,
            "served_all": [s for s, _ in starts], "phases_all": [p for _, p in starts]}


def phases_text(result: dict) -> str:
    """"interpreter 60 + imports 700 + ... ms" from a result's median phases."""
    return " + ".join(f"{k.removesuffix('_ms').replace('warmup', 'warm-up')} {v:.0f}"
                      for k, v in result.get("phases_ms", {}).items()) + " ms"


def measure_cold_start(build: Path, artifacts: Path, repeats: int, precision: str = "fp32") -> dict:
    starts, bare = [], []
    package = "model-bf16.pt2" if precision == "bf16" else "model.pt2"
    for _ in range(repeats):
        bare.append(bare_load_seconds(artifacts, package))
        starts.append(one_start(build, artifacts, {"MODEL_PRECISION": precision}))
    result = {**medians(starts), "bare_s": statistics.median(bare), "bare_all": bare}
    log(f"  {precision}: process start to ready {result['served_s']:.3f} s ({phases_text(result)}); "
        f"import torch + artifact load {result['bare_s']:.3f} s (medians of {repeats})")
    return result


def cold_start(build: Path, artifacts: Path, repeats: int, name: str) -> dict:
    """Process start to /ready 200 and its phases, medians of `repeats` starts."""
    result = medians([one_start(build, artifacts, {}, name) for _ in range(repeats)])
    log(f"  process start to ready {result['served_s']:.3f} s ({phases_text(result)}; medians of {repeats})")
    return result
