"""The request record: each field of a request's log line is one attribute of it,
named the same, and docs/log-format.md documents every one. Renaming a field in
one place and not the others fails here (or, for the metrics, on a missing attribute)."""
from dataclasses import fields
from pathlib import Path

from torchfaas.record import RequestRecord

LOG_FORMAT = Path(__file__).resolve().parents[2] / "docs" / "log-format.md"
# logged under another name: the attribute keeps seconds, the line milliseconds
RENAMED = {"latency_ms": "latency_s"}


def full_record() -> RequestRecord:
    return RequestRecord("r1", 0.0, status=500, latency_s=0.0123, method="POST", path="/",
                         input_bytes=3, tenant="acme", batch_size=2, queue_ms=1.234, inference_ms=5.678,
                         preprocess_ms=0.5, batch_retried=True, error="internal_error", trace="tb",
                         client_gone=True, slow=True, handler_fields={"top1_class": "tabby"})


def test_every_logged_field_is_an_attribute_of_the_same_name():
    attributes = {f.name for f in fields(RequestRecord)}
    logged = set(full_record().log_fields()) - {"top1_class"}  # the handler's own
    assert {RENAMED.get(name, name) for name in logged} <= attributes
    # and every attribute is logged, but the receipt time and the handler's dict
    assert attributes - {RENAMED.get(name, name) for name in logged} == \
        {"started", "event", "message", "handler_fields"}


def test_every_logged_field_is_documented():
    documented = LOG_FORMAT.read_text()
    missing = [name for name in full_record().log_fields() if f"`{name}`" not in documented]
    assert not missing, f"docs/log-format.md does not name {missing}"


def test_the_line_rounds_and_leaves_out_what_did_not_happen():
    line = full_record().log_fields()
    assert line["latency_ms"] == 12.3 and line["queue_ms"] == 1.23 and line["inference_ms"] == 5.68
    bare = RequestRecord("r2", 0.0, status=404, error="not_found").log_fields()
    assert not {"batch_size", "queue_ms", "preprocess_ms", "batch_retried", "client_gone", "slow"} & set(bare)
    assert bare["tenant"] is None and bare["trace"] is None  # EventLog leaves None out of the line
