"""Runs in the image's test stage (`python -m pytest function`) and locally."""
import json

from torchfaas import BadRequest, InferenceRequest, Settings
from torchfaas.toolkit import read_verified_manifest

from .handler import Handler


def make_request(body: bytes) -> InferenceRequest:
    return InferenceRequest(body=body, content_type="application/json", headers={}, query={},
                            request_id="test")


def test_lifecycle(tmp_path):
    handler = Handler()
    settings = Settings()
    handler.prepare(tmp_path, settings)
    handler.load(tmp_path, read_verified_manifest(tmp_path), settings)
    handler.warmup()
    request = make_request(json.dumps({"features": [1, 2, 3, 4]}).encode())
    outputs = handler.predict([handler.preprocess(request)] * 2)
    body = handler.postprocess(outputs[0], request)
    assert len(body["scores"]) == 3
    assert abs(sum(body["scores"]) - 1) < 1e-4


def test_bad_input_is_a_client_error(tmp_path):
    handler = Handler()
    try:
        handler.preprocess(make_request(b'{"features": [1]}'))
    except BadRequest as exc:
        assert exc.code == "invalid_input"
    else:
        raise AssertionError("expected BadRequest")
