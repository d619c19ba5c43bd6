"""The image test's set-up: podman, the stand-in base images, one build per function and session.

Select or deselect it with the `image` marker: `pytest -m image`, `pytest -m "not image"`.
Without podman, debootstrap and root it skips on a developer's machine and fails under
CI (`CI` set), where .ci/install-system-tools installs them.
"""
import os
import shutil
import subprocess

import pytest

# image_build and image_standins sit beside this file: pytest puts this folder on
# sys.path for its conftest and tests (rootdir-relative "prepend" import mode)
import image_build
import image_standins
from support.system_tools import require

FACTS = image_build.FACTS
REPORTS = image_build.REPO / "reports" / "image"


def pytest_configure(config):
    config.addinivalue_line("markers", "image: builds the function image with podman and runs it "
                                       "(several minutes; needs root, podman, runc, debootstrap)")


def pytest_terminal_summary(terminalreporter):
    if FACTS:
        terminalreporter.section("function image")
        for key, value in FACTS.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="session")
def base_images():
    """What every function's build starts from: the base images (real or stand-ins) and
    the stand-in torch index, made once per session and shared by the functions' builds."""
    # root: debootstrap and podman's storage
    require("podman", "runc", "debootstrap", suite="tests/image", root=True)
    status = image_standins.ensure_standins()
    for image, how in status.items():
        FACTS[f"base {image}"] = how
    dockerfile = (image_build.REPO / "template" / image_build.TEMPLATE / "Dockerfile").read_text()
    torch_version = next(line.split("=", 1)[1].strip() for line in dockerfile.splitlines()
                         if line.startswith("ARG TORCH_VERSION="))
    with image_standins.cache_lock():
        index = image_standins.write_torch_index(torch_version)
    return {"status": status, "index": index}


def function_image(name: str, base_images: dict, tmp_path_factory) -> dict:
    """stack.yml's function `name` built from its shrinkwrapped folder as faas-cli does."""
    # SOURCE_COMMIT as `make build` passes it (stack.yml's build_args)
    commit = subprocess.run(["git", "-C", str(image_build.REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    env = {**os.environ, "REGISTRY": "localhost/torchfaas-ci", "TAG": "test",
           "SOURCE_COMMIT": commit.stdout.strip() if commit.returncode == 0 else ""}
    fn = image_build.stack_function(name, env)
    image = image_build.image_name(fn, env)
    # a private build folder and log: other test runs may share this work tree
    context = image_build.shrinkwrap(fn, tmp_path_factory.mktemp("build") / name)
    log = context.parent / "build.log"
    index = base_images["index"]
    with image_standins.serve(index) as url:
        args = image_build.faas_cli_build_args(fn, env) + ["--build-arg", f"TORCH_INDEX_URL={url}/simple"]
        code, output, seconds = image_build.podman_build(context, image, args, log)
    REPORTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log, REPORTS / f"build-{name}.log")
    FACTS[f"{name} build"] = f"{seconds:.0f} s (podman build, log in reports/image/build-{name}.log)"
    assert code == 0, f"podman build of {name} failed:\n" + output[-4000:]
    size = int(image_build.image_config(image)["Size"])
    FACTS[f"{name} image"] = f"{image}, {size / 1e9:.3f} GB"
    watchdog = base_images["status"][image_standins.WATCHDOG_IMAGE]
    return {"name": name, "image": image, "output": output, "size": size, "fn": fn, "context": context,
            "index": index, "env": env, "watchdog_is_stand_in": "stand-in" in watchdog}


@pytest.fixture(scope="session")
def classifier_image(base_images, tmp_path_factory):
    """The classifier's image: {"image", "output" (the build's), "size", "fn" (its stack.yml entry), ...}."""
    return function_image("classifier", base_images, tmp_path_factory)


@pytest.fixture(scope="session")
def diabetes_image(base_images, tmp_path_factory):
    """The diabetes function's image, built the same way (its torch layers come from the cache)."""
    return function_image("diabetes", base_images, tmp_path_factory)
