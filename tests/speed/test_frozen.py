"""The compiled package is frozen: its convolutions are prepacked oneDNN ones.

Inductor applies `freezing` only under `torch.no_grad()`; with grad enabled the
option is ignored without a word and the package calls the plain ATen
convolution 49 times, 1.5-2x slower (docs/benchmarks.md, "The fast path"). These tests read the
generated C++ wrapper inside the .pt2 zip, so they fail if freezing silently
stops applying, whatever the timing noise.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from torchfaas.toolkit.compiled import prepacked_calls, wrapper_calls

# EfficientNet-Lite0: stem + 16 blocks (1 with 2 convs, 15 with 3) + head
CONVOLUTIONS = 49


def max_difference(module, net_a, net_b, items) -> float:
    """Largest difference between two networks' served answers (probabilities) on `items`."""
    pixels = torch.from_numpy(np.stack(items))
    with torch.inference_mode():
        served = module.network.ServedModel
        return float((served(net_a)(pixels) - served(net_b)(pixels)).abs().max())


def test_served_package_calls_only_prepacked_convolutions(artifacts):
    calls = wrapper_calls(artifacts / "model.pt2")
    packed, plain = prepacked_calls(artifacts / "model.pt2")
    assert plain == 0, calls
    assert packed == CONVOLUTIONS, calls
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert manifest["aoti_prepacked_convolutions"] == CONVOLUTIONS


# one forward pass per batch size, in a fresh process with oneDNN's trace on
REORDER_PROBE = """
import sys
import torch
from torchfaas.toolkit.compiled import CompiledModel
model = CompiledModel(sys.argv[1])
for batch in (1, 3, 4, 8):
    model(torch.zeros(batch, 224, 224, 3, dtype=torch.uint8))
"""


def run_probe(code: str, *args, **env) -> str:
    """`code` in a fresh Python process (this one's sys.path, one OpenMP thread, `env`
    added): its stdout. oneDNN reads its variables once per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                          text=True, check=True, timeout=300).stdout


def test_served_package_reorders_no_weight_at_any_batch_size(artifacts):
    """Inductor leaves convolution weights plain when the batch is dynamic, and oneDNN then
    reorders all 49 of them at every forward pass (`conv_weights_packed_for_dynamic_batch`
    packs them at build time): counted in oneDNN's own trace, not timed."""
    trace = run_probe(REORDER_PROBE, artifacts / "model.pt2", ONEDNN_VERBOSE="1")
    convolutions = trace.count("exec,cpu,convolution")
    assert convolutions == 4 * CONVOLUTIONS, trace[-2000:]  # the trace is on: every pass counted
    assert trace.count("exec,cpu,reorder") == 0, [line for line in trace.splitlines() if "reorder" in line][:5]


def test_an_avx2_node_gets_weights_packed_for_it(artifacts):
    """oneDNN's AVX2 kernels want another blocked layout than its AVX-512 ones: a package
    packed on an AVX-512 build machine reorders every weight at every pass on an AVX2 node
    (oneDNN held to AVX2 here), so the build packs model-avx2.pt2 too, which reorders none."""
    manifest = json.loads((artifacts / "manifest.json").read_text())
    if manifest["aoti_packed_for"] != "AVX512":
        pytest.skip(f"this build machine packs for {manifest['aoti_packed_for']}: model.pt2 is the AVX2 layout")
    assert "model-avx2.pt2" in manifest["files"] and manifest["avx2_isa"] == manifest["aoti_isa"]
    assert prepacked_calls(artifacts / "model-avx2.pt2") == (CONVOLUTIONS, 0)
    for package, reorders in (("model.pt2", True), ("model-avx2.pt2", False)):
        trace = run_probe(REORDER_PROBE, artifacts / package, ONEDNN_VERBOSE="1", ONEDNN_MAX_CPU_ISA="AVX2")
        assert trace.count("exec,cpu,convolution") == 4 * CONVOLUTIONS, trace[-2000:]
        assert (trace.count("exec,cpu,reorder") > 0) == reorders, (package, trace[-2000:])  # 48 a pass, or 0


def test_each_node_loads_the_package_packed_for_its_onednn(classifier, artifacts, monkeypatch):
    manifest = json.loads((artifacts / "manifest.json").read_text())
    here = classifier.loading.fp32_package_here
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    if manifest["aoti_packed_for"] == "AVX512":
        assert here(manifest) == ("model-avx2.pt2", "AVX2", None)
        # built without it (its compile failed): model.pt2 serves, and model_loaded says what it costs
        without = {**manifest, "files": {k: v for k, v in manifest["files"].items() if k != "model-avx2.pt2"},
                   "avx2_not_built": "its compile failed (no compiler)"}
        package, packed_for, why = here(without)
        assert (package, packed_for) == ("model.pt2", "AVX512")
        assert "reordered at every forward pass" in why and "no compiler" in why
    else:
        assert here(manifest) == ("model.pt2", "AVX2", None)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    native = "AVX512" if classifier.loading.libtorch.cpu_runs("AVX512") else "AVX2"
    assert here(manifest)[:2] == ("model.pt2", manifest["aoti_packed_for"])
    assert (here(manifest)[2] is None) == (manifest["aoti_packed_for"] == native)


ANSWERS_PROBE = """
import sys
import numpy as np
import torch
from torchfaas.toolkit.compiled import CompiledModel
pixels = torch.from_numpy(np.load(sys.argv[2]))
np.save(sys.argv[3], CompiledModel(sys.argv[1])(pixels)[0].numpy())
"""


def test_packed_weights_still_serve_where_onednn_takes_another_isa(artifacts, photo_items, tmp_path):
    """The weights are packed for the build machine's ISA. A node whose oneDNN picks
    another one (here oneDNN held to AVX2 by ONEDNN_MAX_CPU_ISA) reorders them per pass,
    as before the packing, and gives the same answers."""
    np.save(tmp_path / "pixels.npy", np.stack(photo_items))
    answers = {}
    runs = [("model.pt2", ""), ("model.pt2", "AVX2")]
    runs += [("model-avx2.pt2", "AVX2")] if (artifacts / "model-avx2.pt2").is_file() else []
    for package, isa in runs:
        out = tmp_path / f"answers-{package}-{isa or 'default'}.npy"
        run_probe(ANSWERS_PROBE, artifacts / package, tmp_path / "pixels.npy", out, ONEDNN_MAX_CPU_ISA=isa)
        answers[package, isa] = np.load(out)
    native = answers["model.pt2", ""]
    assert native.shape == (len(photo_items), 1000)
    for run, got in answers.items():
        assert (native.argmax(1) == got.argmax(1)).all(), run
        assert float(np.abs(native - got).max()) < 1e-5, run


def test_recipe_asks_for_freezing(classifier):
    assert classifier.packages.AOTI_CONFIGS.get("freezing") is True


def test_prepare_refuses_an_unfrozen_package(classifier, tmp_path):
    # what compile_package produced before it compiled under no_grad: an option
    # ignored, a package that works and is slow. check_frozen must say no.
    import zipfile

    unfrozen = tmp_path / "model.pt2"
    with zipfile.ZipFile(unfrozen, "w") as archive:
        archive.writestr("model/data/aotinductor/model/x.wrapper.cpp",
                         "aoti_torch_cpu_convolution(a);\n" * CONVOLUTIONS)
    assert prepacked_calls(unfrozen) == (0, CONVOLUTIONS)
    with pytest.raises(RuntimeError, match="not frozen"):
        classifier.packages.check_frozen(unfrozen)


def test_warmup_runs_every_batch_size_the_batcher_can_form(classifier, aoti_handler, monkeypatch):
    import threading

    seen, ready = [], threading.Event()
    original = aoti_handler.predict

    def predict(items):
        if len(items) > 1:
            ready.wait(60)  # the background passes start only after warmup() has returned
        seen.append(len(items))
        return original(items)

    monkeypatch.setattr(aoti_handler, "predict", predict)
    aoti_handler.warmup()
    assert seen == [1]  # before ready: batch 1 only; the other sizes right after, in the background
    ready.set()
    aoti_handler.warmup_thread.join(60)
    assert seen == list(range(1, aoti_handler.warmup_sizes + 1))
    assert type(aoti_handler).batch_workers == aoti_handler.batch_workers == 2  # the runtime's default intact


def test_frozen_answers_match_eager_within_tolerance(photo_items, aoti_handler, eager_handler):
    # real photos, batch of all of them: the frozen graph keeps the eager answers
    items = photo_items
    frozen, eager = (torch.from_numpy(np.stack(h.predict(items))) for h in (aoti_handler, eager_handler))
    assert torch.equal(frozen.argmax(-1), eager.argmax(-1))
    assert float((frozen - eager).abs().max()) <= 1e-5


def test_pad_folding_is_exact(classifier, artifacts, photo_items):
    # symmetric TF "SAME" pads (the stride-1 depthwise convolutions) move into the
    # convolutions' own padding: same answers within 1e-5 on real photos
    plain = classifier.network.build_network(artifacts / classifier.config.WEIGHTS, fold_pads=False)
    folded = classifier.network.build_network(artifacts / classifier.config.WEIGHTS, fold_pads=False)
    assert classifier.network.fold_same_pads(folded) == 12
    assert classifier.network.fold_same_pads(folded) == 0  # nothing left to fold
    assert max_difference(classifier, plain, folded, photo_items) <= 1e-5


def test_fp32_package_network_folds_stride2_pads_exactly(classifier, artifacts, photo_items):
    # the fp32 package compiles fp32_network(): the stride-2 convolutions' asymmetric
    # pads (stem and 4 depthwise) folded into one-tap-larger kernels; the same answers
    net = classifier.network.build_network(artifacts / classifier.config.WEIGHTS)
    folded = classifier.network.fp32_network(net)
    assert classifier.network.fold_stride2_pads(folded) == 0  # all folded
    assert max_difference(classifier, net, folded, photo_items) <= 1e-5
    assert classifier.network.fold_stride2_pads(net) == 5  # fp32_network() folded a copy
    packages = classifier.packages
    assert json.loads((artifacts / "manifest.json").read_text())["aoti_key"] == packages.package_key(
        packages.sha256_of(artifacts / classifier.config.WEIGHTS), packing=packages.onednn_packing())
