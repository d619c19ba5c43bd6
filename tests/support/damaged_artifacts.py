"""Damaged copies of the classifier's artifacts, for start-up failure tests.

Kinds: an unparseable manifest, a manifest without its file list, a deleted
manifest, a weights file with one flipped byte, garbage weights with the manifest
re-hashed to match, an attacker's weights (a pickle whose __reduce__ runs a
command, manifest re-hashed: what someone with write access to the artifact
directory could do; the hash cannot stop it, torch.load(weights_only=True) must),
a missing weights file and edited labels.
"""
import hashlib
import json
import pickle
import shutil
import subprocess
from pathlib import Path

from loadkit.localrun import CLASSIFIER_ARTIFACTS

KINDS = ["manifest-not-json", "manifest-without-files", "manifest-deleted", "weights-byte-flipped",
         "weights-garbage-rehashed", "weights-code-pickle-rehashed", "weights-missing", "labels-tampered"]


class RunsACommand:
    """What a malicious weights file holds: unpickling it runs `touch <marker>`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


def rehash(artifacts: Path):
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((artifacts / name).read_bytes()).hexdigest()
                         for name in manifest["files"] if (artifacts / name).exists()}
    (artifacts / "manifest.json").write_text(json.dumps(manifest))


def flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def damaged_copy(dest: Path, kind: str, marker: Path) -> Path:
    """A copy of artifacts/classifier in `dest`, damaged as `kind` says. The
    compiled package (if the build made one) is left out: these cases are about
    the weights (load them with MODEL_BACKEND=eager)."""
    artifacts = Path(shutil.copytree(CLASSIFIER_ARTIFACTS, dest))
    if (artifacts / "model.pt2").exists():
        (artifacts / "model.pt2").unlink()
        rehash(artifacts)
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
    elif kind == "weights-missing":
        weights.unlink()
    elif kind == "labels-tampered":
        labels = json.loads((artifacts / "labels.json").read_text())
        labels[0] = "something else"
        (artifacts / "labels.json").write_text(json.dumps(labels))
    else:
        raise ValueError(kind)
    return artifacts


def assert_failure_message(kind: str, message: str):
    """What the startup_failed line's error_message must say for each kind."""
    if kind in ("manifest-not-json", "manifest-without-files", "manifest-deleted"):
        assert "manifest" in message, message
    if kind in ("weights-byte-flipped", "labels-tampered"):
        assert "sha256" in message, message
    if kind == "weights-missing":
        assert "missing artifact" in message, message
    if kind == "weights-code-pickle-rehashed":
        assert "weights_only" in message or "Unsupported" in message, message
