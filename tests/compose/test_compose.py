"""The local observability stack (loki/compose/compose.yaml) holds together.

CI cannot pull Loki, Alloy, Prometheus or Grafana, so the stack is not started here.
Instead: a compose parser accepts the file (Debian's docker-compose, `config -q`),
every mounted file exists, each service's configuration is checked as it will be seen
inside its container (paths, environment, the service names it talks to), with the
checks the repository has for these formats (the Alloy reader of tests/slo, promtool).
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support.alloy_syntax import find, parse
from support.dockerfile import image_env
from support.system_tools import require

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "loki" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
LABELS = {"namespace", "app", "container"}



def need(tool: str) -> str:
    return require(tool, suite="tests/compose")[tool]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def expand(value: str, env: dict | None = None) -> str:
    """Compose's ${VAR:-default} with only the defaults (nothing set)."""
    env = env or {}
    return re.sub(r"\$\{([A-Za-z_]\w*)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), value)


def mounts(service: dict) -> dict[str, Path | str]:
    """container path -> host path (bind mounts) or volume name."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = expand(spec).split(":")[:2]
        out[target] = (COMPOSE_DIR / source).resolve() if source.startswith(".") else source
    return out


def host_path(service: dict, container_path: str) -> Path:
    """The host file a container path reads, through the service's bind mounts."""
    for target, source in sorted(mounts(service).items(), key=lambda item: -len(item[0])):
        if isinstance(source, Path) and (container_path == target or container_path.startswith(target + "/")):
            return source / os.path.relpath(container_path, target) if container_path != target else source
    raise AssertionError(f"{container_path} is not mounted")


def test_a_compose_parser_accepts_it():
    docker_compose = need("docker-compose")
    result = subprocess.run([docker_compose, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                            env={**os.environ, "DOCKER_SOCK": "/var/run/docker.sock"}, timeout=120)
    assert result.returncode == 0, result.stderr


def test_services_and_pinned_images(compose):
    services = compose["services"]
    assert set(services) == {"classifier", "loki", "alloy", "prometheus", "grafana"}
    for name, service in services.items():
        tag = expand(service["image"]).rsplit(":", 1)[-1]
        if name != "classifier":  # the function is whatever `faas-cli build` tagged
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (name, service["image"])


def test_every_mounted_file_exists(compose):
    for name, service in compose["services"].items():
        for target, source in mounts(service).items():
            if target == "/var/run/docker.sock" or not isinstance(source, Path):
                continue  # the host's container engine socket; named volumes
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
    named = {source for service in compose["services"].values() for source in mounts(service).values()
             if isinstance(source, str) and not source.startswith("/")}
    assert named <= set(compose.get("volumes") or {}), named


def test_the_function_runs_as_stack_yml_and_faas_netes_say(compose):
    fn = yaml.safe_load((REPO / "stack.yml").read_text())["functions"]["classifier"]
    service = compose["services"]["classifier"]
    assert service["image"] == fn["image"]  # the image `faas-cli build -f stack.yml` tags
    assert service["environment"] == fn["environment"]
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert str(service["cpus"]) == fn["limits"]["cpu"] and service["mem_limit"] == "1g" == \
        fn["limits"]["memory"].lower().replace("gi", "g")
    assert service["labels"] == {"faas_function": "classifier"}
    assert "8080:8080" in service["ports"]  # the watchdog's port
    grace = int(service["stop_grace_period"].rstrip("s"))
    # the watchdog's timings are the image's (Dockerfile ENV); stack.yml sets only what differs
    env = {**image_env(), **fn["environment"]}
    assert grace > int(env["healthcheck_interval"].rstrip("s")) + int(env["write_timeout"].rstrip("s"))


def test_loki_reads_the_repository_config_and_rules(compose):
    service = compose["services"]["loki"]
    args = service["command"]
    config_path = next(a.split("=", 1)[1] for a in args if a.startswith("-config.file="))
    assert "-config.expand-env=true" in args
    config = yaml.safe_load(host_path(service, config_path).read_text())
    env = service["environment"]
    assert expand(config["common"]["path_prefix"], env) == "/loki" and mounts(service)["/loki"] == "loki-data"
    rules_dir = expand(config["ruler"]["storage"]["local"]["directory"], env)
    rules = host_path(service, rules_dir)
    # auth_enabled: false -> tenant "fake": the ruler reads <dir>/fake/*.yaml
    assert config["auth_enabled"] is False and list((rules / "fake").glob("*.yaml"))
    assert "3100:3100" in service["ports"] and config["server"]["http_listen_port"] == 3100


def test_alloy_ships_the_function_stdout_with_the_kubernetes_labels(compose):
    service = compose["services"]["alloy"]
    config_path = service["command"][-1]
    blocks = parse(host_path(service, config_path).read_text())
    docker = find(blocks, "discovery.docker", "containers")["attrs"]["host"]
    assert docker == '"unix:///var/run/docker.sock"' and "/var/run/docker.sock" in mounts(service)
    relabel = find(blocks, "discovery.relabel", "functions")
    keep = relabel["blocks"][0]["attrs"]
    assert keep["action"] == '"keep"' and "label_faas_function" in keep["source_labels"]
    assert "faas_function" in compose["services"]["classifier"]["labels"]
    targets = {r["attrs"]["target_label"].strip('"') for r in relabel["blocks"] if "target_label" in r["attrs"]}
    assert targets == LABELS
    source = find(blocks, "loki.source.docker", "functions")["attrs"]
    assert source["targets"] == "discovery.relabel.functions.output"
    process = find(blocks, "loki.process", "functions")
    assert [b["name"] for b in process["blocks"]] == ["stage.json", "stage.timestamp", "stage.structured_metadata"]
    assert "request_id" in find(process["blocks"], "stage.structured_metadata")["attrs"]["values"]
    url = find(find(blocks, "loki.write", "default")["blocks"], "endpoint")["attrs"]["url"]
    assert 'sys.env ( "LOKI_URL" )' in url and service["environment"]["LOKI_URL"] == "http://loki:3100"


def test_prometheus_config_passes_promtool_as_mounted(compose, tmp_path):
    promtool = need("promtool")
    service = compose["services"]["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file="))
    # lay the files out as the container sees them, so relative rule paths resolve the same
    root = tmp_path / "container"
    for target, source in mounts(service).items():
        if isinstance(source, Path):
            dest = root / target.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copyfile)(source, dest)
    config_file = root / config_path.lstrip("/")
    result = subprocess.run([promtool, "check", "config", str(config_file)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr
    [job] = yaml.safe_load(config_file.read_text())["scrape_configs"]
    [static] = job["static_configs"]
    assert static["targets"] == ["classifier:8080"] and job["metrics_path"] == "/metrics"
    # the labels the Kubernetes job gives every target, so rules and dashboards work unchanged
    assert set(static["labels"]) == {"namespace", "faas_function"}


def test_grafana_has_both_datasources_and_both_dashboards(compose):
    service = compose["services"]["grafana"]
    env = service["environment"]
    datasources = {}
    for path in (p for p in mounts(service) if p.startswith("/etc/grafana/provisioning/datasources/")):
        text = host_path(service, path).read_text()
        for variable in re.findall(r"(?<!\$)\$\{(\w+)\}", text):
            assert variable in env, f"{path} needs {variable}"
        for source in yaml.safe_load(text)["datasources"]:
            datasources[source["type"]] = source
            url = expand(source["url"], env)
            host, port = re.fullmatch(r"http://([\w-]+):(\d+)", url).groups()
            assert host in compose["services"] and f"{port}:{port}" in compose["services"][host]["ports"]
    assert {"loki", "prometheus"} <= set(datasources) and datasources["loki"]["uid"] == "loki"
    [provider] = yaml.safe_load(host_path(service, "/etc/grafana/provisioning/dashboards/torchfaas.yaml")
                                .read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = [json.loads(host_path(service, p).read_text()) for p in mounts(service)
                  if p.startswith(folder + "/") and p.endswith(".json")]
    assert {d["uid"] for d in dashboards} >= {"torchfaas-metrics"} and len(dashboards) == 2
    used = json.dumps(dashboards)
    assert '"uid": "loki"' in used and '"query": "prometheus"' in used  # what they ask for exists
