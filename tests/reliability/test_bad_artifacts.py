"""A missing, corrupt or tampered model artifact: start-up fails fast with one JSON
`startup_failed` line and a non-zero exit, and never serves.

Beyond tests/integration/test_lifecycle.py (weights file missing, labels edited):
an unparseable manifest, a manifest without its file list, a deleted manifest,
a weights file with one flipped byte, garbage weights with the manifest re-hashed
to match, and an attacker's weights: a pickle whose __reduce__ runs a command,
with the manifest re-hashed to match (what someone with write access to the
artifact directory could do). The hash cannot stop that one; torch.load
(weights_only=True) must refuse to unpickle it, so the command never runs.
MODEL_BACKEND=eager makes the classifier load weights.pt even when a compiled
package is present.
"""
import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import time

import pytest
import requests
from support.function_process import CLASSIFIER_ARTIFACTS, FunctionProcess

FAIL_FAST_S = 60  # generous: importing torch alone takes seconds on a busy 2-core box


class RunsACommand:
    """What a malicious weights file holds: unpickling it runs `touch <marker>`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


def rehash(artifacts):
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((artifacts / name).read_bytes()).hexdigest()
                         for name in manifest["files"] if (artifacts / name).exists()}
    (artifacts / "manifest.json").write_text(json.dumps(manifest))


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def damage(artifacts, kind: str, marker):
    manifest = artifacts / "manifest.json"
    weights = artifacts / "weights.pt"
    if kind == "manifest-not-json":
        manifest.write_text(manifest.read_text()[:40])
    elif kind == "manifest-without-files":
        data = json.loads(manifest.read_text())
        del data["files"]
        manifest.write_text(json.dumps(data))
    elif kind == "manifest-deleted":
        manifest.unlink()
    elif kind == "weights-byte-flipped":
        flip_byte(weights)
    elif kind == "weights-garbage-rehashed":
        weights.write_bytes(b"\x00garbage" * 1000)
        rehash(artifacts)
    elif kind == "weights-code-pickle-rehashed":
        weights.write_bytes(pickle.dumps({"features.weight": RunsACommand(str(marker))}))
        rehash(artifacts)
    else:
        raise ValueError(kind)


def artifacts_copy(tmp_path):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(CLASSIFIER_ARTIFACTS, artifacts)
    # the compiled package (if the build made one) is not what these cases are about
    if (artifacts / "model.pt2").exists():
        (artifacts / "model.pt2").unlink()
        rehash(artifacts)
    return artifacts


@pytest.mark.parametrize("kind", ["manifest-not-json", "manifest-without-files", "manifest-deleted",
                                  "weights-byte-flipped", "weights-garbage-rehashed",
                                  "weights-code-pickle-rehashed"])
def test_bad_artifact_fails_start_up_fast_with_one_line(tmp_path, classifier_build, kind):
    artifacts = artifacts_copy(tmp_path)
    marker = tmp_path / "pwned"
    damage(artifacts, kind, marker)
    fn = FunctionProcess(classifier_build, env={"ARTIFACTS_DIR": str(artifacts), "MODEL_BACKEND": "eager"})
    started = time.monotonic()
    fn.start(wait_ready=False)
    ready_seen = False
    try:
        while fn.proc.poll() is None and time.monotonic() - started < FAIL_FAST_S and not ready_seen:
            try:
                ready_seen = requests.get(fn.url + "/ready", timeout=1).status_code == 200
            except requests.RequestException:
                pass  # refused, or cut off because the process is exiting: not ready either way
            time.sleep(0.05)
        assert not ready_seen, "a damaged artifact was served"
        code = fn.wait_exit(5)
    finally:
        if fn.proc.poll() is None:
            fn.stop()
    assert code == 1
    lines = fn.lines()  # all JSON
    failed = [line for line in lines if line["event"] == "startup_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "ERROR", lines
    assert failed[0]["error"] and failed[0]["error_message"]
    assert not [line for line in lines if line["event"] in ("model_loaded", "inference")]
    assert not marker.exists(), "the pickled command ran"
    if kind in ("manifest-not-json", "manifest-without-files", "manifest-deleted"):
        assert "manifest" in failed[0]["error_message"]
    if kind == "weights-byte-flipped":
        assert "sha256" in failed[0]["error_message"]
    if kind == "weights-code-pickle-rehashed":
        assert "weights_only" in failed[0]["error_message"] or "Unsupported" in failed[0]["error_message"]


def test_the_malicious_pickle_would_run_if_unpickled(tmp_path):
    """Control: the payload is real, so the test above proves something."""
    marker = tmp_path / "pwned"
    payload = tmp_path / "weights.pt"
    payload.write_bytes(pickle.dumps({"w": RunsACommand(str(marker))}))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(payload)!r}, 'rb').read())"],
                   check=True, cwd=tmp_path)
    assert marker.exists()
