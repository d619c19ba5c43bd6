"""Shared pieces of the SLO tests: the Loki fixtures' log and answers (copied into
tests/slo/fixtures/loki, so a plain clone has them), a fake Loki server (canned answers)
and a Loki stand-in (answers computed from a log file, with faults)."""

import json
import re
import time
from pathlib import Path

import pytest

from fake_loki import FakeLoki
from logslo.logfile import parse_rfc3339_ns

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "loki"
NS = 1_000_000_000
_TIMESTAMP = re.compile(r'("timestamp": ")([^"]+)(")')


def shift_line(line: str, shift_s: int) -> str:
    """The line with its `timestamp` moved later by shift_s, written with the same digits."""
    def moved(match):
        text = match.group(2)
        digits = len(text.split(".", 1)[1]) - 1 if "." in text else 0
        seconds, fraction = divmod(parse_rfc3339_ns(text) + shift_s * NS, NS)
        out = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return match.group(1) + out + ("." + str(fraction).rjust(9, "0")[:digits] if digits else "") + "Z" + \
            match.group(3)
    return _TIMESTAMP.sub(moved, line, count=1)


@pytest.fixture(scope="session")
def fixtures_dir():
    missing = [name for name in ("answers.json", "requests.jsonl") if not (FIXTURES / name).is_file()]
    if missing:  # they are part of the repository: missing is a failure, never a skip
        pytest.fail(f"Loki fixtures missing from {FIXTURES}: {', '.join(missing)}")
    return FIXTURES


@pytest.fixture(scope="session")
def answers(fixtures_dir):
    return json.loads((fixtures_dir / "answers.json").read_text())


@pytest.fixture(scope="session")
def fixture_log(fixtures_dir):
    return str(fixtures_dir / "requests.jsonl")


@pytest.fixture(scope="session")
def metric_answers(fixtures_dir):
    """What a real Loki 3.7.6 answered to aggregate queries (README.md beside it)."""
    return json.loads((fixtures_dir / "metric-answers.json").read_text())


@pytest.fixture(scope="session")
def shifted_log(fixture_log, metric_answers, tmp_path_factory):
    """The fixture log as metric-answers.json was recorded: every timestamp moved later."""
    path = tmp_path_factory.mktemp("shifted") / "requests.jsonl"
    with open(fixture_log, encoding="utf-8") as src, open(path, "w", encoding="utf-8") as out:
        for line in src:
            out.write(shift_line(line, metric_answers["log_time_shift_s"]))
    return str(path)


@pytest.fixture
def fake_loki():
    servers = []

    def start(answer, delay_s=0.0):
        server = FakeLoki(answer, delay_s).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def loki_standin():
    """`loki_standin(log_path, **options)`: a started Loki stand-in over that JSONL file
    (tests/slo/loki_standin.py: real HTTP, answers computed by FileBackend, switchable
    faults), stopped after the test, which fails if the stand-in itself broke."""
    from loki_standin import LokiStandIn

    servers = []

    def start(log_path, **options):
        server = LokiStandIn(log_path, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    errors = [error for server in servers for error in server.errors]
    assert not errors, f"the Loki stand-in itself failed: {errors}"
