"""Found by the fuzz campaign (tests/fuzz): raw non-UTF-8 bytes in the query string.

waitress refuses them in an ordinary request line ("Bad URI"), but a target that
starts with "//" skips its URL parsing and reaches the app with the raw bytes;
werkzeug's request.args then raised UnicodeDecodeError: a 500 for client input.
It is a JSON 400 `invalid_query` with its one log line.
"""
import socket
import uuid

from faultkit import wait_line


def test_raw_non_utf8_query_bytes_are_a_400_not_a_500(function_process):
    fn = function_process("standin")
    rid = "raw-query-" + uuid.uuid4().hex[:6]
    with socket.create_connection(("127.0.0.1", fn.port), timeout=10) as sock:
        sock.sendall(b"POST //?topk=\xa0\xff HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"X-Request-Id: " + rid.encode() + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"code":"invalid_query"' in answer
    (line,) = wait_line(fn, rid)
    assert line["status"] == 400 and line["error"] == "invalid_query"
