"""The example manifests in slo/deploy: each parses, carries what its controller's CRD
requires, calls routes the gate serves, and, run against the gate's real answers with
the controller's own rules, rolls back exactly on hold and promotes exactly on promote.

Flagger's rules (pkg/controller/webhook.go, scheduler_hooks.go): a hook passes when the
status is at most 202. Argo Rollouts' (utils/evaluate, analysis/analysis.go): a non-2xx
is an Error measurement; with both conditions set, neither true is Inconclusive; limits
are checked after each measurement as ported in `assess` below."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from logslo.gate import make_app
from watch_docs import DOCS, HOLDS, PROMOTES, WAITS, StubWatches

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "slo" / "deploy"

# from Flagger's CRD (artifacts/flagger/crd.yaml, flagger.app/v1beta1 Canary)
FLAGGER_HOOK_TYPES = {"", "confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout", "event",
                      "rollback", "confirm-traffic-increase"}
FLAGGER_PROVIDERS = {"apisix", "appmesh", "appmesh:v1beta2", "contour", "gatewayapi:v1", "gatewayapi:v1beta1", "gloo",
                     "istio", "knative", "kubernetes", "kuma", "linkerd", "nginx", "osm", "skipper", "smi:v1alpha1",
                     "smi:v1alpha2", "smi:v1alpha3", "traefik"}
FLAGGER_TARGET_KINDS = {"DaemonSet", "Deployment", "Service"}


def load(name):
    docs = [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]
    assert docs, name
    return docs


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [d["kind"] for d in docs])
    return found[0]


@pytest.fixture(scope="module")
def gate_service():
    """The host and port the gate's Service answers at, inside the cluster."""
    service = one(load("gate.yaml"), "Service")
    return f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local", \
        service["spec"]["ports"][0]["port"]


@pytest.fixture
def app():
    return make_app(StubWatches(), log=False)


def gate_path(url, gate_service):
    """The path of `url`, after checking it is the gate's Service."""
    parts = urlsplit(url)
    assert parts.scheme == "http" and (parts.hostname, parts.port) == gate_service, url
    return parts.path, parts.query


def routed(app, path, method):
    """The gate's endpoint for `method path` (raises when the gate serves no such route)."""
    endpoint, _ = app.url_map.bind("gate").match(path, method=method)
    return endpoint


# -- the gate's own manifest --------------------------------------------------------------------

def test_the_gate_deployment_serves_on_its_service_port_with_probes_on_real_routes(app):
    docs = load("gate.yaml")
    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    assert deployment["apiVersion"] == "apps/v1" and service["apiVersion"] == "v1"
    assert {d["metadata"]["namespace"] for d in docs} == {"openfaas"}
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["args"][:3] == ["serve", "--port", "9090"]
    assert "REPLACE" in container["image"]  # a placeholder nobody can mistake for a published image
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["port"] == 9090 and ports[service["spec"]["ports"][0]["targetPort"]] == 9090
    assert {e["name"] for e in container["env"]} >= {"LOKI_URL"}
    assert routed(app, container["readinessProbe"]["httpGet"]["path"], "GET") == "ready"
    assert routed(app, container["livenessProbe"]["httpGet"]["path"], "GET") == "healthz"


def test_the_gate_configmap_carries_the_functions_comparison_contracts_verbatim():
    docs = load("gate.yaml")
    configmap = one(docs, "ConfigMap")
    compare = REPO / "functions" / "classifier" / "compare"
    assert configmap["data"] == {p.name: p.read_text() for p in sorted(compare.glob("*.feature"))}
    # mounted where the watch reads a function's contracts, relative to the working directory
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    (name,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
    assert mounts[name] == container["workingDir"] + "/functions/classifier/compare"


# -- Flagger ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def canary():
    return one(load("flagger-canary.yaml"), "Canary")


def test_the_flagger_canary_has_what_its_crd_requires(canary):
    assert canary["apiVersion"] == "flagger.app/v1beta1"
    assert canary["metadata"] == {"name": "classifier", "namespace": "openfaas-fn"}
    spec = canary["spec"]
    assert {"targetRef", "analysis"} <= set(spec)
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "classifier"}
    assert spec["targetRef"]["kind"] in FLAGGER_TARGET_KINDS
    assert spec["provider"] in FLAGGER_PROVIDERS
    assert isinstance(spec["service"]["port"], int)
    analysis = spec["analysis"]
    assert all(isinstance(analysis[k], int) for k in ("threshold", "maxWeight", "stepWeight"))
    assert 0 < analysis["stepWeight"] <= analysis["maxWeight"] <= 100
    for hook in analysis["webhooks"]:
        assert {"name", "url"} <= set(hook) and hook["type"] in FLAGGER_HOOK_TYPES
        # the CRD's metadata is a map of strings
        assert all(isinstance(v, str) for v in hook.get("metadata", {}).values())
        assert hook["metadata"]["function"] == "classifier"


def seconds(duration):
    value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()
    return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_the_rollout_hooks_fit_in_the_analysis_interval(canary):
    """Flagger: the rollout hooks' timeouts together must stay under the interval."""
    analysis = canary["spec"]["analysis"]
    rollout = [h for h in analysis["webhooks"] if h["type"] in ("rollout", "")]
    assert sum(seconds(h.get("timeout", "10s")) for h in rollout) < seconds(analysis["interval"])


def test_the_flagger_webhooks_call_the_gates_routes_of_their_own_type(canary, app, gate_service):
    by_type = {}
    for hook in canary["spec"]["analysis"]["webhooks"]:
        path, query = gate_path(hook["url"], gate_service)
        assert not query
        by_type[hook["type"]] = routed(app, path, "POST")  # Flagger always POSTs
    assert by_type == {"rollout": "flagger_rollout", "confirm-promotion": "flagger_confirm_promotion",
                       "rollback": "flagger_rollback"}


def flagger_iteration(app, canary, state, gate_service):
    """What Flagger does in one analysis interval when the watch is in `state`, by its
    rules: roll back if a rollback hook passes, count a failed check if a rollout hook
    fails, promote if the confirm-promotion hooks pass."""
    client = make_app(StubWatches(by_name={"classifier": state}), log=False).test_client()
    passed = {}
    for hook in canary["spec"]["analysis"]["webhooks"]:
        path, _ = gate_path(hook["url"], gate_service)
        payload = {"name": canary["metadata"]["name"], "namespace": canary["metadata"]["namespace"],
                   "phase": "Progressing", "checksum": "75d8b7f6c4", "metadata": hook.get("metadata", {})}
        passed[hook["type"]] = client.post(path, json=payload).status_code <= 202  # webhook.go: > 202 fails
    return {"rolls back": passed["rollback"], "failed check": not passed["rollout"],
            "may promote": passed["confirm-promotion"]}


@pytest.mark.parametrize("state", sorted(DOCS))
def test_flagger_rolls_back_exactly_on_hold_and_promotes_exactly_on_promote(app, canary, state, gate_service):
    action = flagger_iteration(app, canary, state, gate_service)
    assert action == {"rolls back": state in HOLDS, "failed check": state in HOLDS, "may promote": state in PROMOTES}


# -- Argo Rollouts ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def argo():
    return load("argo-analysistemplate.yaml")


def templates(argo):
    return {d["metadata"]["name"]: d for d in argo if d["kind"] == "AnalysisTemplate"}


def test_the_analysis_templates_have_what_their_crd_requires(argo, app, gate_service):
    found = templates(argo)
    assert set(found) == {"torchfaas-slo-hold", "torchfaas-slo-verdict"}
    for template in found.values():
        assert template["apiVersion"] == "argoproj.io/v1alpha1" and template["metadata"]["namespace"] == "openfaas-fn"
        (metric,) = template["spec"]["metrics"]
        assert {"name", "provider"} <= set(metric)
        web = metric["provider"]["web"]
        assert web["url"] and web.get("method", "GET") == "GET" and "body" not in web and "jsonBody" not in web
        assert web["jsonPath"] == "{$.verdict}"
        assert all("name" in arg for arg in template["spec"]["args"])
        path, query = gate_path(resolve(web["url"], template), gate_service)
        assert path == "/argo/openfaas-fn/classifier" and query == "revision=5d8f9c7b6"
        assert routed(app, path, "GET") == "argo"


def resolve(text, template, given=None):
    """`{{args.X}}` replaced as an AnalysisRun does: the Rollout's value, else the template's."""
    values = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    values.update(given or {"revision": "5d8f9c7b6"})

    def value(match):
        assert values.get(match[1]) is not None, f"argument {match[1]} has no value"
        return values[match[1]]

    return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", value, text)


def json_path(body, path):
    """Argo's jsonPath for the one form the templates use: {$.a.b}."""
    match = re.fullmatch(r"\{\$((?:\.\w+)+)\}", path)
    assert match, f"jsonPath {path} is not of the form this test reads"
    for key in match[1].split(".")[1:]:
        body = body[key]
    return body


def condition(expression, result):
    """The expressions the templates use: result == "<word>" (anything else fails the test)."""
    match = re.fullmatch(r'result == "(\w+)"', expression)
    assert match, f"condition {expression!r} is not of the form this test evaluates"
    return result == match[1]


def measure(client, metric, template):
    """One Argo measurement of the gate in `state` (webmetric.go, evaluate.go)."""
    url = urlsplit(resolve(metric["provider"]["web"]["url"], template))
    response = client.get(url.path, query_string=url.query)
    if not 200 <= response.status_code < 300:
        return "Error"
    result = json_path(response.get_json(), metric["provider"]["web"]["jsonPath"])
    success = condition(metric["successCondition"], result) if "successCondition" in metric else None
    failure = condition(metric["failureCondition"], result) if "failureCondition" in metric else None
    if success is None and failure is None:
        return "Successful"
    if failure is None:
        failure = not success
    if success is None:
        success = not failure
    if failure:
        return "Failed"
    return "Successful" if success else "Inconclusive"


def assess(metric, phases):
    """Argo's assessMetricStatus after each measurement (analysis/analysis.go): the
    metric's phase once complete, else "Running"."""
    limit = {k: int(metric.get(k, default)) for k, default in (
        ("failureLimit", 0), ("inconclusiveLimit", 0), ("consecutiveErrorLimit", 4), ("consecutiveSuccessLimit", 0))}
    count = metric.get("count", None if "interval" in metric else 1)
    n = failed = inconclusive = errors_in_a_row = successes_in_a_row = 0
    for phase in phases:
        if phase == "Error":  # an error is not counted toward `count`
            errors_in_a_row, successes_in_a_row = errors_in_a_row + 1, 0
        else:
            n, errors_in_a_row = n + 1, 0
            successes_in_a_row = successes_in_a_row + 1 if phase == "Successful" else 0
            failed += phase == "Failed"
            inconclusive += phase == "Inconclusive"
        done = None  # the later checks win, as in assessMetricFailureInconclusiveOrError
        if limit["failureLimit"] >= 0 and failed > limit["failureLimit"]:
            done = "Failed"
        if inconclusive > limit["inconclusiveLimit"]:
            done = "Inconclusive"
        if errors_in_a_row > limit["consecutiveErrorLimit"]:
            done = "Error"
        if done:
            return done
        if limit["consecutiveSuccessLimit"] > 0 and successes_in_a_row >= limit["consecutiveSuccessLimit"]:
            return "Successful"
        if count is not None and n >= int(count):
            if limit["consecutiveSuccessLimit"] > 0:
                return "Inconclusive" if limit["failureLimit"] >= 0 else "Failed"
            return "Successful"
    return "Running"


# what a completed run does to the Rollout (rollout/analysis.go)
ROLLOUT_DOES = {"Failed": "abort", "Error": "abort", "Inconclusive": "pause", "Successful": "continue",
                "Running": "continue"}


@pytest.mark.parametrize("state", sorted(DOCS))
def test_each_verdict_measures_as_the_rollout_needs(argo, state):
    """hold -> Failed in both; promote -> Successful; watching, a data fault, inconclusive
    and broken -> neither in the final step (Inconclusive) and no failure in the background."""
    client = make_app(StubWatches(by_name={"classifier": state}), log=False).test_client()
    found = templates(argo)
    phases = {name: measure(client, t["spec"]["metrics"][0], t) for name, t in found.items()}
    if state in HOLDS:
        assert phases == {"torchfaas-slo-hold": "Failed", "torchfaas-slo-verdict": "Failed"}
    elif state in PROMOTES:
        assert phases == {"torchfaas-slo-hold": "Successful", "torchfaas-slo-verdict": "Successful"}
    else:
        assert state in WAITS
        assert phases == {"torchfaas-slo-hold": "Successful", "torchfaas-slo-verdict": "Inconclusive"}


def run_of(argo, name, states):
    """The analysis run's phase after the gate answered `states` in turn ("down": no answer)."""
    template = templates(argo)[name]
    metric = template["spec"]["metrics"][0]
    phases = []
    for state in states:
        client = make_app(StubWatches(by_name={"classifier": state}), log=False).test_client()
        phases.append("Error" if state == "down" else measure(client, metric, template))
    return assess(metric, phases)


def test_the_final_step_promotes_on_the_first_promote_and_only_then(argo):
    verdict = templates(argo)["torchfaas-slo-verdict"]["spec"]["metrics"][0]
    count = int(verdict["count"])
    assert ROLLOUT_DOES[run_of(argo, "torchfaas-slo-verdict", ["watching"] * 10 + ["promote"])] == "continue"
    assert run_of(argo, "torchfaas-slo-verdict", ["watching"] * 10 + ["promote"]) == "Successful"
    # Loki failing for most of the watch, then a decision: still only the decision counts
    assert run_of(argo, "torchfaas-slo-verdict", ["loki-down"] * 5 + ["loki-429"] * 20 + ["promote"]) == "Successful"
    assert run_of(argo, "torchfaas-slo-verdict", ["watching", "hold"]) == "Failed"
    # undecided until `count`: a pause for a person, never a promotion nobody decided
    assert run_of(argo, "torchfaas-slo-verdict", ["watching"] * (count - 1)) == "Running"
    assert run_of(argo, "torchfaas-slo-verdict", ["watching"] * (count - 1) + ["inconclusive"]) == "Inconclusive"
    assert run_of(argo, "torchfaas-slo-verdict", ["loki-429"] * count) == "Inconclusive"
    # the watch's deadline comes before `count` runs out
    watch = DOCS["inconclusive"]
    assert count * 60 >= watch["deadline_at"] - watch["started_at"]


def test_the_background_analysis_fails_on_hold_and_on_nothing_else(argo):
    states = ["watching", "loki-429", "loki-down", "promote", "inconclusive", "broken"] * 20
    assert run_of(argo, "torchfaas-slo-hold", states) == "Running"  # never pauses, never aborts
    assert run_of(argo, "torchfaas-slo-hold", ["watching"] * 5 + ["hold"]) == "Failed"


@pytest.mark.parametrize("name", ["torchfaas-slo-hold", "torchfaas-slo-verdict"])
def test_a_gate_restart_is_not_a_rollback_but_a_gate_gone_for_long_is(argo, name):
    metric = templates(argo)[name]["spec"]["metrics"][0]
    limit = int(metric["consecutiveErrorLimit"])
    assert limit >= 5  # a few minutes of restart at a 1-minute interval
    assert run_of(argo, name, ["watching"] + ["down"] * limit + ["watching"]) in ("Running", "Successful")
    assert ROLLOUT_DOES[run_of(argo, name, ["watching"] + ["down"] * (limit + 1))] == "abort"


def test_the_rollout_runs_the_background_check_and_ends_on_the_verdict(argo):
    rollout = one(argo, "Rollout")
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1" and rollout["metadata"]["namespace"] == "openfaas-fn"
    spec = rollout["spec"]
    assert spec["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "classifier",
                                   "scaleDown": spec["workloadRef"]["scaleDown"]}
    assert spec["workloadRef"]["scaleDown"] in ("never", "onsuccess", "progressively")
    assert spec["selector"]["matchLabels"] == {"faas_function": "classifier"}  # faas-netes' pod label
    canary = spec["strategy"]["canary"]
    background = canary["analysis"]
    assert [t["templateName"] for t in background["templates"]] == ["torchfaas-slo-hold"]
    assert "startingStep" not in background  # watching from the first canary pod
    last = canary["steps"][-1]
    assert [t["templateName"] for t in last["analysis"]["templates"]] == ["torchfaas-slo-verdict"]
    assert all("analysis" not in step for step in canary["steps"][:-1])
    found = templates(argo)
    for analysis, name in ((background, "torchfaas-slo-hold"), (last["analysis"], "torchfaas-slo-verdict")):
        given = {a["name"]: a for a in analysis.get("args", [])}
        needed = {a["name"] for a in found[name]["spec"]["args"] if "value" not in a}
        assert needed <= set(given), (name, needed)
        assert given["revision"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
