"""The classifier's fp32 packages on each oneDNN ISA family: time per image of every
package the artifacts hold (model.pt2, and model-avx2.pt2 where the build packed both),
with oneDNN as this CPU runs it and held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`,
`ATEN_CPU_CAPABILITY=avx2`: as an AVX2-only node runs it). A package whose weights are
packed for the other family reorders them at every forward pass (docs/deploy.md,
"Nodes of different CPUs").

    make bench-packing            # or: .venv/bin/python load/benchmark/packing.py --artifacts artifacts/classifier

One thread, the load photos as the classifier preprocesses them, a fresh process per package and
family (oneDNN reads its variables once), the runs alternated; each figure is the median of
`--passes` passes, the lowest of `--rounds` rounds.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from results import cpu_capability, cpu_model

HOLD_TO_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}

TIME_PASSES = """
import json, statistics, sys, time
import numpy as np, torch
from loadkit.photos import PHOTOS, photo_bytes
from peers.common import to_pixels
from torchfaas.toolkit.compiled import CompiledModel
torch.set_num_threads(1)
model, passes = CompiledModel(sys.argv[1]), int(sys.argv[2])
photos = [to_pixels(photo_bytes(n)) for n in sorted(PHOTOS)[:4]]
out = {}
for batch in (1, 4):
    pixels = torch.from_numpy(np.stack(photos[:batch]))
    for _ in range(5):
        model(pixels)
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        model(pixels)
        times.append(time.perf_counter() - started)
    out[batch] = 1000 * statistics.median(times) / batch
print(json.dumps(out))
"""


def time_package(package: Path, hold_to_avx2: bool, passes: int, template: Path) -> dict:
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(HOLD_TO_AVX2 if hold_to_avx2 else {}),
           "PYTHONPATH": os.pathsep.join([str(template), str(here.parent), str(here)])}
    done = subprocess.run([sys.executable, "-c", TIME_PASSES, str(package), str(passes)], env=env,
                          capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/classifier"))
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    template = Path(__file__).resolve().parents[2] / "template" / "python3-http-torch"
    manifest = json.loads((args.artifacts / "manifest.json").read_text())
    packages = [name for name in ("model.pt2", "model-avx2.pt2") if name in manifest["files"]]
    print(f"# CPU: {cpu_model()} ({cpu_capability()}); model.pt2 packed for {manifest.get('aoti_packed_for', '?')}")
    best: dict = {}
    for _ in range(args.rounds):
        for package in packages:
            for held in (False, True):
                got = time_package(args.artifacts / package, held, args.passes, template)
                key = (package, held)
                best[key] = {b: min(v, best.get(key, {}).get(b, v)) for b, v in got.items()}
    print(f"{'package':<16} {'oneDNN':<22} {'b1 ms/img':>10} {'b4 ms/img':>10}")
    for (package, held), ms in best.items():
        family = "held to AVX2" if held else "as this CPU runs it"
        print(f"{package:<16} {family:<22} {ms[1]:>10.2f} {ms[4]:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
