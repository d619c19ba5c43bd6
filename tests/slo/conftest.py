"""Shared pieces of the SLO tests: the Loki fixtures' log and answers (copied into
tests/slo/fixtures/loki, so a plain clone has them), a fake Loki server (canned answers)
and a Loki stand-in (answers computed from a log file, with faults)."""

import json
from pathlib import Path

import pytest

from fake_loki import FakeLoki

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "loki"


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
