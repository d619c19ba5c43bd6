"""Fuzzing the request path: crash inputs kept as regression tests, and a short
coverage-guided campaign (tests/fuzz/fuzz_request.py, atheris) on every CI run.

`make fuzz DURATION=600` runs a long campaign; any input that breaks a property
lands in tests/fuzz/crashes/ and is replayed here from then on.
"""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fuzzkit import ARTIFACTS, CLASSIFIER, Target, check, encode, replay_rss_growth

HERE = Path(__file__).resolve().parent
CRASHES = sorted(p for p in (HERE / "crashes").glob("*") if p.is_file() and not p.name.startswith("."))
CAMPAIGN_SECONDS = int(os.environ.get("FUZZ_CI_SECONDS", "60"))


@pytest.fixture(scope="module")
def target():
    if not (ARTIFACTS / "manifest.json").is_file():
        pytest.fail(f"no classifier artifacts in {ARTIFACTS}: run `make install`")
    t = Target()
    yield t
    t.close()


@pytest.mark.parametrize("crash", CRASHES, ids=[p.name for p in CRASHES])
def test_a_kept_crash_input_no_longer_breaks_a_property(target, crash):
    check(target, crash.read_bytes())


@pytest.mark.parametrize("name,data,status", [
    # found by the first campaign: raw non-UTF-8 bytes in the query string were a 500
    ("raw latin-1 query", encode(b"x", raw_query=b"g\xa0\xf6d"), 400),
    ("json base64 of a non-image", encode(b"hello", mode=1), 400),
    ("json that is a list", encode(b"[1, 2]", content_type=5, mode=2), 400),
    ("empty body", encode(b""), 400),
    ("gif content type", encode(b"GIF89a", content_type=9), 415),
    ("metrics scrape", encode(b"", route=18), 200),
])
def test_hand_written_cases_hold_the_properties(target, name, data, status):
    assert check(target, data) == status, name


def test_a_short_coverage_guided_campaign_breaks_no_property(tmp_path):
    """CI's campaign: FUZZ_CI_SECONDS (60) of atheris on the request path, seeded with real photos."""
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_request.py"), "--seconds", str(CAMPAIGN_SECONDS),
                           "--work", str(tmp_path), "--crashes", str(tmp_path / "crashes")],
                          capture_output=True, text=True, timeout=CAMPAIGN_SECONDS + 120)
    summary_lines = [line for line in proc.stdout.splitlines() if line.startswith("FUZZ SUMMARY ")]
    assert summary_lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_lines[-1].removeprefix("FUZZ SUMMARY "))
    print(summary)
    assert proc.returncode == 0 and not summary["crash_inputs"], proc.stdout[-5000:]
    assert summary["executions"] >= 200, summary  # it really ran
    assert summary["coverage_edges"] and summary["corpus_inputs"] > 20, summary
    assert summary["replay"]["executions"] >= 6000 and summary["replay"]["inputs"] > 20, summary["replay"]


def small_jpeg(path: Path) -> bytes:
    with Image.open(path) as image:
        image.thumbnail((128, 128))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def test_the_leak_check_finds_memory_kept_per_request(target):
    """The campaign's leak check, on the same replay with and without the app keeping 64 KiB
    per request. Compared with each other: pytest keeps every log record of a test too."""
    photos = [encode(small_jpeg(p), content_type=1) for p in sorted((CLASSIFIER / "testdata").glob("*.jpg"))]
    kept, app = [], target.app

    def leaking_app(environ, start_response):
        kept.append(bytearray(65536))
        return app(environ, start_response)

    clean = replay_rss_growth(target, photos, executions=600, settle_passes=3)
    target.app = leaking_app
    try:
        leaking = replay_rss_growth(target, photos, executions=600, settle_passes=3)
    finally:
        target.app = app
    assert len(kept) == (3 + 2 * 75) * len(photos), leaking
    found = leaking["leak_kib_per_request"] - clean["leak_kib_per_request"]
    assert 45 <= found <= 83, (clean, leaking)  # 64 KiB, within 30%: the allocator reuses free pages
