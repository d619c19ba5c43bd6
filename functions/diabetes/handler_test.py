"""Runs in the image's test stage (`python -m pytest function`) and in `make test`:
the build-time training and gate, real rows of the data set, and bad instances."""
import json
from pathlib import Path

import pytest

from torchfaas import BadRequest, InferenceRequest, PayloadTooLarge, Settings
from torchfaas.toolkit import read_verified_manifest

from .handler import FEATURES, MIN_R2, Handler

TESTDATA = Path(__file__).parent / "testdata"


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("artifacts")
    handler, settings = Handler(), Settings()
    handler.prepare(artifacts, settings)
    handler.load(artifacts, read_verified_manifest(artifacts), settings)
    handler.warmup()
    return handler


def request(payload) -> InferenceRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InferenceRequest(body=body, content_type="application/json", headers={}, query={}, request_id="t")


def test_held_out_r2_passes_the_gate_and_is_recorded(handler):
    assert handler.heldout_r2 >= MIN_R2 >= 0.4


def test_example_rows_are_predicted_in_order(handler):
    req = request((TESTDATA / "example.json").read_bytes())
    first, second = handler.preprocess(req), handler.preprocess(request({"instances": [{"age": 0.0, **{
        f: 0.0 for f in FEATURES}}]}))
    outputs = handler.predict([first, second])
    body = handler.postprocess(outputs[0], req)
    assert len(body["predictions"]) == 3 and len(outputs[1]) == 1
    # patients 0-2 progressed by 151, 75 and 141: the model orders the second lowest
    assert min(body["predictions"]) == body["predictions"][1]
    assert handler.log_fields(outputs[0])["instances"] == 3


@pytest.mark.parametrize("payload,error", [
    ({"instances": []}, BadRequest), ({"instances": [{"age": 1}]}, BadRequest),
    ({"instances": [{f: "x" for f in FEATURES}]}, BadRequest),
    ({"instances": [{f: 0.0 for f in FEATURES}] * 1000}, PayloadTooLarge), (b"{", BadRequest)])
def test_bad_instances_are_client_errors(handler, payload, error):
    with pytest.raises(error):
        handler.preprocess(request(payload))
