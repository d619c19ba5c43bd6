"""A short soak on every CI run (load/soak.py; `make soak DURATION=...` runs a long one).

The classifier, as `make run` starts it, under steady load at 80% of its measured
capacity with 5% bad inputs for SOAK_CI_SECONDS (100 s, after a short capacity
burst): it fails if the RSS floor's trend grows more than 32 MiB after the warm-up, if any answered
request has no log line (or two), if any answer is a 5xx, or if a bad input is
not answered with its 4xx.
"""
import json
import os
import subprocess
import sys

from loadkit.localrun import CLASSIFIER_ARTIFACTS, REPO

SECONDS = int(os.environ.get("SOAK_CI_SECONDS", "100"))


def test_a_short_soak_keeps_memory_flat_and_loses_no_log_line(classifier_build, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "load" / "soak.py"), "--build", str(classifier_build),
         "--artifacts", str(CLASSIFIER_ARTIFACTS), "--duration", str(SECONDS), "--warmup-s", "30",
         "--capacity-s", "8", "--sample-s", "2", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=SECONDS + 240)
    print(proc.stdout[-4000:])
    summary_lines = [line for line in proc.stdout.splitlines() if line.startswith("SOAK SUMMARY ")]
    assert summary_lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_lines[-1].removeprefix("SOAK SUMMARY "))
    assert summary["failures"] == [], summary
    assert proc.returncode == 0
    assert summary["rss_growth_mib"] <= 32 and summary["lost_lines"] == 0
    assert summary["answered"] >= 0.9 * summary["sent"] > 0, summary
    assert summary["statuses"].get("400", 0) + summary["statuses"].get("415", 0) > 0  # bad inputs were sent
