"""The function in stack.yml is annotated the way the scrape job keeps pods."""
import re

import yaml

from loadkit.localrun import REPO
from support.dockerfile import image_env
from support.prometheus import SCRAPE_CONFIG


def test_stack_annotations_match_the_scrape_job():
    fn = yaml.safe_load((REPO / "stack.yml").read_text())["functions"]["classifier"]
    annotations = fn["annotations"]
    assert annotations == {"prometheus.io.scrape": "true", "prometheus.io.port": "8080",
                           "prometheus.io.path": "/metrics"}
    job = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0]
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert re.fullmatch(keep["regex"], annotations["prometheus.io.scrape"])
    # the watchdog listens on 8080 and proxies every path but its own /_/ ones to the app
    # ready_path comes from the image (stack.yml sets only what differs from its defaults)
    assert {**image_env(), **fn["environment"]}.get("ready_path") == "/ready"
