"""What both benchmark commands do with their figures: check a ratio against its
target, say which machine measured it, write the raw numbers as JSON."""
import json
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


def write_json(path: str | None, res: dict) -> None:
    """The run's raw numbers as JSON at `path` (--json), if one was given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2, default=str))
