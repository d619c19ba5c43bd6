"""GET /metrics in-process: label sets, bounded tenants, no request-shaped labels."""
import random
import string
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from torchfaas.identity import CurrentModel, ModelIdentity
from torchfaas.metrics import LATENCY_BUCKETS, MAX_TENANTS, Metrics, TenantLabels


def samples(metrics: Metrics) -> list:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def runtime_state(inflight: int = 0, ready: bool = True) -> SimpleNamespace:
    """What Metrics reads of the runtime at scrape time."""
    return SimpleNamespace(inflight=inflight, ready=ready, queue_depth=lambda: 0,
                           load_times={"load": 0.5, "warmup": 0.2, "cold_start": 2.0})


def loaded(tenants: str = "acme,globex") -> Metrics:
    model = CurrentModel(ModelIdentity("classifier"))
    m = Metrics(model, TenantLabels(tenants, "X-Tenant-Id"), runtime_state())
    model.loaded("efficientnet-lite0", "v3", "0123456789ab")
    return m


def test_tenant_mapping():
    t = TenantLabels("Acme, globex ,,none,other,bad tenant!", "X-Tenant-Id")
    assert t.allowed == ("acme", "globex", "badtenant")
    assert [t.label(x) for x in (None, "", "acme", "ACME", "globex", "initech", "none")] == \
        ["none", "none", "acme", "acme", "globex", "other", "other"]
    assert t.from_headers({}) is None
    assert t.from_headers({"X-Tenant-Id": "  "}) is None
    assert t.from_headers({"X-Tenant-Id": 'Ev"il <x>\tcorp' + "z" * 100}) == ("Evilxcorp" + "z" * 100)[:64]
    assert TenantLabels(",".join(f"t{i}" for i in range(500)), "X-Tenant-Id").allowed[-1] == f"t{MAX_TENANTS - 1}"
    assert TenantLabels("", header="X-Team").from_headers({"X-Team": "a"}) == "a"


def test_every_sample_carries_the_model_labels_and_nothing_unbounded():
    m = loaded()
    rng = random.Random(1)
    for i in range(300):
        tenant = "".join(rng.choices(string.ascii_letters, k=8)) if i % 3 else "acme"
        m.observe_request(rng.choice([200, 400, 413, 429, 500, 503]), rng.random() / 2,
                          {"tenant": tenant, "batch_size": 3, "queue_ms": 1.5, "inference_ms": 20.0,
                           "top1_prob": 0.9, "top1_class": "tabby", "request_id": f"r{i}"})
    all_samples = samples(m)
    tenants = {s.labels["tenant"] for s in all_samples if "tenant" in s.labels}
    assert tenants == {"acme", "globex", "none", "other"}
    for s in all_samples:
        assert (s.labels["function"], s.labels["model_name"], s.labels["model_version"]) == \
            ("classifier", "efficientnet-lite0", "v3"), s
        assert not {"request_id", "top1_class"} & set(s.labels)
    names = {s.name for s in all_samples}
    assert not [n for n in names if n.endswith("_created")]
    info = [s for s in all_samples if s.name == "torchfaas_model_info"]
    assert info[0].labels["artifact_hash"] == "0123456789ab" and info[0].value == 1
    assert {"torchfaas_model_load_seconds", "torchfaas_model_warmup_seconds", "torchfaas_cold_start_seconds",
            "torchfaas_inflight_requests"} <= names


def test_success_series_exist_at_zero_once_loaded():
    got = {(s.labels["tenant"], s.labels["status"], s.value) for s in samples(loaded())
           if s.name == "torchfaas_requests_total"}
    assert got == {(t, status, 0) for t in ("acme", "globex", "none", "other")
                   for status in ("200", "500", "503", "504")}
    # before load, with no pinned version, nothing is invented for "unknown"
    unloaded = Metrics(CurrentModel(ModelIdentity("classifier")), TenantLabels("", "X-Tenant-Id"))
    assert not [s for s in samples(unloaded) if s.name == "torchfaas_requests_total"]


def test_latency_buckets_resolve_the_slo():
    assert 0.25 in LATENCY_BUCKETS  # p99 <= 250 ms is read off a bucket boundary
    assert sum(0.05 <= b <= 0.3 for b in LATENCY_BUCKETS) >= 8


def test_inflight_and_confidence_only_for_successes():
    m = loaded()
    # the runtime counts requests in the app (probes excluded); the gauge reads it
    m.runtime = runtime_state(inflight=1)
    m.observe_request(400, 0.001, {"top1_prob": 0.5})
    m.observe_request(200, 0.05, {"top1_prob": 0.75, "batch_size": 2})
    by_name = {}
    for s in samples(m):
        by_name.setdefault(s.name, []).append(s)
    assert by_name["torchfaas_inflight_requests"][0].value == 1
    assert by_name["torchfaas_top1_probability_count"][0].value == 1
    assert by_name["torchfaas_top1_probability_sum"][0].value == 0.75
