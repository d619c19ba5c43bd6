"""The Loki, Promtail, Alloy, ruler, Grafana, Helm and CI files parse and carry the
stages and labels the log contract needs (no binaries here: structural checks)."""

import json
import re
from pathlib import Path

import pytest
import yaml

from support.alloy_syntax import find, parse

REPO = Path(__file__).resolve().parents[2]
LOKI = REPO / "loki"
LABELS = {"namespace", "app", "container"}


def load(path):
    return yaml.safe_load((LOKI / path).read_text())


def stage_names(stages):
    return [next(iter(stage)) for stage in stages]


def test_local_loki_is_single_binary_filesystem_tsdb_v13_with_structured_metadata():
    config = load("loki-local.yaml")
    assert config["auth_enabled"] is False
    assert "filesystem" in config["common"]["storage"]
    [schema] = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert config["limits_config"]["allow_structured_metadata"] is True
    assert config["ruler"]["storage"]["local"]["directory"].endswith("loki/rules}")


@pytest.mark.parametrize("name,cri", [("promtail-kubernetes.yaml", True), ("promtail-local.yaml", False)])
def test_promtail_pipelines(name, cri):
    config = load(f"promtail/{name}")
    [job] = config["scrape_configs"]
    stages = job["pipeline_stages"]
    names = stage_names(stages)
    expected = (["cri"] if cri else []) + ["json", "timestamp", "structured_metadata"]
    assert names == expected
    by_name = {next(iter(s)): next(iter(s.values())) for s in stages}
    assert by_name["json"]["expressions"]["timestamp"] == "timestamp"
    assert by_name["timestamp"] == {"source": "timestamp", "format": "RFC3339Nano", "action_on_failure": "skip"}
    assert list(by_name["structured_metadata"]) == ["request_id"]
    assert "labels" not in names  # nothing in the line becomes a stream label
    assert "request_id" not in json.dumps(job.get("relabel_configs", [])) + json.dumps(job.get("static_configs", []))


def test_promtail_kubernetes_labels_are_namespace_app_container():
    [job] = load("promtail/promtail-kubernetes.yaml")["scrape_configs"]
    targets = {r.get("target_label") for r in job["relabel_configs"]} - {None, "__path__"}
    assert targets == LABELS
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["source_labels"] == ["__meta_kubernetes_pod_label_faas_function"]


def test_promtail_local_takes_file_and_url_from_the_environment():
    text = (LOKI / "promtail/promtail-local.yaml").read_text()
    config = yaml.safe_load(text)
    [static] = config["scrape_configs"][0]["static_configs"]
    assert static["labels"]["__path__"] == "${LOG_FILE}"
    assert set(static["labels"]) - {"__path__"} == LABELS
    assert config["clients"][0]["url"] == "${LOKI_URL}/loki/api/v1/push"


def alloy(name):
    return parse((LOKI / "alloy" / name).read_text())


def process_stages(blocks, label):
    process = find(blocks, "loki.process", label)
    return process, [b["name"] for b in process["blocks"]]


def test_alloy_kubernetes_pipeline_matches_promtail():
    blocks = alloy("kubernetes.alloy")
    relabel = find(blocks, "discovery.relabel", "functions")
    targets = {re.sub(r'"', "", r["attrs"]["target_label"]) for r in relabel["blocks"] if "target_label" in r["attrs"]}
    assert targets - {"__path__"} == LABELS
    assert find(blocks, "loki.source.file", "functions")["attrs"]["forward_to"] == "[ loki.process.functions.receiver ]"
    process, stages = process_stages(blocks, "functions")
    assert stages == ["stage.cri", "stage.json", "stage.timestamp", "stage.structured_metadata"]
    timestamp = find(process["blocks"], "stage.timestamp")["attrs"]
    assert timestamp["source"] == '"timestamp"' and timestamp["format"] == '"RFC3339Nano"'
    metadata = find(process["blocks"], "stage.structured_metadata")["attrs"]["values"]
    assert "request_id" in metadata
    assert "stage.labels" not in stages
    assert process["attrs"]["forward_to"] == "[ loki.write.default.receiver ]"
    assert "LOKI_URL" in find(find(blocks, "loki.write", "default")["blocks"], "endpoint")["attrs"]["url"]


def test_alloy_local_reads_log_file_and_loki_url_from_the_environment():
    blocks = alloy("local.alloy")
    targets = find(blocks, "local.file_match", "demo")["attrs"]["path_targets"]
    assert 'sys.env ( "LOG_FILE" )' in targets
    for label in LABELS:
        assert f'"{label}" =' in targets
    _, stages = process_stages(blocks, "demo")
    assert stages == ["stage.json", "stage.timestamp", "stage.structured_metadata"]
    url = find(find(blocks, "loki.write", "local")["blocks"], "endpoint")["attrs"]["url"]
    assert 'sys.env ( "LOKI_URL" )' in url


def test_alloy_reader_rejects_broken_files():
    with pytest.raises(SyntaxError):
        parse('loki.process "x" {\n  stage.cri {}\n')
    with pytest.raises(SyntaxError):
        parse('loki.write "x" { endpoint { url = [ "a" } }')


def test_ruler_alerts_burn_per_function_and_model_version():
    groups = load("rules/fake/torchfaas-slo.yaml")["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {a["labels"]["slo"] for a in alerts} == {"latency", "server-errors"}
    for alert in alerts:
        expr = alert["expr"]
        assert expr.count("sum by (namespace, app, model_version)") == 4, alert["alert"]
        assert len(re.findall(r'\| json [a-z_, ]+ \| __error__="" \| event="inference"', expr)) == 4
        assert re.search(r"\)\s*>\s*\([0-9.]+ \* 0.01\)\s+and\s+\(", expr)  # both windows must burn
        # latency: the lines the runtime marked slower than the function's own objective
        assert ("status >= 500" in expr) or ('slow="true"' in expr and "latency_ms" not in expr)
        assert "request_id" not in expr


def test_grafana_dashboard_and_provisioning():
    dashboard = json.loads((LOKI / "grafana/dashboards/torchfaas-slo.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for needle in ("rate(", "status >= 500", "quantile_over_time(0.99", "$prediction_field",
                   "sum by (model_version) (count_over_time", "| unwrap $value_field |"):
        assert needle in exprs
    # any function: its label field and its numeric field are variables, not the classifier's names
    variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "textbox"}
    assert variables == {"prediction_field": "top1_class", "value_field": "top1_prob"}
    assert "top1" not in exprs
    assert all(t["datasource"]["uid"] == "loki" for p in dashboard["panels"] for t in p["targets"])
    datasource = load("grafana/provisioning/datasources/loki.yaml")["datasources"][0]
    assert (datasource["type"], datasource["uid"]) == ("loki", "loki")
    assert load("grafana/provisioning/dashboards/torchfaas.yaml")["providers"][0]["type"] == "file"


def test_helm_values_are_simple_scalable_on_object_storage():
    values = load("helm/loki-values.yaml")
    assert values["deploymentMode"] == "SimpleScalable"
    assert values["loki"]["storage"]["type"] == "s3"
    [schema] = values["loki"]["schemaConfig"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "s3")
    assert values["loki"]["limits_config"]["allow_structured_metadata"] is True
    assert all(values[t]["replicas"] >= 2 for t in ("write", "read", "backend"))
    assert values["singleBinary"]["replicas"] == 0
    assert load("helm/alloy-values.yaml")["controller"]["type"] == "daemonset"


def test_scheduled_workflow_runs_make_slo_against_loki():
    workflow = yaml.safe_load((REPO / ".github/workflows/slo.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert triggers["schedule"][0]["cron"]
    steps = workflow["jobs"]["contracts"]["steps"]
    run = next(s for s in steps if s.get("run") == "make slo FUNCTION=${{ matrix.function }}")
    assert run["env"]["LOKI_URL"] == "${{ secrets.LOKI_URL }}" and run["env"]["SLO_REPORT"]
    # the SLO tool alone (behave, no torch), installed from its own folder before `make slo`
    install = steps.index(next(s for s in steps if "pip install" in s.get("run", "")))
    assert "./slo" in steps[install]["run"].split() and install < steps.index(run)


def test_rules_and_dashboard_queries_extract_only_the_fields_they_use():
    """`| json` with no field list parses every field of every line (request ids,
    traces); each metric query names the few it needs. The dashboard's log panel,
    which shows whole lines, is the one full parse."""
    texts = {"rules": (REPO / "loki/rules/fake/torchfaas-slo.yaml").read_text(),
             "dashboard": (REPO / "loki/grafana/dashboards/torchfaas-slo.json").read_text()}
    for name, text in texts.items():
        metric_queries = [line for line in text.splitlines() if "| json" in line and (
            "count_over_time" in line or "rate(" in line or "quantile_over_time" in line)]
        assert metric_queries, name
        for line in metric_queries:
            assert "| json |" not in line, f"{name}: {line.strip()}"
            for field in ("status", "latency_ms", "model_version", "top1_class", "$prediction_field", "$value_field"):
                name_ = rf"(?<![\w$]){re.escape(field)}\b"  # a dashboard variable is a field name too
                if re.search(rf"(by \([^)]*{name_}|\| {name_} |unwrap {name_})", line):
                    assert re.search(rf"\| json [a-z_$, ]*{name_}", line), \
                        f"{name}: {field} not extracted: {line.strip()}"
