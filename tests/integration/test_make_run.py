"""`make run` prints nothing but the function's JSON lines on stdout (`make run | jq .`)."""
import json

import requests

from loadkit.localrun import REPO, FunctionProcess, free_port


def test_make_run_stdout_is_json_lines_only():
    port = free_port()
    # make and the function it starts in a group of their own: stop() signals and waits for both
    make_run = FunctionProcess(REPO, command=["make", "--no-print-directory", "run", f"PORT={port}"], port=port,
                               own_session=True)
    with make_run.start(timeout=120):
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    lines = make_run.raw_lines
    assert lines, "nothing on stdout"
    parsed = [json.loads(line) for line in lines]  # a non-JSON line (a make echo) raises here
    assert parsed[0]["event"] == "startup"
    assert {"model_loaded", "metadata", "shutdown"} <= {line["event"] for line in parsed}
