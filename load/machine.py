"""Was the machine busy? How much CPU other processes took while a run of ours went on.

`make demo` runs it around its load so that a failed latency contract says whether
the machine, not the function, was the likely cause:

    python load/machine.py snapshot PID > before.json    # PID: the shell that runs the load
    ... the load, run by PID's children ...
    python load/machine.py report before.json PID         # one line; exit 10 when busy

All CPU time the kernel counts as busy (/proc/stat) minus what PID's children used
meanwhile (their CPU time once they have exited and been waited for: /proc/PID/stat's
cutime and cstime) is what the rest of the machine used. Busy: other processes used at
least BUSY_CORES of a CPU on average, or a quarter of the CPUs, whichever is more.
"""
import json
import os
import sys
import time

BUSY_CORES = 0.5
BUSY_EXIT = 10
TICK = os.sysconf("SC_CLK_TCK")


def cpu_jiffies() -> int:
    """Busy jiffies of all CPUs since boot (everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def children_ticks(pid: int) -> int:
    """CPU ticks of `pid`'s children that have exited and been waited for."""
    with open(f"/proc/{pid}/stat") as stat:
        after_name = stat.read().rsplit(")", 1)[1].split()
    return int(after_name[13]) + int(after_name[14])  # fields 16 and 17: cutime, cstime


def snapshot(pid: int) -> dict:
    return {"time": time.monotonic(), "busy": cpu_jiffies(), "children": children_ticks(pid),
            "cpus": os.cpu_count() or 1, "loadavg": os.getloadavg()[0]}


def compare(before: dict, after: dict) -> dict:
    seconds = max(after["time"] - before["time"], 1e-6)
    busy = (after["busy"] - before["busy"]) / TICK / seconds
    ours = (after["children"] - before["children"]) / TICK / seconds
    others = max(0.0, busy - ours)
    threshold = max(BUSY_CORES, before["cpus"] / 4)
    return {"seconds": round(seconds, 1), "cpus": before["cpus"], "ours_cores": round(ours, 2),
            "others_cores": round(others, 2), "loadavg_at_start": before["loadavg"],
            "busy": others >= threshold, "busy_threshold_cores": threshold}


def describe(result: dict) -> str:
    state = "busy" if result["busy"] else "not busy"
    return (f"the machine was {state}: other processes used {result['others_cores']:.2f} of its "
            f"{result['cpus']} CPUs over the {result['seconds']:.0f} s of load (this run "
            f"{result['ours_cores']:.2f}; load average {result['loadavg_at_start']:.1f} at the start; "
            f"busy from {result['busy_threshold_cores']:g})")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "snapshot":
        print(json.dumps(snapshot(int(argv[1]))))
        return 0
    if len(argv) in (3, 4) and argv[0] == "report":
        with open(argv[1]) as f:
            result = compare(json.load(f), snapshot(int(argv[2])))
        if len(argv) == 4:
            with open(argv[3], "w") as f:
                json.dump(result, f)
        print(describe(result))
        return BUSY_EXIT if result["busy"] else 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
