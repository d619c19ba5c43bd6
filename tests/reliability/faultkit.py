"""Helpers for the fault suite: raw HTTP, log lookups of a process, its thread count.

(The contract's error-body check is support.contract.assert_json_error; a process's
RSS is localrun.proc_kib.)
"""
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from requests.structures import CaseInsensitiveDict


@dataclass
class RawResponse:
    status: int
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    body: bytes = b""

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def raw_http(port: int, request: bytes, timeout: float = 15) -> RawResponse:
    """Send bytes exactly as given (hostile headers included); read until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = CaseInsensitiveDict()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return RawResponse(status, headers, body)


def raw_post(port: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] = (),
             path: bytes = b"/", method: bytes = b"POST") -> RawResponse:
    head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Length: " + str(len(body)).encode()]
    head += [name + b": " + value for name, value in headers]
    return raw_http(port, b"\r\n".join(head) + b"\r\n\r\n" + body)


def lines_for(fn, request_id: str, event: str = "inference") -> list[dict]:
    return [line for line in fn.lines() if line.get("request_id") == request_id
            and line.get("event") == event]


def wait_line(fn, request_id: str, timeout: float = 10, event: str = "inference") -> list[dict]:
    """The lines for one id, once at least one is there (then a short grace for a 2nd)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not lines_for(fn, request_id, event):
        time.sleep(0.01)
    return lines_for(fn, request_id, event)


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads")
