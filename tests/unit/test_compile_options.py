"""compile_package's options: the convolution-weight packing (an Inductor patch written for
the classifier's EfficientNet) applies only when asked for, and the classifier asks."""
import ast
import contextlib

import pytest
import torch

from loadkit.localrun import REPO
from torchfaas.toolkit import compiled


@pytest.fixture
def compile_calls(monkeypatch):
    """compile_package with the compiler replaced: [(packing patch active?, inductor configs)]."""
    import torch._inductor

    calls, active = [], []

    @contextlib.contextmanager
    def packing():
        active.append(True)
        try:
            yield
        finally:
            active.pop()

    def fake_compile(exported, package_path, inductor_configs):
        calls.append((bool(active), inductor_configs, torch.is_grad_enabled()))
        open(package_path, "wb").close()
        return package_path

    monkeypatch.setattr(compiled, "conv_weights_packed_for_dynamic_batch", packing)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", fake_compile)
    return calls


@pytest.mark.parametrize("kwargs, packed", [({}, False), ({"pack_conv_weights": False}, False),
                                            ({"pack_conv_weights": True}, True)])
def test_conv_weights_are_packed_only_when_asked(compile_calls, tmp_path, kwargs, packed):
    path = compiled.compile_package(torch.nn.Linear(3, 1), torch.zeros(2, 3), tmp_path / "m.pt2",
                                    inductor_configs={"freezing": True}, **kwargs)
    assert path.is_file()
    # under no_grad, whatever the option: Inductor ignores "freezing" with grad on
    assert compile_calls == [(packed, {"freezing": True}, False)]


def test_the_classifier_packs_its_conv_weights():
    """Both of its packages (fp32 and bf16) compile with pack_conv_weights=True."""
    tree = ast.parse((REPO / "functions" / "classifier" / "packages.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "compile_package"]
    packing = [next((k.value.value for k in call.keywords if k.arg == "pack_conv_weights"), None) for call in calls]
    assert packing == [True, True]
