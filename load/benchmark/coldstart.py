"""Cold start: process start to the first /ready 200, and, for the classifier, the bare
`import torch` + artifact load it is compared with."""
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serving import ORIGINAL_ENV, log, start_to_ready_seconds

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


def cold_start(build: Path, artifacts: Path, repeats: int, name: str) -> dict:
    """Process start to /ready 200, median of `repeats` starts."""
    served = [start_to_ready_seconds(build, artifacts, {}, name) for _ in range(repeats)]
    log(f"  process start to ready {statistics.median(served):.3f} s (median of {repeats})")
    return {"served_s": statistics.median(served), "served_all": served}
