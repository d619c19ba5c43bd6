"""The classifier as a real server: real photos in every accepted encoding."""
import base64
import json

import pytest
import requests
from photos import photo_bytes, reencode

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


@pytest.mark.parametrize("body,content_type", [
    (lambda: photo_bytes("coffee.png"), "image/png"),
    (lambda: reencode("coffee.png", "JPEG", quality=90), "image/jpeg"),
    (lambda: reencode("coffee.png", "WEBP", quality=90), "image/webp"),
    (lambda: reencode("coffee.png", "JPEG"), "application/octet-stream"),
    (lambda: json.dumps({"image": base64.b64encode(photo_bytes("coffee.png")).decode()}),
     "application/json"),
])
def test_espresso_in_every_encoding(classifier, body, content_type):
    res = classifier.post(body(), content_type)
    assert res.status_code == 200, res.text
    top = res.json()["predictions"][0]
    assert (top["label"], top["class_index"]) == ("espresso", 967)
    assert top["probability"] > 0.8


def test_cat_photo_is_a_cat(classifier):
    res = classifier.post(photo_bytes("chelsea.png"), "image/png")
    assert res.json()["predictions"][0]["label"] in CAT_CLASSES


def test_temple_photo(classifier):
    labels = [p["label"] for p in classifier.post(photo_bytes("china.jpg")).json()["predictions"]]
    assert {"palace", "monastery", "bell cote", "pagoda"} & set(labels[:3])


def test_topk_and_response_fields(classifier):
    res = classifier.post(photo_bytes("chelsea.png"), "image/png", params={"topk": "7"})
    body = res.json()
    assert len(body["predictions"]) == 7
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["model_name"] == "efficientnet-lite0"
    assert body["model_version"].startswith("sha256-")
    assert res.headers["X-Request-Id"] == body["request_id"]


def test_request_id_prefers_call_id_and_is_sanitised(classifier):
    res = classifier.post(photo_bytes("flower.jpg"),
               headers={"X-Call-Id": "call-1<script>", "X-Request-Id": "ignored"})
    assert res.headers["X-Request-Id"] == "call-1script"
    res = classifier.post(photo_bytes("flower.jpg"), headers={"X-Request-Id": "r" * 500})
    assert res.headers["X-Request-Id"] == "r" * 64
    res = classifier.post(photo_bytes("flower.jpg"), headers={"X-Request-Id": "<>\"'"})
    assert len(res.headers["X-Request-Id"]) == 32  # nothing safe left: a fresh id


def test_metadata(classifier):
    body = requests.get(classifier.url + "/", timeout=5).json()
    assert body["model_name"] == "efficientnet-lite0" and body["ready"] is True
    assert body["classes"] == 1000 and body["function"] == "classifier"
