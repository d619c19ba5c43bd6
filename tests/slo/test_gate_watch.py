"""`torchfaas-slo serve` end to end: the real gate process, its watches reading a log that
grows while they look (the committed log of identical code written out ten times faster
than it was recorded, each line stamped with the time it is written), asked by the
payloads Flagger and Argo Rollouts send. The identical candidate is promoted (Flagger's
confirm-promotion hook passes, rollback never does); a 25% slower one is rolled back
during the watch (rollback passes, confirm-promotion never does)."""

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import requests

from logslo.newlines import line_time
from test_slo_runner import REPO

LOG = REPO / "slo" / "calibration" / "identical-code.jsonl.gz"
FEATURE = REPO / "functions" / "classifier" / "compare" / "canary.feature"
BASE, CAND = "base-5a0ed7050d97", "candidate-5a0ed7050d97-dirty"
SPEED = 10  # the log replayed ten times faster than it was recorded
SKIP_S = 60  # the recorded run's own cold start (both processes) is not replayed


class GrowingLog(threading.Thread):
    """Writes the recorded lines to `path` as their (sped-up) time comes, stamped now."""

    def __init__(self, path, latency_factor=1.0):
        super().__init__(daemon=True)
        lines = [json.loads(raw) for raw in gzip.open(LOG, "rt")]
        first = min(line_time(line) for line in lines) + SKIP_S
        self.lines = sorted((((line_time(line) - first) / SPEED, line) for line in lines
                             if line_time(line) >= first), key=lambda pair: pair[0])
        self.path, self.factor, self.stop = path, latency_factor, threading.Event()
        path.write_text("")

    def run(self):
        start = time.time()
        with open(self.path, "a") as handle:
            for offset, line in self.lines:
                wait = start + offset - time.time()
                if wait > 0 and self.stop.wait(wait):
                    return
                if self.factor != 1.0 and line["model_version"] == CAND:
                    line = {**line, "latency_ms": round(line["latency_ms"] * self.factor, 3)}
                stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                handle.write(json.dumps({**line, "timestamp": stamp}) + "\n")
                handle.flush()


def start_gate(tmp_path, log, extra_env=None):
    """The gate over `log`, with the classifier's contracts at a warm-up of 3 s (the log
    runs ten times faster), a look a second, a 40 s deadline."""
    contracts = tmp_path / "functions" / "classifier" / "compare"
    contracts.mkdir(parents=True)
    text = FEATURE.read_text()
    assert "the first 30 seconds of each version" in text
    (contracts / "canary.feature").write_text(text.replace("the first 30 seconds", "the first 3 seconds"))
    env = {**os.environ, "LOG_FILE": str(log), "WATCH_INTERVAL": "1", "WATCH_DEADLINE": "40"}
    env.pop("LOKI_URL", None)
    env.update(extra_env or {})
    gate = subprocess.Popen([sys.executable, "-m", "logslo", "serve", "--port", "0", "--host", "127.0.0.1",
                             "--functions-dir", str(tmp_path / "functions"), "--report-dir",
                             str(tmp_path / "reports")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = json.loads(gate.stdout.readline())
    assert first["event"] == "gate_listening", first
    return gate, f"http://127.0.0.1:{first['port']}"


def flagger(url, hook, metadata):
    """What Flagger POSTs to a webhook (its docs' payload)."""
    payload = {"name": "classifier", "namespace": "openfaas-fn", "phase": "Progressing",
               "checksum": "85d557f47b", "metadata": metadata}
    return requests.post(f"{url}/flagger/{hook}", json=payload, timeout=10)


def ask_until(url, metadata, hook, timeout_s=60):
    """Each second, as a controller's analysis does: every hook's answers, until `hook` passes."""
    seen = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        answers = {h: flagger(url, h, metadata) for h in ("rollout", "confirm-promotion", "rollback")}
        seen.append({h: (r.status_code, r.json()["verdict"]) for h, r in answers.items()})
        if answers[hook].status_code == 200:
            return seen
        time.sleep(1)
    raise AssertionError(f"{hook} never passed: {seen[-3:]}")


def run_canary(tmp_path, latency_factor, metadata, hook):
    log = tmp_path / "classifier.log"
    writer = GrowingLog(log, latency_factor)
    gate, url = start_gate(tmp_path, log)
    try:
        writer.start()
        seen = ask_until(url, metadata, hook)
        # the hooks of one round are asked one after the other: the verdict may come
        # between them, so the round after the decision is asked whole once more
        seen.append({h: (r.status_code, r.json()["verdict"]) for h, r in
                     ((h, flagger(url, h, metadata)) for h in ("rollout", "confirm-promotion", "rollback"))})
        argo = requests.get(f"{url}/argo/openfaas-fn/classifier", timeout=10).json()
    finally:
        writer.stop.set()
        gate.terminate()
        gate.wait(timeout=20)
    return seen, argo


def test_the_gate_promotes_identical_code_found_in_the_log(tmp_path):
    """No versions in the metadata: the gate finds the two in the log (the busier one the
    baseline), watches, and confirms the promotion once every contract is met."""
    seen, argo = run_canary(tmp_path, 1.0, {}, "confirm-promotion")
    assert seen[-1] == {"rollout": (200, "promote"), "confirm-promotion": (200, "promote"),
                        "rollback": (409, "promote")}
    assert all(answer["rollback"][0] == 409 and answer["rollout"][0] == 200 for answer in seen)  # never a hold
    assert argo["verdict"] == "promote" and {argo["baseline"], argo["candidate"]} == {BASE, CAND}
    assert (tmp_path / "reports" / "openfaas-fn" / "classifier" / "watch.html").is_file()


def test_the_gate_rolls_back_a_slower_canary_during_the_watch(tmp_path):
    seen, argo = run_canary(tmp_path, 1.25, {"baseline": BASE, "candidate": CAND}, "rollback")
    assert seen[-1] == {"rollout": (409, "hold"), "confirm-promotion": (409, "hold"), "rollback": (200, "hold")}
    assert all(answer["confirm-promotion"][0] == 409 for answer in seen)
    assert argo["verdict"] == "hold" and argo["decided_look"] < 40
    latency = next(c for c in argo["contracts"] if c["contract"].startswith("latency of"))
    assert latency["verdict"] == "hold" and latency["low"] > latency["bound"]


FAULT_KINDS = {"down": "unreachable", "slow": "timeout", "429": "rate_limited", "503": "server_error",
               "limit": "refused"}


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_loki_failing_neither_promotes_nor_rolls_back_and_says_why(tmp_path, loki_standin, fault):
    """The gate's watch reads a Loki stand-in (a real HTTP server over the recorded log) that
    fails every query: Flagger's rollback and confirm-promotion hooks never pass, its
    rollout check never fails, and Argo's metric names the fault."""
    log = tmp_path / "classifier.log"
    log.write_text("".join(json.dumps(json.loads(raw)) + "\n" for raw in gzip.open(LOG, "rt")))
    loki = loki_standin(log)
    loki.fault = fault
    gate, url = start_gate(tmp_path, log, {"LOKI_URL": loki.url, "LOKI_TIMEOUT": "1", "WATCH_INTERVAL": "0.5"})
    try:
        metadata = {"baseline": BASE, "candidate": CAND}
        answers, argo = [], {}
        for _ in range(8):
            answers.append({h: flagger(url, h, metadata).status_code
                            for h in ("rollback", "confirm-promotion", "rollout")})
            argo = requests.get(f"{url}/argo/openfaas-fn/classifier", timeout=10).json()
            time.sleep(0.5)
    finally:
        gate.terminate()
        gate.wait(timeout=20)
    assert all(a == {"rollback": 409, "confirm-promotion": 409, "rollout": 200} for a in answers), answers
    assert argo["verdict"] == "watching" and argo["fault_kind"] == FAULT_KINDS[fault], argo
    assert argo["data_fault"] and "decision" in argo["reason"]
