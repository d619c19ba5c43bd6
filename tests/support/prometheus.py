"""A real Prometheus (the Debian `prometheus` binary) for tests.

It runs with a temporary config and TSDB, a 1 s scrape and rule interval, the
repository's rules, and the scrape job of loki/prometheus/prometheus.yml with its
relabelling intact: only the Kubernetes pod discovery is swapped for a file that
lists the local function processes with the labels pod discovery would give them.
"""
import json
import signal
import subprocess
import time
from pathlib import Path

import requests
import yaml

from loadkit.localrun import REPO, free_port
from support.system_tools import require

PROM_DIR = REPO / "loki" / "prometheus"
RULES = PROM_DIR / "rules" / "torchfaas.rules.yml"
RULES_TEST = PROM_DIR / "rules" / "torchfaas.rules.test.yml"
SCRAPE_CONFIG = PROM_DIR / "prometheus.yml"
DASHBOARD = PROM_DIR / "dashboard-metrics.json"


def require_binary(name: str) -> str:
    """The binary's path (Debian package `prometheus`); skips without it, except in CI."""
    return require(name, suite="tests/metrics")[name]


class Prometheus:
    def __init__(self, workdir: Path, rule_files: list[Path]):
        self.binary = require_binary("prometheus")
        self.workdir = Path(workdir)
        self.targets_file = self.workdir / "pods.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rule_files = rule_files
        self.proc = None

    def config(self) -> dict:
        """Our scrape job, pod discovery replaced by a file of pretend pods."""
        job = dict(yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0])
        job.pop("kubernetes_sd_configs")
        job["file_sd_configs"] = [{"files": [str(self.targets_file)], "refresh_interval": "1s"}]
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in self.rule_files],
                "scrape_configs": [job]}

    def set_pods(self, pods: list[dict]):
        """pods: {"name", "port", "annotations": {...}, "function" (default classifier)} as
        Kubernetes discovery would see them."""
        groups = []
        for pod in pods:
            labels = {"__meta_kubernetes_namespace": "openfaas-fn",
                      "__meta_kubernetes_pod_name": pod["name"],
                      "__meta_kubernetes_pod_phase": pod.get("phase", "Running"),
                      "__meta_kubernetes_pod_label_faas_function": pod.get("function", "classifier")}
            for key, value in pod.get("annotations", {}).items():
                labels["__meta_kubernetes_pod_annotation_" + key.replace(".", "_").replace("/", "_")] = value
            # a pod's discovered address is its IP and container port (the watchdog's 8080)
            groups.append({"targets": ["127.0.0.1:8080"], "labels": labels})
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def start(self, timeout: float = 30) -> "Prometheus":
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if not self.targets_file.exists():
            self.set_pods([])
        self.log = open(self.workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise TimeoutError("prometheus did not become ready: " + self.log_text()[-2000:])

    def log_text(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    # -- HTTP API ----------------------------------------------------------
    def api(self, path: str, **params) -> dict:
        res = requests.get(self.url + "/api/v1/" + path, params=params, timeout=10)
        body = res.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def vector(self, promql: str, by: str | tuple[str, ...]) -> dict:
        """{label value(s): float} of an instant query."""
        keys = (by,) if isinstance(by, str) else by
        out = {}
        for sample in self.query(promql):
            key = tuple(sample["metric"].get(k, "") for k in keys)
            out[key[0] if len(keys) == 1 else key] = float(sample["value"][1])
        return out

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, predicate, timeout: float = 20):
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.query(promql)
            if predicate(value):
                return value
            time.sleep(0.25)
        raise AssertionError(f"{promql} never satisfied the condition; last answer {value}")


def dashboard_queries(substitutions: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the metrics dashboard, its Grafana variables
    replaced as Grafana would (e.g. {"$function": "diabetes", "$__rate_interval": "1m"})."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in substitutions.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"a variable left in {expr}"
            queries.append((panel["title"], expr))
    return queries
