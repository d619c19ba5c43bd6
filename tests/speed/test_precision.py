"""MODEL_PRECISION=fp32|bf16: the bf16 package, its accuracy gate, and the fp32 fallback.

One bf16 package is compiled per session (~30-60 s), into a copy of the fp32
artifacts (the fp32 package is reused, not recompiled). On a machine whose oneDNN has
no bf16 kernels (an AVX2-only CPU) no bf16 package is built: the tests that need one
skip, saying why; the fallback is tested on such a machine, simulated, everywhere.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import requests
import torch

from loadkit.photos import PHOTOS, photo_bytes
from support.function_process import FunctionProcess
from torchfaas.toolkit import ImageSettings, open_image, precision_gate, read_verified_manifest
from torchfaas.toolkit.compiled import bf16_feature, prepacked_calls

# native bf16 here, as the classifier judges it when it loads (loading.bf16_unavailable)
NATIVE_BF16 = bool(bf16_feature()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
# An AVX2-only x86-64 CPU, simulated in a subprocess's environment on any newer one:
# ATEN_CPU_CAPABILITY=avx2 holds torch's own kernels to AVX2 (get_cpu_capability() is
# "AVX2"); ONEDNN_MAX_CPU_ISA=AVX2 holds oneDNN to AVX2, which makes
# torch.ops.mkldnn._is_mkldnn_bf16_supported() False: what Inductor's freezing asks
# before it prepacks a bf16 convolution. Not simulated: cpuinfo's feature flags (an
# avx512_bf16 CPU still reports it), so the classifier's load sees the oneDNN check.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.fixture(scope="session")
def bf16_artifacts(artifacts, classifier_build, tmp_path_factory):
    dest = tmp_path_factory.mktemp("bf16") / "artifacts"
    shutil.copytree(artifacts, dest)
    subprocess.run([sys.executable, "-m", "torchfaas.prepare"], cwd=classifier_build, check=True,
                   env={**os.environ, "ARTIFACTS_DIR": str(dest), "MODEL_PRECISION": "bf16"},
                   stdout=subprocess.DEVNULL)
    return dest


@pytest.fixture(scope="session")
def bf16_package(bf16_artifacts):
    """bf16_artifacts with their bf16 package; skips where this machine could not build one."""
    reason = json.loads((bf16_artifacts / "manifest.json").read_text()).get("bf16_not_built")
    if reason:
        pytest.skip(f"no bf16 package built here: {reason}")
    return bf16_artifacts


def load(module, artifacts_dir, precision: str, backend: str = "auto"):
    own = module.config.ClassifierSettings(model_backend=backend, model_precision=precision)
    handler = module.handler.Classifier(own)
    settings = ImageSettings(max_pixels=50_000_000, batch_size=4).for_handler(handler)
    handler.load(artifacts_dir, read_verified_manifest(artifacts_dir), settings)
    return handler


def test_precision_setting_is_checked(classifier):
    assert classifier.config.ClassifierSettings().model_precision == "fp32"
    with pytest.raises(ValueError, match="MODEL_PRECISION"):
        classifier.config.ClassifierSettings(model_precision="int8")


def test_gate_inputs_are_real_photos_and_crops_of_them(classifier):
    photos, inputs = classifier.packages.gate_set()
    assert {"skimage/motorcycle_left.png", "skimage/hubble_deep_field.jpg", "sklearn/china.jpg",
            "sklearn/flower.jpg", "testdata/cat.jpg", "testdata/rocket.jpg"} <= set(photos)
    assert not {"skimage/logo.png", "skimage/chessboard_RGB.png", "skimage/horse.png"} & set(photos)
    assert len(inputs) == 2 * precision_gate.VIEWS * len(photos) >= 1000
    assert inputs.shape[1:] == (224, 224, 3) and inputs.dtype == np.uint8
    # the first input of each photo is the crop the function serves, the view after
    # its views is its mirror image
    first = next(iter(photos.values()))
    served = classifier.preprocessing.to_pixels(open_image(first.read_bytes(), 50_000_000))
    assert (inputs[0] == served).all()
    assert (inputs[precision_gate.VIEWS] == served[:, ::-1]).mean() > 0.9  # within 1 of it, resized apart
    # not noise: neighbouring pixels of a photo are close, of noise they are not
    assert float(abs(inputs[:, 1:].astype(int) - inputs[:, :-1].astype(int)).mean()) < 20


def test_gate_figures_see_changed_answers(classifier, aoti_handler):
    """measure() against the real fp32 package: itself passes with perfect figures; a
    candidate that swaps fp32's top two classes on every 10th input fails the confident
    agreement and the probability shift, and says so."""
    _, inputs = classifier.packages.gate_set()
    inputs = inputs[:8 * precision_gate.VIEWS]  # the 4 testdata photos with their mirrors
    reference = lambda x: torch.from_numpy(aoti_handler.model(x.numpy()))  # noqa: E731 (measure() passes tensors)
    same = precision_gate.measure(reference, reference, inputs)
    assert (same["confident_top1_agreement"], same["top5_contains_top1"], same["prob_shift_max"]) == (1.0, 1.0, 0.0)
    assert same["confident_inputs"] > 0 and same["fp32_mirror_shift_mean"] > 0

    calls = [0]  # rows seen, across calls: every 10th has its top two swapped

    def swapped(x):
        probs = reference(x).clone()
        for row in range(len(probs)):
            calls[0] += 1
            if calls[0] % 10 == 0:
                top2 = probs[row].topk(2).indices
                probs[row, top2] = probs[row, top2.flip(0)]
        return probs

    changed = precision_gate.measure(reference, swapped, inputs)
    assert changed["confident_flips"] >= 1 and changed["confident_top1_agreement"] < 0.99
    assert changed["top5_contains_top1"] == 1.0  # the swapped class is still in the top 5
    broken = precision_gate.failures({**changed, "inputs": 1000, "confident_inputs": 300})
    assert any(b.startswith("confident_top1_agreement") for b in broken)
    with pytest.raises(precision_gate.GateFailed, match="confident_top1_agreement"):
        precision_gate.check({**changed, "inputs": 1000, "confident_inputs": 300})


@pytest.mark.parametrize("key, value", [("inputs", 999), ("confident_inputs", 299), ("confident_top1_agreement", 0.989),
                                        ("top5_contains_top1", 0.994), ("prob_shift_mean", 0.021),
                                        ("prob_shift_p99", 0.121)])
def test_each_gate_bound_fails_alone(key, value):
    passing = {"inputs": 1000, "confident_inputs": 300, "confident_top1_agreement": 0.99,
               "top5_contains_top1": 0.995, "prob_shift_mean": 0.02, "prob_shift_p99": 0.12}
    assert precision_gate.failures(passing) == []
    assert [b.split()[0] for b in precision_gate.failures({**passing, key: value})] == [key]


def test_bf16_network_folds_stride2_pads_exactly(classifier):
    net = classifier.network.build_network()
    folded = classifier.network.fold_batchnorms(net)
    reference = classifier.network.fold_batchnorms(net)
    assert classifier.network.fold_stride2_pads(folded) == 5  # the stem and 4 depthwise convolutions
    pixels = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert float((folded(pixels) - reference(pixels)).abs().max()) < 1e-4


def test_dc_preserving_rounding_keeps_filter_sums(classifier):
    weight = classifier.network.fold_batchnorms(classifier.network.build_network())._blocks[0]._depthwise_conv.weight
    rounded = classifier.network.dc_preserving_bf16(weight)
    nearest = weight.detach().to(torch.bfloat16)
    assert rounded.dtype == torch.bfloat16 and rounded.shape == weight.shape
    # every weight is one of its two bf16 neighbours, at most 3 per filter not the nearest
    assert int((rounded.view(torch.int16).int() - nearest.view(torch.int16).int()).abs().max()) <= 1
    assert int((rounded != nearest).flatten(1).sum(1).max()) <= 3
    sums = lambda w: (w.double() - weight.detach().double()).sum((1, 2, 3)).abs()  # noqa: E731 a one-line formula, used twice below
    assert bool((sums(rounded) <= sums(nearest)).all())
    assert float(sums(rounded).mean()) < float(sums(nearest).mean()) / 4


def test_bf16_package_passed_its_gate_and_is_hash_checked(classifier, bf16_package):
    manifest = read_verified_manifest(bf16_package)  # raises on any hash mismatch
    assert "model-bf16.pt2" in manifest["files"] and "model.pt2" in manifest["files"]
    gate = manifest["bf16_gate"]
    assert gate["passed"] is True and precision_gate.failures(gate) == []
    assert gate["bounds"] == dataclasses.asdict(classifier.packages.BF16_GATE)
    assert gate["inputs"] >= 1000 and gate["confident_inputs"] >= 300 and len(gate["photos"]) >= 20
    assert manifest["bf16_top1_agreement"] == gate["confident_top1_agreement"] >= 0.99
    assert manifest["bf16_agreement_inputs"] == gate["confident_inputs"]
    assert manifest["bf16_isa"] == manifest["aoti_isa"]
    assert prepacked_calls(bf16_package / "model-bf16.pt2") == (49, 0)  # frozen too


def test_gate_fails_the_build_below_its_bounds(classifier, bf16_package, tmp_path, monkeypatch):
    dest = tmp_path / "artifacts"
    shutil.copytree(bf16_package, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    recorded = manifest.pop("bf16_gate")  # the gate is measured again, not reused
    (dest / "manifest.json").write_text(json.dumps(manifest))
    measured = []

    def one_flip_too_many(reference, candidate, inputs, **kwargs):
        measured.append(len(inputs))
        return {**recorded, "confident_top1_agreement": 0.985}

    monkeypatch.setattr(classifier.packages, "measure", one_flip_too_many)
    handler = classifier.handler.Classifier(classifier.config.ClassifierSettings(model_precision="bf16"))
    with pytest.raises(precision_gate.GateFailed, match="confident_top1_agreement 0.985 < 0.99"):
        handler.prepare(dest, ImageSettings())
    assert measured and measured[0] >= 1000
    assert not (dest / "model-bf16.pt2").exists()  # never left behind to ship


@pytest.mark.skipif(not NATIVE_BF16, reason=f"this CPU has no native bf16 ({torch.backends.cpu.get_cpu_capability()})")
def test_bf16_serves_where_the_cpu_supports_it(classifier, bf16_package, aoti_handler):
    handler = load(classifier, bf16_package, "bf16")
    info = handler.load_info()
    assert (info["backend"], info["precision"], info["precision_reason"]) == ("aoti", "bf16", None)
    assert info["bf16_top1_agreement"] >= 0.99
    items = [classifier.preprocessing.to_pixels(open_image(PHOTOS[n].read_bytes(), 50_000_000))
             for n in ("coffee.png", "chelsea.png")]
    bf16, fp32 = (torch.from_numpy(np.stack(h.predict(items))) for h in (handler, aoti_handler))
    assert torch.equal(bf16.argmax(-1), fp32.argmax(-1))
    assert float((bf16 - fp32).abs().max()) < 0.05
    handler.warmup()


def test_bf16_falls_back_to_fp32_without_cpu_support(classifier, bf16_artifacts, monkeypatch):
    monkeypatch.setattr(classifier.loading, "bf16_feature", lambda: "")
    handler = load(classifier, bf16_artifacts, "bf16")
    info = handler.load_info()
    assert (info["backend"], info["precision"]) == ("aoti", "fp32")
    assert "no native bf16" in info["precision_reason"]


def test_bf16_falls_back_to_fp32_without_a_bf16_package(classifier, artifacts):
    handler = load(classifier, artifacts, "bf16")
    info = handler.load_info()
    if not NATIVE_BF16:
        assert "no native bf16" in info["precision_reason"]
    else:
        assert "no model-bf16.pt2" in info["precision_reason"]
    assert (info["backend"], info["precision"]) == ("aoti", "fp32")


def test_bf16_with_the_eager_backend_is_fp32_with_a_reason(classifier, bf16_artifacts):
    info = load(classifier, bf16_artifacts, "bf16", backend="eager").load_info()
    assert (info["backend"], info["precision"]) == ("eager", "fp32")
    assert "eager" in info["precision_reason"]


def test_default_precision_is_fp32_without_a_reason(aoti_handler):
    info = aoti_handler.load_info()
    assert (info["backend"], info["precision"], info["precision_reason"]) == ("aoti", "fp32", None)


def test_served_model_loaded_line_carries_precision_and_backend(classifier_build, bf16_artifacts):
    with FunctionProcess(classifier_build, env={"ARTIFACTS_DIR": str(bf16_artifacts),
                                                "MODEL_PRECISION": "bf16"}) as fn:
        loaded = fn.wait_for_lines("model_loaded", 1)[0]
        assert loaded["backend"] == "aoti"
        assert loaded["precision"] == ("bf16" if NATIVE_BF16 and (bf16_artifacts / "model-bf16.pt2").is_file()
                                       else "fp32")
        res = requests.post(fn.url + "/", data=photo_bytes("coffee.png"),
                            headers={"Content-Type": "image/png"}, timeout=30)
        assert res.json()["predictions"][0]["label"] == "espresso"


def test_bf16_on_an_avx2_only_cpu_builds_and_serves_fp32_with_the_reason(artifacts, classifier_build, tmp_path):
    """MODEL_PRECISION=bf16 on an AVX2-only machine (simulated: AVX2_ONLY): the prepare
    step builds no bf16 package, says why in the manifest, and exits 0 without a stack
    trace; the function serves fp32, with the reason in its model_loaded line."""
    dest = tmp_path / "artifacts"
    shutil.copytree(artifacts, dest)
    (dest / "model-bf16.pt2").unlink(missing_ok=True)
    env = {**os.environ, **AVX2_ONLY, "ARTIFACTS_DIR": str(dest), "MODEL_PRECISION": "bf16"}
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability(), "
                            "torch.ops.mkldnn._is_mkldnn_bf16_supported())"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["AVX2", "False"], probe.stdout  # the simulation holds
    prepared = subprocess.run([sys.executable, "-m", "torchfaas.prepare"], cwd=classifier_build, env=env,
                              capture_output=True, text=True, timeout=600)
    assert prepared.returncode == 0 and "Traceback" not in prepared.stderr, prepared.stderr[-3000:]
    assert "no model-bf16.pt2 built, fp32 serves" in prepared.stderr, prepared.stderr[-3000:]
    manifest = read_verified_manifest(dest)
    assert "model-bf16.pt2" not in manifest["files"] and not (dest / "model-bf16.pt2").exists()
    assert "oneDNN has no bf16 kernels" in manifest["bf16_not_built"] and "AVX2" in manifest["bf16_not_built"]

    with FunctionProcess(classifier_build, env={**AVX2_ONLY, "ARTIFACTS_DIR": str(dest),
                                                "MODEL_PRECISION": "bf16"}) as fn:
        loaded = fn.wait_for_lines("model_loaded", 1)[0]
        assert (loaded["backend"], loaded["precision"]) == ("aoti", "fp32"), loaded
        assert "no native bf16" in loaded["precision_reason"] and "AVX2" in loaded["precision_reason"], loaded
        res = fn.post(photo_bytes("coffee.png"), "image/png")
        assert res.json()["predictions"][0]["label"] == "espresso"
