"""`make run` prints nothing but the function's JSON lines on stdout (`make run | jq .`)."""
import json
import os
import signal
import subprocess
import time

import requests

from localrun import REPO, free_port


def test_make_run_stdout_is_json_lines_only():
    port = free_port()
    proc = subprocess.Popen(["make", "--no-print-directory", "run", f"PORT={port}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, "make run exited"
            time.sleep(0.2)
        else:
            raise AssertionError("make run never became ready")
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    lines = out.decode().splitlines()
    assert lines, "nothing on stdout"
    parsed = [json.loads(line) for line in lines]  # a non-JSON line (a make echo) raises here
    assert parsed[0]["event"] == "startup"
    assert {"model_loaded", "metadata", "shutdown"} <= {line["event"] for line in parsed}
