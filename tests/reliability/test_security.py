"""Security checks on real processes and on the files that build the image: a body
limit that chunked encoding cannot bypass, waitress's server header, a non-root
image, exact pins, and a function that runs with its code and artifacts read-only
and only a temp dir writable. (Client-controlled values never becoming metric
labels, and no debug routes in the app, are tested in-process:
tests/inprocess/test_security.py; the artifact hash and pickle checks in
test_bad_artifacts.py; sanitising in the log in test_malformed_input.py.)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

from faultkit import raw_http, wait_line
from loadkit.localrun import CLASSIFIER_ARTIFACTS, REPO, TEMPLATE
from loadkit.photos import photo_bytes
from support.classifier import MAX_BODY
from support.contract import assert_json_error
from support.dockerfile import instructions


# -- limits ---------------------------------------------------------------
def test_a_chunked_body_cannot_bypass_the_body_limit(classifier):
    """No Content-Length (Transfer-Encoding: chunked): the limit still holds, as a JSON 413."""
    def chunks(total: int):
        step = 256 * 1024
        for start in range(0, total, step):
            piece = b"\xff" * min(step, total - start)
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
        yield b"0\r\n\r\n"

    rid = "chunked-" + uuid.uuid4().hex[:8]
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: application/octet-stream\r\nX-Request-Id: {rid}\r\n\r\n").encode()
    res = raw_http(classifier.port, head + b"".join(chunks(MAX_BODY + 4096)))
    assert_json_error(res, 413, "payload_too_large")
    assert len(wait_line(classifier, rid)) == 1
    # and a chunked photo within the limit is served
    photo = photo_bytes("coffee.png")
    head = head.replace(rid.encode(), b"chunked-ok").replace(b"application/octet-stream", b"image/png")
    res = raw_http(classifier.port, head + b"%x\r\n" % len(photo) + photo + b"\r\n0\r\n\r\n")
    assert res.status == 200 and res.json()["predictions"]


# -- the server -----------------------------------------------------------
def test_waitress_serves_not_werkzeug(classifier):
    res = requests.put(classifier.url + "/", data=b"x", timeout=10)
    assert res.headers["Server"] == "torchfaas" and "Werkzeug" not in res.text


# -- the image ------------------------------------------------------------
def dockerfile_stages(text: str) -> list[tuple[str, list[str]]]:
    """[(stage name, instructions)], continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                           if not line.lstrip().startswith("#")))
    stages = []
    for line in joined.splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            match = re.search(r"\bAS\s+(\S+)", line, re.I)
            stages.append((match.group(1) if match else "", [line]))
        elif line and stages:
            stages[-1][1].append(line)
    return stages


def test_the_final_stage_runs_as_a_non_root_user():
    stages = dockerfile_stages((TEMPLATE / "Dockerfile").read_text())
    name, instructions = stages[-1]  # what faas-cli builds and ships
    users = [i.split(None, 1)[1].strip() for i in instructions if i.upper().startswith("USER ")]
    assert users and users[-1] == "app" and users[-1] not in ("root", "0")
    text = (TEMPLATE / "Dockerfile").read_text()
    assert re.search(r"useradd .*\bapp\b", text)
    env = " ".join(i for i in instructions if i.upper().startswith("ENV "))
    assert "PYTHONDONTWRITEBYTECODE" in text and "TMPDIR=/tmp" in env and "HOME=/tmp" in env


def test_every_requirements_file_pins_exact_versions():
    files = subprocess.run(["git", "ls-files", "*requirements*.txt"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    assert len(files) >= 3
    pin = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(\[[A-Za-z0-9,._\-]+\])?==[A-Za-z0-9.+!\-]+(\s*;.*)?$")
    for name in files:
        for line in (REPO / name).read_text().splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                assert pin.match(line), f"{name}: {line!r} is not pinned with =="
    # what the Dockerfile installs by name is pinned too
    for line in instructions():  # continuation lines joined: a `\` is not a package
        if "pip install" in line and " -r " not in line:
            command = re.split(r"&&|;|\|\|", line.split("pip install", 1)[1])[0]
            for word in command.split():
                if not word.startswith(("-", "$")) and "://" not in word:
                    assert "==" in word, f"Dockerfile installs {word!r} unpinned"


# -- read-only code and artifacts -----------------------------------------
def readonly_prefix(paths: list[Path]) -> tuple[list[str], str]:
    """A command prefix that makes `paths` read-only for the child, and how.

    As root, chmod does not stop writes, so the child gets a private mount
    namespace with read-only bind mounts (unshare). Not root: chmod a-w does it.
    """
    if os.geteuid() != 0:
        return [], "chmod a-w (not root)"
    if shutil.which("unshare") and subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                                                  capture_output=True).returncode == 0:
        binds = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}" for p in paths)
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", binds + ' && exec "$@"', "sh"], \
            "read-only bind mounts"
    pytest.skip("running as root without mount namespaces: read-only cannot be enforced")


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def test_serves_with_read_only_code_and_artifacts_and_only_tmp_writable(classifier_build, function_process):
    work = Path(tempfile.mkdtemp(prefix="torchfaas-ro-"))
    try:
        app_dir = work / "home-app"  # like /home/app in the image: code + function/artifacts
        shutil.copytree(classifier_build, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(CLASSIFIER_ARTIFACTS, app_dir / "function" / "artifacts")
        writable = work / "tmp"
        writable.mkdir()
        subprocess.run(["chmod", "-R", "a-w", str(app_dir)], check=True)
        venv = Path(sys.prefix)
        prefix, how = readonly_prefix([app_dir, venv, Path(sys.base_prefix)])
        before = snapshot(app_dir)
        # the sandbox is real: a write into the code dir fails under it
        probe = subprocess.run(prefix + ["sh", "-c", f"touch {app_dir}/probe"], capture_output=True)
        assert probe.returncode != 0 and not (app_dir / "probe").exists(), how
        env = {"HOME": str(writable), "TMPDIR": str(writable), "PYTHONDONTWRITEBYTECODE": "1",
               "ARTIFACTS_DIR": "function/artifacts", "XDG_CACHE_HOME": str(writable / ".cache")}
        fn = function_process(app_dir, env, prefix=tuple(prefix), timeout=120)
        try:
            res = fn.post(photo_bytes("coffee.png"), "image/png")
            assert res.status_code == 200, res.text
            assert res.json()["predictions"][0]["label"] == "espresso"
            assert fn.post(b"junk", "image/jpeg").status_code == 400
            loaded = fn.events("model_loaded")[0]
        finally:
            code = fn.stop()
        assert code == 0
        assert snapshot(app_dir) == before  # nothing written where the code lives
        assert not list(app_dir.rglob("__pycache__"))
        print(f"served read-only ({how}), backend {loaded.get('backend')}, "
              f"wrote {sum(1 for _ in writable.rglob('*'))} entries under TMPDIR")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
