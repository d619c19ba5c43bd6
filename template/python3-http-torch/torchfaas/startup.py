"""Where a cold start's time goes before the model loads: the `model_loaded` line's
`interpreter_ms`, `imports_ms` and `setup_ms` (docs/log-format.md).

    process start --interpreter--> index.py's first line --imports--> handler imported
        --setup--> model load starts --load--> --warmup--> ready

The process start is the kernel's (its start time in /proc/self/stat, counted since
boot in clock ticks, so 10 ms steps): it includes what Python does before any of our
code runs (the interpreter, `site`, the virtualenv's path set-up). Where /proc says
nothing (not Linux), the process starts at index.py's first line and `interpreter_ms` is 0.
"""
import os
import time
from dataclasses import dataclass


def process_start_time() -> float | None:
    """This process's start as a `time.time()` value (10 ms steps), None where /proc has none."""
    try:
        with open("/proc/self/stat") as stat:
            # field 22 (starttime), counted after the command name, which may hold spaces
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        since_boot = ticks / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time() - max(0.0, age)


def ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000, 2)


@dataclass(frozen=True)
class StartupPhases:
    """The moments of a start-up before the model load, as `time.time()` values."""
    process_started: float  # the kernel started the process
    entered: float  # index.py's first line ran
    imported: float  # the runtime and the handler's module (and what it imports) are imported

    @classmethod
    def since(cls, entered: float) -> "StartupPhases":
        """Phases of a process whose index.py began at `entered` and whose imports end now."""
        started = process_start_time()
        return cls(entered if started is None else min(started, entered), entered, time.time())

    def fields(self, load_started: float) -> dict:
        """The model_loaded line's fields for a load that began at `load_started`."""
        return {"interpreter_ms": ms(self.entered - self.process_started),
                "imports_ms": ms(self.imported - self.entered),
                "setup_ms": ms(load_started - self.imported)}
