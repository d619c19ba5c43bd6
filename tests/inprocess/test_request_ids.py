"""Request ids: X-Call-Id, else X-Request-Id, else generated; sanitised, length-limited,
echoed in the header, the body and the log line. (Header bytes a real client could
not send through `requests` are sent over a socket in tests/reliability.)"""
import re

import pytest

from support.contract import SAFE_ID


def test_request_id_prefers_call_id_and_is_sanitised(classifier):
    res = classifier.post(b"", "image/jpeg", headers={"X-Call-Id": "call-1<script>", "X-Request-Id": "ignored"})
    assert res.headers["X-Request-Id"] == "call-1script" == res.json["request_id"]
    assert classifier.lines_for("call-1script")
    res = classifier.post(b"", "image/jpeg", headers={"X-Request-Id": "r" * 500})
    assert res.headers["X-Request-Id"] == "r" * 64
    res = classifier.post(b"", "image/jpeg", headers={"X-Request-Id": "<>\"'"})
    assert len(res.headers["X-Request-Id"]) == 32  # nothing safe left: a fresh id


@pytest.mark.parametrize("headers,expected", [
    ({"X-Call-Id": "gw-1", "X-Request-Id": "client-1"}, "gw-1"),
    ({"X-Request-Id": "client-2"}, "client-2"),
    ({"X-Call-Id": '"""', "X-Request-Id": "fallback-ok"}, "fallback-ok"),
    ({"X-Call-Id": "", "X-Request-Id": "empty-call-id"}, "empty-call-id"),
    ({"X-Request-Id": "a b\tc"}, "abc"),
    ({"X-Request-Id": 'x","status":200,"level":"INFO","request_id":"forged'},
     "xstatus:200level:INFOrequest_id:forged"),
    ({"X-Request-Id": "ok.id:with-dashes_and.dots"}, "ok.id:with-dashes_and.dots"),
])
def test_request_id_order_and_sanitising(standin, headers, expected):
    res = standin.post(b"x", headers=headers)
    assert res.status_code == 200
    assert res.headers["X-Request-Id"] == expected and SAFE_ID.match(expected)
    [line] = standin.lines_for(expected)
    assert line["status"] == 200 and line["level"] == "INFO"  # nothing injected


def test_a_generated_id_is_fresh_per_request_and_echoed(standin):
    ids = set()
    for headers in ({}, {"X-Call-Id": "<>", "X-Request-Id": "{}"}, {}):
        res = standin.post(b"x", headers=headers)
        rid = res.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert len(standin.lines_for(rid)) == 1
        ids.add(rid)
    assert len(ids) == 3


def test_every_response_carries_the_id(standin):
    """Errors, metadata, probes and scrapes too."""
    for method, path, status in [("GET", "/ready", 200), ("GET", "/metrics", 200), ("GET", "/", 200),
                                 ("PUT", "/", 405), ("POST", "/x", 404), ("POST", "/", 200)]:
        res = standin.request(method, path, b"x", headers={"X-Request-Id": f"echo-{status}-{path[1:]}"})
        assert res.status_code == status
        assert res.headers["X-Request-Id"] == f"echo-{status}-{path[1:]}"


def test_the_length_limit_is_a_setting(make_function):
    fn = make_function(request_id_max_len=8)
    assert fn.post(b"x", headers={"X-Request-Id": "abcdefghijkl"}).headers["X-Request-Id"] == "abcdefgh"
