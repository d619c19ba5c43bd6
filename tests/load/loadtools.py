"""Run the load tools as users do: as subprocesses (Locust must not be imported by pytest)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOAD = REPO / "load"


# the locustfile's options also come from these; a developer's shell must not change a test
OPTION_VARS = ("PROFILE", "LOAD_USERS", "LOAD_DURATION", "LOAD_STEP_USERS", "LOAD_STEP_SECONDS", "MAX_P95_MS",
               "MAX_P99_MS", "MAX_FAIL_RATIO", "BAD_RATIO", "SENT_LOG", "LOAD_SEED")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPTION_VARS and not k.startswith("LOCUST_")}
    return {**env, **extra}


def run_locust(host: str, out: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`locust -f load/locustfile.py --headless` with CSV, HTML and the sent log in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOAD / "locustfile.py"), "--headless", "--only-summary",
           "--host", host, "--csv", str(out / "run"), "--html", str(out / "run.html"),
           "--sent-log", str(out / "sent.jsonl"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=clean_env())
