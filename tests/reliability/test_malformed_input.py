"""Malformed input on a real server process: memory stays bounded over hundreds of
hostile bodies, bombs are refused before they are decoded, and hostile bytes in
headers and paths (sent over a raw socket, as waitress parses them) never reach
the log unsanitised.

The corpus itself (every case's status, code and one log line) is checked in
tests/inprocess/test_classifier.py; here it is sent for rounds to watch the RSS.
"""
import json
import uuid

import pytest
import requests

from faultkit import raw_post, wait_line
from loadkit.localrun import proc_kib
from loadkit.photos import photo_bytes
from support.classifier import MAX_PIXELS
from support.contract import SAFE_ID, assert_json_error
from support.corpus import check_answer, corpus, jpeg_with_size, png_bomb, webp_with_size

# How much the resident set may grow over BAD_ROUNDS rounds of the corpus, after
# WARM_ROUNDS rounds (PIL/libjpeg/libwebp state, Python caches). What it catches:
# requests that keep their bodies (those read whole keep ~6 MiB a round: 36 MiB
# over six: 43 MiB measured with such a leak put in on purpose, 7-8 MiB without)
# or what they decoded.
RSS_GROWTH_BOUND_MIB = 20
WARM_ROUNDS = 3
BAD_ROUNDS = 6
# Two sources of growth that are not requests keeping memory are turned off here,
# so that the bound can be tight enough to catch one:
# - glibc gives each new thread that allocates its own arena, up to 8 per core, and
#   waitress runs dozens of threads: the RSS of a healthy server climbs for ~500
#   requests (good or bad) as arenas are created and filled, then levels off (~65
#   MiB here; 70 MiB on a CI run failed the earlier bound of 64);
# - PyTorch's huge-page blocks (THP_MEM_ALLOC_ENABLE) arrive 2 MiB at a time:
#   steps of up to ~20 MiB in one round.
# With both off the corpus moves the RSS ~1 MiB a round. The arena limit is the served
# default (2) said again here, so the bound does not move with it; the served default
# keeps huge pages, which save CPU (docs/settings.md).
ALLOCATOR_ENV = {"MALLOC_ARENA_MAX": "2", "THP_MEM_ALLOC_ENABLE": "0"}


@pytest.fixture(scope="module")
def cases():
    return corpus()


@pytest.fixture(scope="module")
def classifier_env() -> dict:
    """This module's classifier process runs with steady allocators (above)."""
    return ALLOCATOR_ENV


def send(fn, name, body, content_type, params, rid):
    headers = {"X-Request-Id": rid}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(fn.url + "/", data=body, params=params, headers=headers, timeout=60)


def run_round(fn, cases, tag: str) -> list[str]:
    """Send every case once; check its answer; return the ids sent."""
    ids = []
    for case in cases:
        name, body, content_type, params, _, _ = case
        safe_name = name.replace("/", ".").replace("+", ".")
        rid = f"{tag}-{safe_name}"[:56] + "-" + uuid.uuid4().hex[:6]
        res = send(fn, name, body, content_type, params, rid)
        ids.append(rid)
        assert res.headers["X-Request-Id"] == rid
        check_answer(case, res)
    return ids


def test_memory_stays_bounded_over_hundreds_of_bad_requests(classifier, cases):
    pid = classifier.proc.pid
    for i in range(WARM_ROUNDS):
        run_round(classifier, cases, f"warm{i}")
    before = proc_kib(pid, "VmRSS")
    sent = 0
    for i in range(BAD_ROUNDS):
        sent += len(run_round(classifier, cases, f"r{i}"))
    after = proc_kib(pid, "VmRSS")
    assert sent >= 500
    growth_mib = (after - before) / 1024
    print(f"RSS {before / 1024:.0f} MiB -> {after / 1024:.0f} MiB after {sent} bad requests")
    assert growth_mib < RSS_GROWTH_BOUND_MIB, f"RSS grew {growth_mib:.0f} MiB over {sent} bad requests"
    assert classifier.post(photo_bytes("coffee.png"), "image/png").status_code == 200


def test_a_decompression_bomb_is_refused_before_it_is_decoded(classifier):
    """The forged headers claim GB of pixels: the answer comes without allocating them."""
    pid = classifier.proc.pid
    before = proc_kib(pid, "VmRSS")
    for body, kind in [(png_bomb(10_000, 10_000), "image/png"), (jpeg_with_size(65_000, 65_000), "image/jpeg"),
                       (webp_with_size(16_383, 16_383), "image/webp")]:
        res = classifier.post(body, kind)
        assert_json_error(res, 413, "image_too_large")
        assert str(MAX_PIXELS) in res.json()["error"]["message"]
    # 16383^2 RGBA alone would be 1 GiB; allow 64 MiB of noise
    assert (proc_kib(pid, "VmRSS") - before) / 1024 < 64


# Hostile header values, sent byte for byte over a raw socket (requests would refuse them).
HOSTILE_IDS = [
    ("quotes-and-backslashes", b'a"b\\c\'d'),
    ("json-injection", b'x","status":200,"level":"INFO","request_id":"forged'),
    ("utf8", "\u00fcn\u00efc\u00f8de-\u2603-id".encode()),
    ("latin1-bytes", b"caf\xe9-\xff\xfe"),
    ("very-long", b"L" * 6000),
    ("html", b"<script>alert(1)</script>"),
    ("spaces-tabs", b"a b\tc"),
    ("only-hostile", b'"\\"{}[]<>'),
    ("crlf-in-value", b"abc%0d%0aX-Injected: 1"),
    ("percent", b"%22%0a%7B"),
]


@pytest.mark.parametrize("name,value", HOSTILE_IDS, ids=[n for n, _ in HOSTILE_IDS])
def test_hostile_request_ids_are_sanitised_in_response_and_log(classifier, name, value):
    marker = uuid.uuid4().hex[:8].encode()
    res = raw_post(classifier.port, b"", [(b"Content-Type", b"image/jpeg"),
                                          (b"X-Request-Id", value + b"-" + marker)])
    payload = assert_json_error(res, 400, "empty_body")
    rid = payload["request_id"]
    assert SAFE_ID.match(rid) and marker.decode() in rid or len(value) > 50
    found = wait_line(classifier, rid)
    assert len(found) == 1 and found[0]["request_id"] == rid
    raw = [line for line in classifier.raw_lines if rid in line]
    assert len(raw) == 1 and raw[0].startswith("{") and raw[0].endswith("}")
    assert found[0]["status"] == 400 and found[0]["level"] == "WARNING"  # nothing injected


def test_hostile_id_headers_fall_back_in_order(classifier):
    # X-Call-Id that sanitises to nothing: X-Request-Id is used; both empty: a new id
    res = raw_post(classifier.port, b"", [(b"X-Call-Id", b'"""'), (b"X-Request-Id", b"fallback-ok")])
    assert res.json()["request_id"] == "fallback-ok"
    res = raw_post(classifier.port, b"", [(b"X-Call-Id", b"<>"), (b"X-Request-Id", b"{}")])
    rid = res.json()["request_id"]
    assert len(rid) == 32 and SAFE_ID.match(rid)
    assert len(wait_line(classifier, rid)) == 1


def test_control_characters_in_headers_never_reach_the_log(classifier):
    """Control characters (ESC, NUL, DEL) in a header value are malformed HTTP: waitress
    answers its own plain-text 400 before the app runs (no line, as docs/log-format.md says).
    Obsolete line folding is unfolded by waitress and sanitised by the app. Either way
    no raw control character or newline reaches the log and the process keeps serving."""
    before = len(classifier.raw_lines)
    for value in (b"\x1b[31mred\x1b[0m", b"nul\x00byte", b"del\x7fbyte"):
        res = raw_post(classifier.port, b"", [(b"X-Request-Id", value)])
        assert res.status == 400 and res.headers["content-type"].startswith("text/plain"), res
    res = raw_post(classifier.port, b"", [(b"X-Request-Id", b"abc\r\n folded-part")])
    assert assert_json_error(res, 400)["request_id"] == "abcfolded-part"
    assert len(wait_line(classifier, "abcfolded-part")) == 1
    assert classifier.post(b"", "image/jpeg").status_code == 400  # still serving
    classifier.wait_for_lines("inference", len(classifier.events("inference")) + 1, timeout=2)
    new_lines = classifier.raw_lines[before:]
    assert len(new_lines) == 2  # the folded request and the last one; none for the rejected
    for line in new_lines:
        json.loads(line)
        assert not any(c in line for c in "\x00\x1b\x7f")


def test_hostile_paths_and_tenants_are_sanitised(classifier):
    rid = "hostile-path-" + uuid.uuid4().hex[:8]
    res = raw_post(classifier.port, b"x", [(b"X-Request-Id", rid.encode())],
                   path=b'/%0A%22%7B%22status%22:200/' + b"a" * 3000 + b"/%C3%A9%00")
    assert_json_error(res, 404, "not_found")
    line = wait_line(classifier, rid)[0]
    assert len(line["path"]) <= 128 and "\n" not in line["path"] and '"' not in line["path"]
    rid = "hostile-tenant-" + uuid.uuid4().hex[:8]
    raw_post(classifier.port, b"", [(b"X-Request-Id", rid.encode()),
                                    (b"X-Tenant-Id", b'ev"il}{\\n\xe9 tenant' + b"T" * 500)])
    line = wait_line(classifier, rid)[0]
    assert SAFE_ID.match(line["tenant"]), line["tenant"]
