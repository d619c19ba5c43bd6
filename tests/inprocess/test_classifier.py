"""The real classifier in-process: real photos in every accepted encoding, the
response fields, and every malformed input of the corpus."""
import base64
import json
import uuid

import pytest

from loadkit.photos import photo_bytes, reencode
from support.corpus import check_answer, corpus

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


@pytest.mark.parametrize("body,content_type", [
    (lambda: photo_bytes("coffee.png"), "image/png"),
    (lambda: reencode("coffee.png", "JPEG", quality=90), "image/jpeg"),
    (lambda: reencode("coffee.png", "WEBP", quality=90), "image/webp"),
    (lambda: reencode("coffee.png", "JPEG"), "application/octet-stream"),
    (lambda: json.dumps({"image": base64.b64encode(photo_bytes("coffee.png")).decode()}).encode(),
     "application/json"),
    (lambda: reencode("coffee.png", "JPEG"), None),  # a client that sends no Content-Type
])
def test_espresso_in_every_encoding(classifier, body, content_type):
    res = classifier.post(body(), content_type)
    assert res.status_code == 200, res.text
    top = res.json["predictions"][0]
    assert (top["label"], top["class_index"]) == ("espresso", 967)
    assert top["probability"] > 0.8


def test_cat_photo_is_a_cat(classifier):
    res = classifier.post(photo_bytes("chelsea.png"), "image/png")
    assert res.json["predictions"][0]["label"] in CAT_CLASSES


def test_temple_photo(classifier):
    labels = [p["label"] for p in classifier.post(photo_bytes("china.jpg"), "image/jpeg").json["predictions"]]
    assert {"palace", "monastery", "bell cote", "pagoda"} & set(labels[:3])


def test_topk_and_response_fields(classifier):
    res = classifier.post(photo_bytes("chelsea.png"), "image/png", params={"topk": "7"})
    body = res.json
    assert len(body["predictions"]) == 7
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["model_name"] == "efficientnet-lite0"
    assert body["model_version"].startswith("sha256-")
    assert res.headers["X-Request-Id"] == body["request_id"]
    assert set(body) == {"predictions", "model_name", "model_version", "request_id"}
    assert set(body["predictions"][0]) == {"label", "class_index", "probability"}
    assert len(classifier.post(photo_bytes("chelsea.png"), "image/png").json["predictions"]) == 5  # default


def test_the_classifier_runs_the_batch_workers_it_declares(classifier):
    module_class = type(classifier.handler)
    assert module_class.batch_workers == 2
    assert classifier.settings.batch_workers == module_class.batch_workers


def test_metadata(classifier):
    res = classifier.get("/")
    body = res.json
    assert body["model_name"] == "efficientnet-lite0" and body["ready"] is True
    assert body["classes"] == 1000 and body["function"] == "classifier"
    assert body["model_version"].startswith("sha256-") and body["request_id"] == res.headers["X-Request-Id"]


@pytest.fixture(scope="module")
def cases():
    return corpus()


def test_every_malformed_input_is_a_json_4xx_with_one_line(classifier, cases):
    ids = []
    for case in cases:
        name, body, content_type, params, _, _ = case
        rid = f"m0-{name.replace('/', '.').replace('+', '.')}"[:56] + "-" + uuid.uuid4().hex[:6]
        res = classifier.post(body, content_type, params, headers={"X-Request-Id": rid})
        assert res.headers["X-Request-Id"] == rid
        check_answer(case, res)
        ids.append(rid)
    for rid, case in zip(ids, cases):
        found = classifier.lines_for(rid)
        assert len(found) == 1, (case[0], found)
        line = found[0]
        if line["status"] != 200:
            assert line["level"] == "WARNING" and line["error"] and "trace" not in line, line
        if case[4] is not None:
            assert line["status"] == case[4] and line["error"] == case[5]
    # still serving real photos correctly afterwards
    res = classifier.post(photo_bytes("chelsea.png"), "image/png")
    assert res.status_code == 200
    assert res.json["predictions"][0]["label"] in ("tabby", "tiger cat", "Egyptian cat")


def test_its_declared_confidence_histogram_counts_its_answers(classifier):
    """The runtime adds no prediction series: the classifier's top-1 confidence histogram
    is the one its handler declares (prediction_metrics), fed from its log lines' top1_prob."""
    def count():
        return sum(s.value for s in classifier.samples() if s.name == "torchfaas_top1_probability_count")

    before = count()
    res = classifier.post(photo_bytes("coffee.png"), "image/png")
    assert res.status_code == 200 and count() == before + 1
