"""The gate the rollout controllers call (logslo.gate): Flagger's webhooks pass exactly
when the verdict lets them act, Argo's web metric always answers 200 with the verdict,
and a Loki fault never makes either promote or roll back. In process through Flask's
test client, and once over HTTP on the real waitress server with the controllers' own
payloads."""

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from logslo.gate import CONTRACT_KEYS, MAX_BODY_BYTES, make_app
from watch_docs import DOCS, HOLDS, PROMOTES, WAITS, StubWatches

HOOKS = ("rollback", "confirm-promotion", "rollout")
HERE = Path(__file__).resolve().parent
SLO = HERE.parents[1] / "slo"


@pytest.fixture
def watches():
    return StubWatches()


@pytest.fixture
def client(watches):
    return make_app(watches, log=False).test_client()


def strict_json(response):
    """The body as JSON, refusing NaN/Infinity (Go's decoder, Argo's, refuses them)."""
    assert response.mimetype == "application/json", response.data

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant} in {response.data!r}")

    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def flagger(client, hook, name, namespace="openfaas-fn", **extra):
    payload = {"name": name, "namespace": namespace, "phase": "Progressing", "checksum": "6f8b9c",
               "metadata": {"function": "classifier"}, **extra}
    return client.post(f"/flagger/{hook}", json=payload)


# -- Flagger ------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", sorted(DOCS))
def test_rollback_passes_exactly_on_hold(client, state):
    """A 2xx from the rollback hook makes Flagger roll back at once: only a hold may."""
    response = flagger(client, "rollback", state)
    body = strict_json(response)
    assert response.status_code == (200 if state in HOLDS else 409), body
    assert body["passed"] is (state in HOLDS)
    assert body["verdict"] == DOCS[state]["verdict"] and body["reason"] == DOCS[state]["reason"]


@pytest.mark.parametrize("state", sorted(DOCS))
def test_confirm_promotion_passes_only_on_promote(client, state):
    """Anything but promote keeps Flagger waiting (it asks again each interval)."""
    response = flagger(client, "confirm-promotion", state)
    assert response.status_code == (200 if state in PROMOTES else 409), response.data
    assert strict_json(response)["passed"] is (state in PROMOTES)


@pytest.mark.parametrize("state", sorted(DOCS))
def test_rollout_check_fails_only_on_hold(client, state):
    """A failing rollout hook counts toward Flagger's threshold and ends in a rollback:
    a Loki fault, an undecided or broken watch must not fail it."""
    response = flagger(client, "rollout", state)
    assert response.status_code == (409 if state in HOLDS else 200), response.data


@pytest.mark.parametrize("state", ["loki-429", "loki-down", "broken"])
def test_a_data_fault_neither_promotes_nor_rolls_back_and_says_which(client, state):
    answers = {hook: flagger(client, hook, state) for hook in HOOKS}
    assert {hook: r.status_code for hook, r in answers.items()} == {
        "rollback": 409, "confirm-promotion": 409, "rollout": 200}
    for response in answers.values():
        body = strict_json(response)
        assert body["data_fault"] == DOCS[state]["data_fault"] and body["fault_kind"] == DOCS[state]["fault_kind"]


def test_a_failed_hook_is_a_409_never_a_5xx(client):
    """Flagger's client retries a 5xx; nothing failed when the gate says wait."""
    for state in WAITS:
        for hook in ("rollback", "confirm-promotion"):
            assert flagger(client, hook, state).status_code == 409


def test_flagger_metadata_reaches_the_watch_and_nothing_else(client, watches):
    response = client.post("/flagger/rollback", json={
        "name": "watching", "namespace": "openfaas-fn", "phase": "Progressing", "checksum": "6f8b9c",
        "metadata": {"function": "classifier", "baseline": "v1", "candidate": "v2", "token": "16688eb5e9f289f1991c",
                     "cmd": "hey -z 1m", "revision": ""}})
    assert response.status_code == 409
    # the payload's checksum names the revision (an empty metadata value is no value)
    assert watches.calls == [("openfaas-fn", "watching", {"function": "classifier", "baseline": "v1",
                                                           "candidate": "v2", "revision": "6f8b9c"})]


@pytest.mark.parametrize("body, why", [
    (b"not json", "not a JSON object"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"namespace": "openfaas-fn"}', "name"),
    (b'{"name": "watching"}', "namespace"),
    (b'{"name": "", "namespace": "openfaas-fn"}', "name"),
    (b'{"name": "Watching", "namespace": "openfaas-fn"}', "name"),
    (b'{"name": "watching", "namespace": "openfaas-fn/../x"}', "namespace"),
    (b'{"name": 7, "namespace": "openfaas-fn"}', "name"),
    (b'{"name": "watching", "namespace": "openfaas-fn", "metadata": "classifier"}', "metadata"),
    (b'{"name": "watching", "namespace": "openfaas-fn", "metadata": {"function": 3}}', "function"),
])
@pytest.mark.parametrize("hook", HOOKS)
def test_a_bad_payload_is_a_400_json_error_and_asks_no_watch(client, watches, hook, body, why):
    response = client.post(f"/flagger/{hook}", data=body, content_type="application/json")
    assert response.status_code == 400
    assert why in strict_json(response)["error"]
    assert watches.calls == []


@pytest.mark.parametrize("path", [f"/flagger/{hook}" for hook in HOOKS])
def test_an_unknown_canary_is_a_404_everywhere(client, path):
    response = client.post(path, json={"name": "nobody", "namespace": "openfaas-fn"})
    assert response.status_code == 404
    assert strict_json(response)["error"] == "unknown canary openfaas-fn/nobody"
    response = client.get("/argo/openfaas-fn/nobody")
    assert response.status_code == 404 and "unknown canary" in strict_json(response)["error"]


# -- Argo Rollouts ------------------------------------------------------------------------------

@pytest.mark.parametrize("state", sorted(DOCS))
def test_argo_always_answers_200_with_the_verdict_and_figures(client, state):
    """A non-2xx would be a measurement Error, and errors in a row abort the rollout."""
    response = client.get(f"/argo/openfaas-fn/{state}")
    assert response.status_code == 200
    body, doc = strict_json(response), DOCS[state]
    for key in ("verdict", "final", "reason", "baseline", "candidate", "requests", "data_fault", "fault_kind",
                "decided_look"):
        assert body[key] == doc[key], key
    assert body["contracts"] == [{key: c[key] for key in CONTRACT_KEYS} for c in doc["contracts"]]
    assert "looks" not in body  # the figures, not the watch's whole history


def test_argo_reads_metadata_from_the_query_or_a_json_body(client, watches):
    client.get("/argo/openfaas-fn/watching?function=classifier&revision=5d8f9c7b6&other=x")
    client.post("/argo/openfaas-fn/watching", json={"baseline": "v1", "candidate": "v2", "key": "string value"})
    client.post("/argo/openfaas-fn/watching")  # POST with no body: no metadata
    assert watches.calls == [("openfaas-fn", "watching", {"function": "classifier", "revision": "5d8f9c7b6"}),
                             ("openfaas-fn", "watching", {"baseline": "v1", "candidate": "v2"}),
                             ("openfaas-fn", "watching", {})]
    response = client.post("/argo/openfaas-fn/watching", data=b"verdict?", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in strict_json(response)["error"]


def test_non_finite_figures_go_out_as_null(watches):
    doc = json.loads(json.dumps(DOCS["watching"]))
    doc["contracts"][0].update(estimate=float("nan"), low=float("-inf"), high=float("inf"))
    client = make_app(StubWatches(docs={"odd": doc}), log=False).test_client()
    contract = strict_json(client.get("/argo/openfaas-fn/odd"))["contracts"][0]
    assert (contract["estimate"], contract["low"], contract["high"]) == (None, None, None)


# -- the gate itself, and its errors ------------------------------------------------------------

def test_health_and_readiness_do_not_ask_the_watches():
    """Ready whatever Loki does: an unready gate has no endpoints, and a controller that
    cannot reach it fails its check."""
    class Broken:
        def document(self, *args):
            raise AssertionError("asked")

    client = make_app(Broken(), log=False).test_client()
    for path in ("/healthz", "/ready"):
        response = client.get(path)
        assert response.status_code == 200 and strict_json(response)["status"] in ("ok", "ready")


def test_a_failing_watch_is_a_500_json_without_its_message(capsys):
    class Failing:
        def document(self, *args):
            raise RuntimeError("secret detail from the watch")

    client = make_app(Failing(), log=False).test_client()
    response = client.get("/argo/openfaas-fn/watching")
    assert response.status_code == 500
    assert strict_json(response) == {"error": "internal error: RuntimeError"}
    assert "secret detail" in capsys.readouterr().err  # the traceback goes to the log


def test_a_watch_answering_no_document_is_a_500():
    class Wrong:
        def document(self, *args):
            return "promote"

    client = make_app(Wrong(), log=False).test_client()
    assert client.post("/flagger/confirm-promotion", json={"name": "a", "namespace": "b"}).status_code == 500


def test_unknown_routes_and_methods_answer_json_listing_the_routes(client):
    response = client.post("/flagger/promote", json={"name": "promote", "namespace": "openfaas-fn"})
    assert response.status_code == 404
    routes = strict_json(response)["routes"]
    assert "POST /flagger/confirm-promotion" in routes and "GET POST /argo/<namespace>/<name>" in routes
    response = client.get("/flagger/rollback")
    assert response.status_code == 405 and "POST /flagger/rollback" in strict_json(response)["routes"]


def test_a_body_too_large_for_a_webhook_is_a_413_json(client, watches):
    response = client.post("/flagger/rollout", data=b" " * (MAX_BODY_BYTES + 1), content_type="application/json")
    assert response.status_code == 413 and "error" in strict_json(response)
    assert watches.calls == []


def test_one_json_log_line_per_request(watches):
    out = io.StringIO()
    client = make_app(watches, log=out).test_client()
    flagger(client, "rollback", "hold")
    client.get("/argo/openfaas-fn/nobody")
    client.get("/healthz")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["method"], line["path"], line["status"], line.get("verdict")) for line in lines] == [
        ("POST", "/flagger/rollback", 200, "hold"), ("GET", "/argo/openfaas-fn/nobody", 404, None),
        ("GET", "/healthz", 200, None)]
    assert all(set(line) <= {"ts", "method", "path", "status", "ms", "verdict"} for line in lines)


def test_no_log_line_when_logging_is_off(watches, capsys):
    make_app(watches, log=False).test_client().get("/healthz")
    assert capsys.readouterr().out == ""


# -- over HTTP, on waitress, with the controllers' own payloads -----------------------------------

# the gate as `torchfaas-slo serve` runs it: gate.serve() on waitress, in a process of its
# own, over a stub that says in `reason` what it was asked
SERVE = """
import json, sys
from watch_docs import StubWatches
from logslo.gate import make_app, serve

class Echo(StubWatches):
    def document(self, namespace, name, metadata):
        doc = super().document(namespace, name, metadata)
        doc["reason"] = json.dumps([namespace, name, metadata], sort_keys=True)
        return doc

serve(make_app(Echo(by_name=json.loads(sys.argv[1]))), host="127.0.0.1", port=0, threads=2)
"""


@pytest.fixture
def server():
    """The real gate on a free port; the stub names Flagger's example canary. Yields its
    URL and a function that stops it and returns the lines it logged."""
    names = {"podinfo": "hold", "classifier": "promote", "fn-data-fault": "loki-429"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SLO), str(HERE)])}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, json.dumps(names)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first, proc.communicate(timeout=10)[1]
        listening = json.loads(first)
        assert listening["event"] == "gate_listening" and listening["port"] > 0

        def stop():
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
            return [json.loads(line) for line in out.splitlines()]

        yield f"http://127.0.0.1:{listening['port']}", stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def call(url, data=None, headers=None, method=None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get_content_type(), err.read()


def asked(body):
    """What the stub watch was asked: [namespace, name, metadata]."""
    return json.loads(json.loads(body)["reason"])


def test_the_real_server_answers_flaggers_and_argos_own_requests(server):
    url, stop = server
    # Flagger's webhook payload, as its documentation gives it (docs/usage/webhooks.md),
    # POSTed with the Content-Type its client sets
    payload = b"""{
    "name": "podinfo",
    "namespace": "test",
    "phase": "Progressing",
    "metadata": {
        "test":  "all",
        "token":  "16688eb5e9f289f1991c"
    }
}"""
    headers = {"Content-Type": "application/json"}
    answers = {hook: call(f"{url}/flagger/{hook}", payload, headers) for hook in HOOKS}
    assert {hook: a[0] for hook, a in answers.items()} == {"rollback": 200, "confirm-promotion": 409, "rollout": 409}
    assert all(a[1] == "application/json" and json.loads(a[2])["verdict"] == "hold" for a in answers.values())
    assert all(asked(a[2]) == ["test", "podinfo", {}] for a in answers.values())

    # Flagger's payload today also carries the canary's checksum
    status, _, body = call(f"{url}/flagger/confirm-promotion", json.dumps({
        "name": "classifier", "namespace": "openfaas-fn", "phase": "Progressing", "checksum": "75d8b7f6c4",
        "metadata": {"function": "classifier"}}).encode(), headers)
    assert status == 200 and json.loads(body)["passed"] is True
    assert asked(body) == ["openfaas-fn", "classifier", {"function": "classifier", "revision": "75d8b7f6c4"}]

    # Argo's web metric: a GET with no body (the default method), then the documented POST
    status, kind, body = call(f"{url}/argo/openfaas-fn/fn-data-fault?revision=5d8f9c7b6")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body)["verdict"] == "watching" and json.loads(body)["fault_kind"] == "rate_limited"
    assert asked(body) == ["openfaas-fn", "fn-data-fault", {"revision": "5d8f9c7b6"}]
    status, _, body = call(f"{url}/argo/openfaas-fn/classifier", b'{"key": "string value"}', headers, "POST")
    assert status == 200 and json.loads(body)["verdict"] == "promote"

    # the probes, and an unknown canary
    assert call(f"{url}/healthz")[0] == 200 and call(f"{url}/ready")[0] == 200
    assert call(f"{url}/argo/openfaas-fn/nobody")[0] == 404

    # one JSON line per request on stdout
    lines = stop()
    assert [(line["path"], line["status"]) for line in lines][-4:] == [
        ("/argo/openfaas-fn/classifier", 200), ("/healthz", 200), ("/ready", 200), ("/argo/openfaas-fn/nobody", 404)]
    assert len(lines) == 9
