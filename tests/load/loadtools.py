"""Run the load tools as users do: as subprocesses (Locust must not be imported by pytest)."""
import os
import subprocess
import sys
from pathlib import Path

from loadkit.localrun import LOAD, REPO

# the locustfile's options also come from these; a developer's shell must not change a test
OPTION_VARS = ("PROFILE", "LOAD_USERS", "LOAD_DURATION", "LOAD_STEP_USERS", "LOAD_STEP_SECONDS", "MAX_P95_MS",
               "MAX_P99_MS", "MAX_FAIL_RATIO", "BAD_RATIO", "SENT_LOG", "LOAD_SEED", "LOAD_FUNCTION")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPTION_VARS and not k.startswith("LOCUST_")}
    return {**env, **extra}


def locust_args(host: str, out: Path, *args: str) -> list[str]:
    """A headless run's options, with CSV, HTML and the sent log in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    return ["--headless", "--only-summary", "--host", host, "--csv", str(out / "run"),
            "--html", str(out / "run.html"), "--sent-log", str(out / "sent.jsonl"), *args]


def run_locust(host: str, out: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`locust -f load/locustfile.py --headless` with CSV, HTML and the sent log in `out`."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOAD / "locustfile.py"), *locust_args(host, out, *args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=clean_env())


def run_capacity(host: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python load/capacity.py --host HOST ARGS` as `make capacity` runs it."""
    cmd = [sys.executable, str(LOAD / "capacity.py"), "--host", host, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=clean_env())


def run_distributed(workers: int, host: str, out: Path, *args: str,
                    timeout: float = 120) -> subprocess.CompletedProcess:
    """What `make load WORKERS=n` runs: load/distributed.py, one master and `workers` local workers."""
    cmd = [sys.executable, str(LOAD / "distributed.py"), "--workers", str(workers), "--max-wait", "60",
           "--", *locust_args(host, out, *args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=clean_env())


SLOW_INPUTS = """\"\"\"The classifier's small JPEGs, built as slowly as a busy machine builds its 54 photos.\"\"\"
import time

from loadkit import traffic


def payloads():
    time.sleep({seconds})
    return traffic.build_corpus(sizes={{320: 1}}, formats={{"jpeg": traffic.FORMATS["jpeg"]}})
"""


def slow_inputs_function(folder: Path, seconds: float) -> Path:
    """A function folder (for --function) whose load inputs take `seconds` to build: longer
    than a short run, as the classifier's took on a busy 2-core machine."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "load_inputs.py").write_text(SLOW_INPUTS.format(seconds=seconds))
    return folder
