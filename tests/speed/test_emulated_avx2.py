"""The classifier on an AMD EPYC with AVX2 only (no AVX-512, no bf16), emulated on any
x86-64 machine: qemu-user's EPYC-Rome CPU (what cpuid answers torch, oneDNN and the
compiled package; an instruction the CPU lacks is an illegal instruction, as on the real
one) and a /proc/cpuinfo without the AVX-512 and AMX flags, bind-mounted in a private
mount namespace (what the classifier's load reads).

What it shows: a build there would build no bf16 package, saying why; artifacts built on
this machine (an AVX-512 one, say) serve an AVX2 node the same answers, from the package
packed for its oneDNN, and MODEL_PRECISION=bf16 there serves fp32, saying why. Emulation
is ~50x slower: timings mean nothing here (the test sends 6 photos).
"""
import platform
import re
import subprocess
import sys

import pytest

from loadkit.photos import PHOTOS, photo_bytes
from support.function_process import FunctionProcess
from support.system_tools import require

CPU = "EPYC-Rome"  # Zen 2: AVX2, FMA, no AVX-512


@pytest.fixture(scope="module")
def avx2_node(tmp_path_factory):
    """The command prefix that runs a process on the emulated AVX2 CPU."""
    if platform.machine() != "x86_64":
        pytest.skip(f"an x86-64 emulation test; this machine is {platform.machine()}")
    tools = require("qemu-x86_64", "unshare", suite="tests/speed/test_emulated_avx2.py", root=True)
    cpuinfo = tmp_path_factory.mktemp("avx2-node") / "cpuinfo"
    with open("/proc/cpuinfo") as real:
        cpuinfo.write_text(re.sub(r" (avx512\w*|amx\w*)(?=[ \n])", "", real.read()))
    mount = f"mount --bind {cpuinfo} /proc/cpuinfo && exec {tools['qemu-x86_64']} -cpu {CPU} \"$@\""
    prefix = [tools["unshare"], "-m", "--propagation", "private", "sh", "-c", mount, "sh"]
    probe = subprocess.run([*prefix, sys.executable, "-c",
                            "print(open('/proc/cpuinfo').read().count('avx512'))"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.split() == ["0"], probe.stderr[-2000:]
    return prefix


def answers(fn: FunctionProcess) -> dict:
    out = {}
    for name in sorted(PHOTOS):
        res = fn.post(photo_bytes(name), timeout=180)
        assert res.status_code == 200, res.text
        out[name] = [(p["label"], p["probability"]) for p in res.json()["predictions"]]
    return out


def test_an_avx2_node_builds_no_bf16_and_serves_what_this_machine_built(
        avx2_node, artifacts, classifier_build):
    # the build step's bf16 decision on the AVX2 machine (a whole build there would compile
    # under emulation for many minutes; tests/speed/test_precision.py runs one, simulated)
    probe = subprocess.run([*avx2_node, sys.executable, "-c", "import torch; from function.packages import "
                            "bf16_unbuildable; print(torch.backends.cpu.get_cpu_capability(), "
                            "torch.ops.mkldnn._is_mkldnn_bf16_supported()); print(bf16_unbuildable())"],
                           cwd=classifier_build, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    lines = probe.stdout.splitlines()
    assert lines[0].split() == ["AVX2", "False"], probe.stdout + probe.stderr[-2000:]  # what the issue saw
    assert "oneDNN has no bf16 kernels" in lines[1] and "AVX2" in lines[1], lines

    # the artifacts built on this machine, served on the AVX2 node
    env = {"ARTIFACTS_DIR": str(artifacts), "MODEL_PRECISION": "bf16"}
    with FunctionProcess(classifier_build, env=env) as native:
        expected = answers(native)
    fn = FunctionProcess(classifier_build, env=env)
    with fn.start(timeout=300, prefix=avx2_node):
        loaded = fn.wait_for_lines("model_loaded", 1)[0]
        assert (loaded["backend"], loaded["precision"]) == ("aoti", "fp32"), loaded
        assert "no native bf16" in loaded["precision_reason"] and "AVX2" in loaded["precision_reason"], loaded
        # weights packed for this node's oneDNN: model-avx2.pt2 where the build machine packs for AVX-512
        assert loaded["packed_for"] == "AVX2" and loaded.get("packing_reason") is None, loaded
        got = answers(fn)
    # oneDNN's AVX2 kernels sum in another order than AVX-512's: the same classes, in the
    # same order, probabilities within 1e-4
    for name, predictions in expected.items():
        assert [label for label, _ in got[name]] == [label for label, _ in predictions], (name, got[name])
        assert max(abs(a - b) for (_, a), (_, b) in zip(got[name], predictions)) < 1e-4, (name, got[name])
