"""Checks of the product contract shared by the in-process and the process suites."""
import json
import re

SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# fields every request line carries, with their types
REQUIRED = {"timestamp": str, "level": str, "message": str, "event": str, "request_id": str,
            "function": str, "model_name": str, "model_version": str, "status": int,
            "latency_ms": float}
LEVELS = {2: "INFO", 4: "WARNING", 5: "ERROR"}


def body_of(res) -> bytes:
    """The body of a requests, werkzeug test-client or raw-socket response."""
    for name in ("content", "data", "body"):
        value = getattr(res, name, None)
        if isinstance(value, bytes):
            return value
    raise TypeError(f"no body on {res!r}")


def assert_json_error(res, status: int | None = None, code: str | None = None) -> dict:
    """A contract error: JSON {"error": {code, message}, "request_id"}, the id echoed
    in X-Request-Id and safe, no stack trace. Returns the parsed body."""
    body = body_of(res)
    assert res.headers.get("Content-Type") == "application/json", (res.status_code, body[:200])
    payload = json.loads(body)
    if status is not None:
        assert res.status_code == status, (res.status_code, payload)
    assert 400 <= res.status_code < 600
    assert set(payload) == {"error", "request_id"}, payload
    assert payload["error"]["code"] and payload["error"]["message"], payload
    if code is not None:
        assert payload["error"]["code"] == code, payload
    rid = res.headers.get("X-Request-Id")
    assert payload["request_id"] == rid and SAFE_ID.match(rid), (payload, rid)
    assert b"Traceback" not in body and b'File "' not in body
    return payload


def assert_request_line(line: dict, status: int | None = None):
    """A request's log line: required fields and types, timestamp, level by status."""
    for field, kind in REQUIRED.items():
        assert isinstance(line[field], kind), (field, line)
    assert TIMESTAMP.match(line["timestamp"]), line["timestamp"]
    if status is not None:
        assert line["status"] == status, line
    assert line["level"] == LEVELS[line["status"] // 100], line
