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
import time
from pathlib import Path

import yaml

from image_standins import podman, podman_env

REPO = Path(__file__).resolve().parents[2]
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
