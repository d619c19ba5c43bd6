"""Build-time artifacts and their manifest.

`prepare` writes model files into the artifacts directory and records each
file's SHA-256 in manifest.json. At cold start every file is checked against the
manifest before it is loaded, so a corrupt or swapped artifact fails start-up
instead of serving wrong answers. The manifest's hash also names the version.
"""
import hashlib
import json
import mmap
import os
import threading
from concurrent.futures import Future
from pathlib import Path

MANIFEST = "manifest.json"


class ArtifactError(Exception):
    pass


def sha256_of(path: Path) -> str:
    # one update() over the mapped file: hashlib releases the GIL for the whole file
    # (page faults included) instead of once per chunk read, so a check running in a
    # thread beside imports takes the GIL twice per file, not 20 times
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:  # an empty file cannot be mapped
            return hashlib.sha256().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def write_manifest(artifacts_dir: Path, files: list[str], **info) -> dict:
    artifacts_dir = Path(artifacts_dir)
    manifest = {**info, "files": {name: sha256_of(artifacts_dir / name) for name in sorted(files)}}
    (artifacts_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_verified_manifest(artifacts_dir: Path) -> dict:
    """The manifest, after checking every file it lists; raises ArtifactError."""
    artifacts_dir = Path(artifacts_dir)
    try:
        manifest = json.loads((artifacts_dir / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"unreadable manifest in {artifacts_dir}: {exc}") from exc
    for name, expected in files.items():
        path = artifacts_dir / name
        if not path.is_file():
            raise ArtifactError(f"missing artifact {name}")
        actual = sha256_of(path)
        if actual != expected:
            raise ArtifactError(f"artifact {name} has sha256 {actual[:12]}, manifest says {expected[:12]}")
    return manifest


def verify_in_background(artifacts_dir: Path) -> Future | None:
    """`read_verified_manifest(artifacts_dir)` started now in a thread, or None without a manifest.

    At cold start this runs before the handler imports torch: hashing and reading
    release the GIL, so the ~40-55 MB of SHA-256 (about 60-80 ms here) is done on
    the other core while `import torch` runs, instead of after it (docs/benchmarks.md, "The fast path").
    """
    if not (Path(artifacts_dir) / MANIFEST).is_file():
        return None
    future: Future = Future()

    def check():
        try:
            future.set_result(read_verified_manifest(artifacts_dir))
        except BaseException as exc:  # ArtifactError or an I/O fault: raised where the load asks
            future.set_exception(exc)

    threading.Thread(target=check, name="artifact-check", daemon=True).start()
    return future


def manifest_version(manifest: dict) -> str:
    """A short content hash over all artifact hashes: same files, same version."""
    joined = "".join(f"{n}:{h};" for n, h in sorted(manifest["files"].items()))
    return "sha256-" + hashlib.sha256(joined.encode()).hexdigest()[:12]
