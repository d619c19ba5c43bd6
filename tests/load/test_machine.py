"""load/machine.py tells the demo whether the machine was busy: CPU used by other processes.

Real processes only: a CPU-bound child of the measured shell counts as the run's own,
a CPU-bound process beside it as the machine's, and `make demo` says which it saw.
"""
import json
import subprocess
import sys
import time

from loadkit.localrun import LOAD, REPO, free_port

# spins for CPU seconds, not wall seconds: on a busy machine it still burns what the test counts
SPIN = "import sys, time\nend = time.process_time() + float(sys.argv[1])\nwhile time.process_time() < end: pass\n"


def measured(tmp_path, body: str) -> tuple[int, dict, str]:
    """Run `body` in a bash whose CPU, and its children's, is the run's own; (exit, result, line)."""
    script = (f'"{sys.executable}" {LOAD}/machine.py snapshot $$ > {tmp_path}/before.json\n{body}\n'
              f'"{sys.executable}" {LOAD}/machine.py report {tmp_path}/before.json $$ {tmp_path}/after.json')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads((tmp_path / "after.json").read_text()), done.stdout.strip()


def test_the_runs_own_children_are_not_the_machine(tmp_path):
    code, result, line = measured(tmp_path, f'"{sys.executable}" -c "{SPIN}" 2')
    assert result["seconds"] >= 2
    assert result["ours_cores"] * result["seconds"] >= 1.2, result  # the spinning child, counted as ours
    assert line.startswith("the machine was") and f"of its {result['cpus']} CPUs" in line
    assert (code == 10) == result["busy"]


def test_a_cpu_bound_process_beside_the_run_makes_the_machine_busy(tmp_path):
    hog = subprocess.Popen([sys.executable, "-c", SPIN, "6"])
    try:
        time.sleep(0.3)
        code, result, line = measured(tmp_path, "sleep 3")
    finally:
        hog.kill()
        hog.wait()
    assert result["others_cores"] >= 0.6, result  # the hog: about one CPU
    assert result["ours_cores"] < 0.3, result
    assert result["busy"] and code == 10
    assert line.startswith("the machine was busy: other processes used")


def test_make_demo_passes_beside_a_cpu_bound_process_and_says_the_machine_was_busy(tmp_path):
    """The laptop case: one CPU-bound process beside `make demo`. The demo sizes its load
    from what the machine serves now, passes, and its machine line names the other work."""
    hog = subprocess.Popen([sys.executable, "-c", SPIN, "120"])
    try:
        done = subprocess.run(["make", "--no-print-directory", "demo", f"PORT={free_port()}", "DEMO_SECONDS=8",
                               f"DEMO_DIR={tmp_path}/demo"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        hog.kill()
        hog.wait()
    out, tail = done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    sizing = json.loads((tmp_path / "demo" / "sizing.json").read_text())
    assert 1 <= sizing["users"] <= 6 and sizing["probe_requests"] > 0, sizing
    assert sizing["share"] <= 0.5 or sizing["users"] == 1, sizing
    assert f"== load: {sizing['users']} users" in out, tail
    assert "sizing: one client back to back, " in done.stderr, tail
    assert "== the machine during the load" in out, tail
    assert "the machine was busy: other processes used" in out, tail
    machine = json.loads((tmp_path / "demo" / "machine.json").read_text())
    assert machine["busy"] and machine["others_cores"] >= 0.6, machine
    assert done.returncode == 0 and "demo: OK" in out, tail
