"""Build the function image as `faas-cli build -f stack.yml` does, and run it as
faas-netes does, with Debian's podman (daemonless, works as root in CI).

faas-cli build: lays out build/<fn> (the template, then the handler folder over its
function/ folder), then runs `docker build [--build-arg http_proxy=..]
[--build-arg https_proxy=..] [--build-arg K=V for the stack's build_args]
[--build-arg ADDITIONAL_PACKAGE=<the build_options' packages>] -t <image> .` in it.
Here the same command runs as `podman build` plus what podman needs on this kind of
machine (`--format docker`: the OCI format drops HEALTHCHECK; `--network host`;
`--pull=never`: the base images are local stand-ins, see image_standins.py) and the
stand-in torch index (`--build-arg TORCH_INDEX_URL=...`).
"""
import json
import re
import shlex
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests
import yaml

from image_standins import podman, podman_env
from loadkit.localrun import free_port

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "python3-http-torch"
# what the image test measured, printed at the end of the session (tests/image/conftest.py)
FACTS: dict[str, str] = {}
# not in a clean clone; other test runs in a shared work tree may leave them behind
_IGNORE = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc")


def expand(value: str, env: dict) -> str:
    """faas-cli's environment substitution in stack.yml: ${VAR} and ${VAR:-default}."""
    def sub(match):
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default or "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, value)


def stack_function(name: str, env: dict) -> dict:
    """The function's entry in stack.yml after faas-cli's substitution of the whole file."""
    return yaml.safe_load(expand((REPO / "stack.yml").read_text(), env))["functions"][name]


def image_name(fn: dict, env: dict) -> str:
    return expand(fn["image"], env)


def shrinkwrap(fn: dict, dest: Path) -> Path:
    """build/<fn> as faas-cli lays it out: the template, then the handler over function/."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(REPO / "template" / fn["lang"], dest, ignore=_IGNORE)
    shutil.copytree((REPO / fn["handler"]).resolve(), dest / "function", dirs_exist_ok=True, ignore=_IGNORE)
    return dest


def faas_cli_build_args(fn: dict, env: dict) -> list[str]:
    """The --build-arg flags faas-cli passes for this function."""
    args = []
    for proxy in ("http_proxy", "https_proxy"):
        if env.get(proxy):
            args += ["--build-arg", f"{proxy}={env[proxy]}"]
    packages = []
    for key, value in (fn.get("build_args") or {}).items():
        if key == "ADDITIONAL_PACKAGE":
            packages += str(value).split()
        else:
            args += ["--build-arg", f"{key}={value}"]
    if fn.get("build_options"):
        template = yaml.safe_load((REPO / "template" / fn["lang"] / "template.yml").read_text())
        options = {o["name"]: o["packages"] for o in template.get("build_options", [])}
        for option in fn["build_options"]:
            packages += options[option]
    if packages:
        args += ["--build-arg", "ADDITIONAL_PACKAGE=" + " ".join(dict.fromkeys(packages))]
    return args


def podman_build(context: Path, image: str | None, build_args: list[str], log: Path,
                 timeout: float = 900) -> tuple[int, str, float]:
    """-> (exit code, the build's output, seconds)."""
    command = ["podman", "build", "--format", "docker", "--network", "host", "--pull=never",
               *build_args, *(["-t", image] if image else []), "."]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w") as out:
        out.write("$ " + shlex.join(command) + "\n")
        out.flush()
        code = subprocess.run(command, cwd=context, env=podman_env(), stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout).returncode
    return code, log.read_text(), time.monotonic() - started


def step_outputs(build_output: str) -> list[tuple[str, str]]:
    """The build's steps as (step line, what followed it until the next step)."""
    steps, current, body = [], None, []
    for line in build_output.splitlines():
        if re.match(r"^(\[\d+/\d+\] )?STEP \d+/\d+: ", line):
            if current is not None:
                steps.append((current, "\n".join(body)))
            current, body = line, []
        elif current is not None:
            body.append(line)
    if current is not None:
        steps.append((current, "\n".join(body)))
    return steps


def function_tests_ran(build_output: str) -> str:
    """Assert the test stage is on the way to ship: its RUN ran pytest and it passed, or
    podman reused the layer an earlier build made by running it (a failing test leaves
    no layer to reuse). -> what it was, for FACTS."""
    step = stage_test_run(build_output)
    if step["cached"]:
        assert "TEST_ENABLED=true" in step["created_by"], step["created_by"]
        return "cached layer of an earlier build"
    assert step["pytest"] and " passed" in step["pytest"] and " failed" not in step["pytest"] \
        and not step["skipped"], build_output[-3000:]
    return step["pytest"]


def image_config(image: str) -> dict:
    [info] = json.loads(podman("image", "inspect", image).stdout)
    return info


def image_env(info: dict) -> dict:
    return dict(item.split("=", 1) for item in info["Config"].get("Env") or [])


def podman_limits(fn: dict) -> list[str]:
    """stack.yml's limits as podman flags (1Gi -> 1g, "2" -> --cpus 2)."""
    limits = fn.get("limits") or {}
    args = []
    if "cpu" in limits:
        args += ["--cpus", str(limits["cpu"])]
    if "memory" in limits:
        match = re.fullmatch(r"(\d+)([KMG])i?", str(limits["memory"]))
        args += ["--memory", f"{match.group(1)}{match.group(2).lower()}"]
    return args


# faas-netes with readonly_root_filesystem: read-only root, an emptyDir at /tmp only.
# podman's --read-only adds tmpfs at /run, /tmp and /var/tmp unless told not to.
# (Kubernetes runs probes, never the image's HEALTHCHECK: podman would try to schedule
# it through systemd and complain on stderr where there is none.)
READ_ONLY = ["--read-only", "--read-only-tmpfs=false", "--no-healthcheck"]
TMP = ["--tmpfs", "/tmp:rw,mode=1777,size=512m"]


def remove_container(name: str):
    podman("rm", "-f", "-t", "0", name, check=False, timeout=60)


def stage_test_run(build_output: str) -> dict:
    """What the RUN step of the Dockerfile's test stage did in this build: reused a cached
    layer (then that layer's recorded command, build args included), or ran. Only that
    step runs pytest or prints "skipping tests" on a line of its own, so those lines are
    looked up in the whole output (robust to interleaved stage output)."""
    steps = [step for step, _ in step_outputs(build_output)
             if step.split(": ", 1)[1].startswith("RUN") and "TEST_ENABLED" in step]
    assert len(steps) == 1, f"no single test-stage RUN step in the build: {steps}"
    lines = build_output.splitlines()
    after = lines[lines.index(steps[0]) + 1:]
    cached = re.match(r"--> Using cache ([0-9a-f]{12,})", after[0]) if after else None
    created_by = None
    if cached:
        history = json.loads(podman("image", "inspect", "--format", "{{json .History}}", cached.group(1)).stdout)
        created_by = history[-1]["created_by"]
    summaries = [line for line in lines if re.match(r"^\d+ (passed|failed|errors?)\b.* in [\d.]+s", line)]
    return {"step": steps[0], "cached": bool(cached), "created_by": created_by,
            "pytest": summaries[-1] if summaries else None, "skipped": "skipping tests" in lines}


class Container:
    """`podman run` in the foreground: its stdout and stderr read line by line."""

    def __init__(self, image: str, args: list[str], command: list[str] | None = None):
        self.name = f"torchfaas-image-test-{uuid.uuid4().hex[:8]}"
        self.cmd = ["podman", "run", "--rm", "--name", self.name, *args, image, *(command or [])]
        self.stdout: list[str] = []
        self.stderr: list[str] = []

    def start(self) -> "Container":
        self.proc = subprocess.Popen(self.cmd, env=podman_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.readers = [threading.Thread(target=self._read, args=(stream, out), daemon=True)
                        for stream, out in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for reader in self.readers:
            reader.start()
        return self

    @staticmethod
    def _read(stream, out):
        for raw in stream:
            out.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for reader in self.readers:
            reader.join(10)
        return code

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as Kubernetes stops a pod; its exit code."""
        podman("kill", "--signal", "TERM", self.name, timeout=timeout)
        return self.wait(timeout)

    def tail(self) -> str:
        return "stdout:\n" + "\n".join(self.stdout[-20:]) + "\nstderr:\n" + "\n".join(self.stderr[-20:])

    def json_lines(self) -> list[dict]:
        """Its stdout, every line of which must be a JSON object."""
        assert self.stdout, self.tail()
        lines = []
        for raw in self.stdout:
            line = json.loads(raw)  # every stdout line is JSON ...
            assert isinstance(line, dict), raw  # ... and an object
            lines.append(line)
        return lines

    def remove(self):
        remove_container(self.name)
        if self.proc.poll() is None:
            self.proc.kill()


def start_as_faas_netes(image: str, fn: dict, timeout: float = 180,
                        poll_s: float = 0.25) -> tuple[Container, str, float]:
    """The image run as faas-netes runs it (read-only root, writable /tmp, its non-root
    user, stack.yml's limits and environment), started as the watchdog would start it
    (the image's fprocess) and ready: (container, the app's URL, seconds to /ready 200).

    Host network: the app listens on 127.0.0.1:$PORT as behind the watchdog; PORT is
    moved to a free port so parallel runs on one machine do not collide."""
    env = image_env(image_config(image))
    port = free_port()
    # faas-netes passes the stack's environment to the container
    stack_env = [arg for key, value in (fn.get("environment") or {}).items() for arg in ("-e", f"{key}={value}")]
    args = [*READ_ONLY, *TMP, *podman_limits(fn), *stack_env, "--network", "host", "-e", f"PORT={port}"]
    container = Container(image, args, shlex.split(env["fprocess"])).start()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            assert container.proc.poll() is None, f"exited {container.proc.returncode}\n{container.tail()}"
            assert time.monotonic() - started < timeout, f"not ready after {timeout} s\n" + container.tail()
            try:
                if requests.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(poll_s)
    except BaseException:
        container.remove()
        raise
    return container, url, time.monotonic() - started


def sandbox_probe(container: Container) -> dict:
    """What the running container is allowed: its uid, whether / and /tmp are writable,
    its memory limit in bytes (cgroup v1 or v2)."""
    out = podman("exec", container.name, "sh", "-c",
                 "id -u; touch /home/app/x 2>/dev/null && echo root-writable; "
                 "touch /tmp/x && echo tmp-writable; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                 "2>/dev/null || cat /sys/fs/cgroup/memory.max", timeout=60).stdout.split()
    return {"uid": int(out[0]), "root_writable": "root-writable" in out, "tmp_writable": "tmp-writable" in out,
            "memory": int(out[-1]), "raw": out}


def memory_limit(fn: dict) -> int:
    """stack.yml's memory limit in bytes (512Mi -> 536870912)."""
    match = re.fullmatch(r"(\d+)([KMG])i?", str(fn["limits"]["memory"]))
    return int(match.group(1)) * 1024 ** "KMG".index(match.group(2)) * 1024
