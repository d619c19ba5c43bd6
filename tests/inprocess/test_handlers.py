"""The other handlers the template serves: a plain python3-http `handle(event, context)`
module, the `faas-cli new` skeleton and the minimal one `ModelHandler` documents,
in-process; and the handler a function cannot have, one without `load` or `predict`. (That each runs in the build
layout as `python index.py` is tests/integration/test_template.py.)"""
import importlib.util
import json
import textwrap

import pytest

from loadkit.localrun import TEMPLATE
from support.function_process import TEST_FUNCTIONS
from support.inprocess import InProcessFunction
from torchfaas import ModelHandler
from torchfaas.handler_loader import load_handler
from torchfaas.plain_handler import PlainHandler
from torchfaas.settings import Settings


def module_from(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_python3_http_handler_keeps_working():
    module = module_from(TEST_FUNCTIONS["plain"] / "handler.py", "plain_handler_under_test")
    fn = InProcessFunction(PlainHandler(module), function_name="plain")
    assert fn.load()
    payload = bytes(range(256)) * 4  # not UTF-8: python3-http would mangle it
    res = fn.post(payload, None)
    assert res.status_code == 200 and res.data == payload
    assert res.headers["Content-Type"] == "application/octet-stream"
    res = fn.request("PUT", "/json", b"abc")
    assert res.status_code == 201 and res.json == {"method": "PUT", "length": 3}
    res = fn.get("/text")
    assert res.text == "hello" and res.headers["Content-Type"].startswith("text/plain")
    statuses = [line["status"] for line in fn.events("inference")]
    assert statuses == [200, 201, 200]
    assert all(line["function"] == "plain" for line in fn.events("inference"))
    assert fn.get("/ready").status_code == 200  # ready at once: no model to load


def test_skeleton_function_serves(tmp_path):
    module = module_from(TEMPLATE / "function" / "handler.py", "skeleton_handler_under_test")
    handler = module.Handler()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    handler.prepare(artifacts, Settings())  # what the image build runs
    fn = InProcessFunction(handler, function_name="myfn", artifacts_dir=str(artifacts))
    try:
        assert fn.load(), fn.raw_lines
        res = fn.post(json.dumps({"features": [1, 2, 3, 4]}).encode(), "application/json")
        assert res.status_code == 200 and len(res.json["scores"]) == 3
        assert fn.post(b'{"features": []}', "application/json").json["error"]["code"] == "invalid_input"
        line = fn.events("inference")[0]
        assert line["function"] == "myfn" and line["model_name"] == "tiny-linear"
        assert line["model_version"].startswith("sha256-")  # named after the manifest
        assert line["top1_class"] in ("0", "1", "2") and 0 < line["top1_prob"] <= 1
    finally:
        fn.close()


def test_the_minimal_handler_modelhandler_documents_serves():
    doc = ModelHandler.__doc__
    code = textwrap.dedent(doc[doc.index("::") + 2:])
    namespace = {}
    exec(compile(code, "ModelHandler.__doc__", "exec"), namespace)
    fn = InProcessFunction(namespace["Handler"](), function_name="minimal")
    try:
        assert fn.load(), fn.raw_lines
        res = fn.post(json.dumps({"scores": [1, 1]}).encode(), "application/json")
        assert res.status_code == 200 and res.json["probabilities"] == [0.5, 0.5]
        assert res.json["model_name"] == "softmax"
        assert fn.post(b"{}", "application/json").json["error"]["code"] == "bad_request"
    finally:
        fn.close()


def test_a_half_written_handler_fails_when_it_is_made(tmp_path, monkeypatch):
    """Not later in the loader thread: a handler without predict() cannot be made, and
    the error names what is missing."""
    class NoPredict(ModelHandler):
        def load(self, artifacts_dir, manifest, settings): ...

    with pytest.raises(TypeError, match="NoPredict.*predict"):
        NoPredict()
    # found through HANDLER_MODULE, as server.main() and the build step find it
    (tmp_path / "half_written.py").write_text(
        "from torchfaas import ModelHandler\n\n\n"
        "class Handler(ModelHandler):\n"
        "    def preprocess(self, request):\n"
        "        return request.body\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="Handler.*load.*predict"):
        load_handler("half_written")
