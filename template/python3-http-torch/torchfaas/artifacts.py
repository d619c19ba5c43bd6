"""Build-time artifacts and their manifest.

`prepare` writes model files into the artifacts directory and records each
file's SHA-256 in manifest.json. At cold start every file is checked against the
manifest before it is loaded, so a corrupt or swapped artifact fails start-up
instead of serving wrong answers. The manifest's hash also names the version.
"""
import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"


class ArtifactError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def manifest_version(manifest: dict) -> str:
    """A short content hash over all artifact hashes: same files, same version."""
    joined = "".join(f"{n}:{h};" for n, h in sorted(manifest["files"].items()))
    return "sha256-" + hashlib.sha256(joined.encode()).hexdigest()[:12]
