"""The runtime layer every function shares: torch and the template's packages reach both
functions' images (classifier and diabetes, built as faas-cli builds them) as one layer
with one digest, a build of that layer alone from nothing gives the same digest, and a
node running the classifier pulls little to start diabetes.

Digests are the layers' uncompressed ones (`podman inspect`'s RootFS.Layers: what
registries and nodes deduplicate by, once compressed the same way); sizes are
uncompressed too (`podman history`), an upper bound of the bytes a pull moves.
"""
import json
import re
from pathlib import Path

import pytest

from image_build import FACTS, image_config, podman_build
from image_standins import podman, serve

pytestmark = pytest.mark.image

# what a node running the classifier may pull to start diabetes (its own code, artifacts,
# small layers); the whole runtime layer is about 590 MB
MAX_PULL_BYTES = 50e6


def layers(image: str) -> list[dict]:
    """The image's layers, base first: {"digest", "size" (uncompressed bytes), "created_by"}."""
    info = image_config(image)
    history = info["History"]
    sizes = [entry["size"] for entry in reversed(json.loads(podman("history", "--format", "json", image).stdout))]
    assert len(sizes) == len(history), (len(sizes), len(history))
    steps = [(entry["created_by"], size) for entry, size in zip(history, sizes) if not entry.get("empty_layer")]
    digests = info["RootFS"]["Layers"]
    assert len(steps) == len(digests), (steps, digests)
    return [{"digest": digest, "size": size, "created_by": created_by}
            for digest, (created_by, size) in zip(digests, steps)]


def build_shared_runtime(function_image: dict, log: Path, *extra: str) -> tuple[dict, float]:
    """The Dockerfile's shared-runtime stage alone, built in the function's folder:
    (its top layer, the runtime layer; the build's seconds). The images this build made
    are removed afterwards (not `--layers=false`: podman 4.3 then removes the base image
    of a stage without instructions, the watchdog's)."""
    before = set(podman("images", "--all", "--quiet", "--no-trunc").stdout.split())
    iidfile = log.with_suffix(".iid")
    with serve(function_image["index"]) as url:
        args = ["--build-arg", f"TORCH_INDEX_URL={url}/simple", "--target", "shared-runtime",
                "--iidfile", str(iidfile), *extra]
        code, output, seconds = podman_build(function_image["context"], None, args, log)
    made = [image for image in re.findall(r"^--> ([0-9a-f]{11,})$", output, re.M)
            if not any(old.removeprefix("sha256:").startswith(image) for old in before)]
    try:
        assert code == 0, output[-3000:]
        return layers(iidfile.read_text().strip())[-1], seconds
    finally:
        for image in reversed(made):  # the stages' images, newest first: children before parents
            podman("rmi", image, check=False)


@pytest.fixture(scope="module")
def runtime_layer(classifier_image, tmp_path_factory) -> dict:
    """The runtime layer as the classifier's build made it (its cached shared-runtime stage)."""
    layer, _ = build_shared_runtime(classifier_image, tmp_path_factory.mktemp("shared") / "build.log")
    return layer


def test_both_functions_share_one_runtime_layer(classifier_image, diabetes_image, runtime_layer):
    for image in (classifier_image, diabetes_image):
        assert runtime_layer["digest"] in [layer["digest"] for layer in layers(image["image"])], image["name"]
    # torch and the template's packages are in it, not in a layer of the function's own
    assert runtime_layer["size"] > 400e6, runtime_layer
    FACTS["shared runtime layer"] = (f"{runtime_layer['digest'][:19]}, {runtime_layer['size'] / 1e6:.0f} MB "
                                     "uncompressed, in both images")


def test_a_node_running_the_classifier_pulls_little_to_start_diabetes(classifier_image, diabetes_image):
    have = {layer["digest"] for layer in layers(classifier_image["image"])}
    theirs = layers(diabetes_image["image"])
    missing = [layer for layer in theirs if layer["digest"] not in have]
    pull = sum(layer["size"] for layer in missing)
    FACTS["diabetes pull on a classifier node"] = (f"{pull / 1e6:.2f} MB uncompressed, {len(missing)} of its "
                                                   f"{len(theirs)} layers")
    assert pull <= MAX_PULL_BYTES, [(layer["created_by"][:80], layer["size"]) for layer in missing]


def test_the_runtime_layer_is_reproducible(classifier_image, runtime_layer, tmp_path):
    """The shared stage alone, built from nothing (no cache, no builder flag): the same
    layer, byte for byte, as in the shipped images."""
    rebuilt, seconds = build_shared_runtime(classifier_image, tmp_path / "build.log", "--no-cache")
    FACTS["shared runtime layer rebuilt from nothing"] = f"{seconds:.0f} s, {rebuilt['digest'][:19]}"
    assert rebuilt["digest"] == runtime_layer["digest"], rebuilt
