"""Request ids: the gateway's X-Call-Id, else the client's X-Request-Id, else new.

Client-controlled ids end up in log lines and response headers, so only a safe
alphabet survives and the length is bounded.
"""
import re
import uuid

_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]")


def sanitise(raw: str | None, max_len: int) -> str:
    if not raw:
        return ""
    return _UNSAFE.sub("", raw)[:max_len]


def request_id_from(headers, max_len: int = 64) -> str:
    for name in ("X-Call-Id", "X-Request-Id"):
        rid = sanitise(headers.get(name), max_len)
        if rid:
            return rid
    return uuid.uuid4().hex
