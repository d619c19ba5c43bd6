"""STAND-INS for what CI cannot download. Used only by the image test (tests/image).

The shipped Dockerfile builds FROM `python:3.11-slim-bookworm` (Docker Hub) and
`ghcr.io/openfaas/of-watchdog:0.11.6` (GitHub's registry) and installs CPU torch from
the PyTorch CPU index. CI reaches none of the three (only PyPI and Debian's archive),
so the image test makes local stand-ins under the very names the Dockerfile uses and
builds the Dockerfile unchanged against them (`--pull=never`):

* `python:3.11-slim-bookworm`: Debian bookworm from `debootstrap --variant=minbase`
  with Debian's python3.11, pip and venv; `python`, `python3`, `pip`, `pip3` in
  /usr/local/bin as in the official image; no EXTERNALLY-MANAGED marker (the official
  image has none, and the template runs a plain `pip install`); the host's CA bundle
  and an /etc/pip.conf naming it, so pip inside the build reaches PyPI as the host does.
  Differences that do not matter to the template: Python 3.11.2 from Debian instead of
  a 3.11.x built from source, site-packages in /usr/local/lib/python3.11/dist-packages.
* `ghcr.io/openfaas/of-watchdog:0.11.6`: FROM scratch with a placeholder `/fwatchdog`
  (standins/fwatchdog, exits 42). The image test starts the app (the image's
  `fprocess`) itself, and checks that the image's CMD would start the watchdog.
* the PyTorch CPU index: what `pip download torch==<the Dockerfile's TORCH_VERSION>`
  gives here (the `+cpu` wheel and its dependencies), written as a PEP 503 index and
  served on 127.0.0.1 while the image builds (`--network host`), passed as the build
  arg `TORCH_INDEX_URL`.

A real image of either name already present locally is used as it is and never
overwritten. Stand-ins carry the label `torchfaas.stand-in` with a hash of their
recipe (this file and standins/) and are rebuilt only when the recipe changes:
debootstrap takes about 40 s, the rest of a stand-in a few seconds. Caches live in
$TORCHFAAS_IMAGE_CACHE (default /var/tmp/torchfaas-image), never in the repository.
"""
import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TORCHFAAS_IMAGE_CACHE", "/var/tmp/torchfaas-image"))
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL = "torchfaas.stand-in"

PYTHON_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
WATCHDOG_IMAGE = "ghcr.io/openfaas/of-watchdog:0.11.6"

# measured on Debian 12 hosts with a hybrid cgroup v1 layout: crun refuses it, runc
# works; the default ulimits podman asks for exceed what the sandbox allows
CONTAINERS_CONF = """\
# written by tests/image (image_standins.py); passed to podman as CONTAINERS_CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


def recipe_hash() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted((HERE / "standins").iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


# -- podman ----------------------------------------------------------------------
def podman_env() -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args, check=True, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(["podman", *args], env=podman_env(), timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                           f"{(result.stderr or '')[-3000:]}")
    return result


def image_label(image: str, label: str) -> str | None:
    """The label's value; '' for an image without it; None when there is no such image."""
    if podman("image", "exists", image, check=False).returncode != 0:
        return None
    out = podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout.strip()
    return (json.loads(out) or {}).get(label, "")


@contextlib.contextmanager
def cache_lock():
    """Two test runs on one machine must not build the same stand-in at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_standins(log=print) -> dict:
    """Both base images present under their real names: real ones if there, else stand-ins."""
    status = {}
    with cache_lock():
        for image, build in ((PYTHON_IMAGE, build_python_standin), (WATCHDOG_IMAGE, build_watchdog_standin)):
            label = image_label(image, LABEL)
            if label == "":
                status[image] = "real image (present locally)"
            elif label == recipe_hash():
                status[image] = "stand-in (cached)"
            else:
                log(f"building the stand-in for {image}")
                build()
                status[image] = "stand-in (built now)"
    return status


def build_python_standin():
    """STAND-IN for python:3.11-slim-bookworm, from Debian's own packages."""
    rootfs = CACHE / "python-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=python3.11,python3-pip,python3-venv,ca-certificates",
                        "bookworm", str(rootfs), DEBIAN_MIRROR],
                       check=True, capture_output=True, timeout=600)
        local_bin = rootfs / "usr/local/bin"
        local_bin.mkdir(parents=True, exist_ok=True)
        for name, target in (("python", "/usr/bin/python3.11"), ("python3", "/usr/bin/python3.11"),
                             ("pip", "/usr/bin/pip3"), ("pip3", "/usr/bin/pip3")):
            (local_bin / name).symlink_to(target)
        # the official image has no PEP 668 marker: `pip install` as root just works
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        # reach PyPI as the host does (the host may sit behind a TLS-inspecting proxy)
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        # as slim as the official image: no package lists, no downloaded .debs
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        changes = ["ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "ENV LANG=C.UTF-8", 'CMD ["python3"]',
                   f"LABEL {LABEL}={recipe_hash()}",
                   "LABEL org.opencontainers.image.description=stand-in-for-python-3.11-slim-bookworm"]
        args = [arg for change in changes for arg in ("--change", change)]
        podman("import", *args, "-", PYTHON_IMAGE, stdin=tar.stdout, timeout=600)
        if tar.wait() != 0:
            raise RuntimeError("tar of the stand-in rootfs failed")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build_watchdog_standin():
    """STAND-IN for ghcr.io/openfaas/of-watchdog: FROM scratch with a placeholder /fwatchdog."""
    context = CACHE / "watchdog-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copy2(HERE / "standins/fwatchdog", context / "fwatchdog")
    (context / "Containerfile").write_text(
        "FROM scratch\n"
        "COPY fwatchdog /fwatchdog\n"
        f"LABEL {LABEL}={recipe_hash()} "
        'org.opencontainers.image.description="stand-in for the of-watchdog image"\n')
    podman("build", "--format", "docker", "--pull=never", "-t", WATCHDOG_IMAGE, str(context))
    shutil.rmtree(context, ignore_errors=True)


# -- the PyTorch CPU index -------------------------------------------------------
def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_torch_index(torch_version: str) -> Path:
    """STAND-IN for https://download.pytorch.org/whl/cpu: a PEP 503 index of what
    `pip download torch==<version>` gives on this machine (the CPU wheel and its deps)."""
    root = CACHE / f"torch-index-{torch_version}"
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                    "--only-binary=:all:", "-d", str(files), f"torch=={torch_version}"],
                   check=True, capture_output=True, timeout=900)
    wheels = sorted(files.glob("*.whl"))
    torch = [w for w in wheels if w.name.startswith(f"torch-{torch_version}")]
    if not any("+cpu" in w.name for w in torch):
        raise RuntimeError(f"pip download gave no CPU torch {torch_version} wheel: {[w.name for w in torch]}")
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_project.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel)
    simple = root / "simple"
    shutil.rmtree(simple, ignore_errors=True)
    simple.mkdir()
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project))
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    for project, project_wheels in by_project.items():
        (simple / project).mkdir()
        rows = "".join(
            f'<a href="../../files/{w.name.replace("+", "%2B")}#sha256='
            f'{hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n' for w in project_wheels)
        (simple / project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{rows}</body></html>\n")
    return root


# The index URL is a build arg, and build args are part of a layer's cache key: a
# fixed port keeps the torch layer cached from one run to the next.
INDEX_PORT = int(os.environ.get("TORCHFAAS_INDEX_PORT", "38517"))


@contextlib.contextmanager
def serve(directory: Path):
    """Serve `directory` on 127.0.0.1:INDEX_PORT (a free port if taken) while the block runs."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", INDEX_PORT), handler)
    except OSError:  # another run serves it right now: this build misses the cache once
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
