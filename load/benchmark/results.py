"""What both benchmark commands do with their figures: check a ratio against its
target, say which machine measured it, write the raw numbers as JSON."""
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple


class Target(NamedTuple):
    """A ratio the report checks: `key` in the run's ratios, `label` as printed,
    `op` ">=" or "<=", and the bound."""
    key: str
    label: str
    op: str
    target: float

    def met_by(self, value: float) -> bool:
        return value >= self.target if self.op == ">=" else value <= self.target


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("?" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def cpu_capability() -> str:
    """What the speed figures depend on besides the model name, e.g. "AVX512, AVX512-BF16,
    no AMX": the ISA torch's kernels run (torch.backends.cpu.get_cpu_capability()) and
    the bf16 units oneDNN uses; figures differ by about 2x between these. torch is asked
    in a child process: importing it here would fix OpenMP's threads before the handler
    sets them."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           capture_output=True, text=True)
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return ", ".join([probe.stdout.strip() or "?",
                      "AVX512-BF16" if "avx512_bf16" in flags else "no AVX512-BF16",
                      "AMX" if "amx_bf16" in flags else "no AMX"])


def write_json(path: str | None, res: dict) -> None:
    """The run's raw numbers as JSON at `path` (--json), if one was given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2, default=str))
