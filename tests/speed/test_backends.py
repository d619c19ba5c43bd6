"""MODEL_BACKEND=auto|aoti|eager: the compiled package when it loads, eager otherwise."""
import json
import shutil

import numpy as np
import pytest
import requests

from loadkit.photos import photo_bytes
from torchfaas.toolkit import write_manifest


def artifacts_copy(src, dest, package: bytes | None):
    """A copy of the artifacts whose manifest matches: package None = built without one."""
    dest.mkdir()
    for name in ("weights.pt", "labels.json"):
        shutil.copy(src / name, dest / name)
    files = ["weights.pt", "labels.json"]
    if package is not None:
        (dest / "model.pt2").write_bytes(package)
        files.append("model.pt2")
    info = {k: v for k, v in json.loads((src / "manifest.json").read_text()).items() if k != "files"}
    write_manifest(dest, files, **info)
    return dest


@pytest.fixture(scope="module")
def without_package(artifacts, tmp_path_factory):
    return artifacts_copy(artifacts, tmp_path_factory.mktemp("a") / "artifacts", None)


@pytest.fixture(scope="module")
def broken_package(artifacts, tmp_path_factory):
    # hash-consistent but not a loadable package: e.g. built for another torch/CPU
    return artifacts_copy(artifacts, tmp_path_factory.mktemp("b") / "artifacts", b"PK\x03\x04 not a package")


def test_auto_uses_the_compiled_package(make_handler, artifacts):
    handler = make_handler(artifacts, "auto")
    assert handler.backend == "aoti" and handler.fallback_reason is None


@pytest.mark.parametrize("case", ["without_package", "broken_package"])
def test_auto_falls_back_to_eager(case, make_handler, request):
    handler = make_handler(request.getfixturevalue(case), "auto")
    assert handler.backend == "eager"
    assert handler.fallback_reason
    assert handler.load_info()["fallback_reason"] == handler.fallback_reason


@pytest.mark.parametrize("case", ["without_package", "broken_package"])
def test_aoti_required_fails_instead_of_falling_back(case, make_handler, request):
    # any load error must come out; which one depends on how the package is missing or broken
    with pytest.raises(Exception):  # noqa: B017 see above
        make_handler(request.getfixturevalue(case), "aoti")


def test_unknown_backend_is_refused(make_handler, artifacts):
    with pytest.raises(ValueError, match="MODEL_BACKEND"):
        make_handler(artifacts, "tensorrt")


def test_served_process_reports_its_backend_and_answers(function_process, artifacts, broken_package):
    with function_process("classifier", env={"ARTIFACTS_DIR": str(artifacts)}) as fn:
        loaded = fn.wait_for_lines("model_loaded", 1)[0]
        assert loaded["backend"] == "aoti"
        res = requests.post(fn.url + "/", data=photo_bytes("coffee.png"),
                            headers={"Content-Type": "image/png"}, timeout=30)
        assert res.json()["predictions"][0]["label"] == "espresso"
        assert requests.get(fn.url + "/", timeout=5).json()["backend"] == "aoti"
    with function_process("classifier", env={"ARTIFACTS_DIR": str(broken_package)}) as fn:
        loaded = fn.wait_for_lines("model_loaded", 1)[0]
        assert loaded["backend"] == "eager" and loaded["fallback_reason"]
        res = requests.post(fn.url + "/", data=photo_bytes("coffee.png"),
                            headers={"Content-Type": "image/png"}, timeout=30)
        assert res.json()["predictions"][0]["label"] == "espresso"


def test_served_process_with_aoti_required_and_a_broken_package_does_not_start(function_process, broken_package):
    fn = function_process("classifier", env={"ARTIFACTS_DIR": str(broken_package), "MODEL_BACKEND": "aoti"},
                          wait_ready=False)
    assert fn.wait_exit(60) == 1
    assert fn.events("startup_failed")


def test_loading_the_package_leaves_nothing_in_the_temp_dir(make_handler, artifacts):
    import tempfile
    from pathlib import Path

    def scratch():
        tmp = Path(tempfile.gettempdir())
        return set(tmp.glob("aotinductor_*")) | set(tmp.glob("torchfaas-aoti-*"))

    before = scratch()
    handler = make_handler(artifacts, "aoti")
    assert handler.backend == "aoti"
    assert scratch() - before == set()


def test_compiled_model_reads_a_transposed_batch_by_its_values(aoti_handler, photo_items):
    """The package's kernels assume contiguous inputs and nothing in the package checks
    strides: the same pixels laid out channel-first in memory must give the same answers."""
    batch = np.stack(photo_items[:3])
    transposed = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)  # NCHW memory
    assert not transposed.flags.c_contiguous
    assert np.allclose(aoti_handler.model(transposed), aoti_handler.model(batch), atol=1e-6)
