"""Runs in the image's test stage (`python -m pytest function`) and in `make test`.

testdata/ holds real photos (testdata/README.md): the classifier must name
`espresso.jpg` and `cat.jpg` right with the preprocessing these weights were
trained with; all of them also feed the bf16 accuracy gate.
"""
import os
import shutil
from pathlib import Path

import pytest

from torchfaas import BadRequest, InferenceRequest
from torchfaas.toolkit import ImageSettings, read_verified_manifest

from .handler import Classifier, parse_topk
from .preprocessing import center_crop_box

TESTDATA = Path(__file__).parent / "testdata"
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("artifacts")
    built = Path(os.environ.get("ARTIFACTS_DIR", Path(__file__).parent / "artifacts"))
    if (built / "manifest.json").is_file():
        # the build's prepare step ran (the image's test stage): prepare() below reuses its
        # compiled packages by their keys instead of compiling them again
        shutil.copytree(built, artifacts, dirs_exist_ok=True)
    handler = Classifier()
    settings = ImageSettings(batch_size=2, max_pixels=4_000_000).for_handler(handler)
    handler.prepare(artifacts, settings)
    handler.load(artifacts, read_verified_manifest(artifacts), settings)
    return handler


def classify(handler, name: str, topk: str = "3") -> dict:
    request = InferenceRequest(body=(TESTDATA / name).read_bytes(), content_type="image/jpeg",
                               headers={}, query={"topk": topk}, request_id="t")
    output = handler.predict([handler.preprocess(request)])[0]
    return handler.postprocess(output, request)


def test_espresso_is_espresso(classifier):
    top = classify(classifier, "espresso.jpg")["predictions"][0]
    assert top["label"] == "espresso" and top["class_index"] == 967
    assert top["probability"] > 0.8


def test_cat_is_a_cat(classifier):
    assert classify(classifier, "cat.jpg")["predictions"][0]["label"] in CAT_CLASSES


def test_topk_orders_probabilities(classifier):
    probabilities = [p["probability"] for p in classify(classifier, "cat.jpg", "5")["predictions"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)


def test_crop_is_tf_eval_crop():
    # 224/(224+32) of the short side, centred
    assert center_crop_box(640, 480) == (110, 30, 530, 450)


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "21", "1.5", ""])
def test_bad_topk_is_rejected(raw):
    with pytest.raises(BadRequest):
        parse_topk({"topk": raw}, 20)
