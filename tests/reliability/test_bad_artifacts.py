"""A damaged model artifact, on a real process: start-up fails fast with one JSON
`startup_failed` line and exit code 1, and /ready never says 200.

Every kind of damage (support/damaged_artifacts.py), the line's message and the
refused malicious pickle are checked in-process (tests/inprocess/test_lifecycle.py);
what only a process shows, the exit code, is checked here: for a pickle whose hashes
were rewritten (refused by the loader) and for a flipped byte (refused by the hash
check, which a process runs in a thread while the handler imports torch).
"""
import time

import pytest

from loadkit.localrun import FunctionExited
from support.damaged_artifacts import assert_failure_message, damaged_copy

FAIL_FAST_S = 60  # generous: importing torch alone takes seconds on a busy 2-core box


@pytest.mark.parametrize("kind", ["weights-code-pickle-rehashed", "weights-byte-flipped"])
def test_bad_artifact_fails_start_up_fast_with_one_line_and_exit_code_1(tmp_path, function_process, kind):
    marker = tmp_path / "pwned"
    artifacts = damaged_copy(tmp_path / "artifacts", kind, marker)
    started = time.monotonic()
    fn = function_process("classifier", env={"ARTIFACTS_DIR": str(artifacts), "MODEL_BACKEND": "eager"},
                          wait_ready=False)
    ready_seen = False
    try:
        try:
            while time.monotonic() - started < FAIL_FAST_S and not ready_seen:
                ready_seen = fn.is_ready()
                time.sleep(0.05)
        except FunctionExited:
            pass  # what it should do
        assert not ready_seen, "a damaged artifact was served"
        code = fn.wait_exit(5)
    finally:
        fn.stop()
    assert code == 1
    lines = fn.lines()  # all JSON
    failed = [line for line in lines if line["event"] == "startup_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "ERROR", lines
    assert failed[0]["error"] and failed[0]["error_message"]
    assert not [line for line in lines if line["event"] in ("model_loaded", "inference")]
    assert not marker.exists(), "the pickled command ran"
    assert_failure_message(kind, failed[0]["error_message"])
