import base64
import io
import json
import re

import pytest
from PIL import Image

from torchfaas.artifacts import (
    ArtifactError,
    manifest_version,
    read_verified_manifest,
    sha256_of,
    verify_in_background,
    write_manifest,
)
from torchfaas.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from torchfaas.identity import CurrentModel, ModelIdentity
from torchfaas.logs import EventLog, rfc3339_ms
from torchfaas.request_body import request_body
from torchfaas.request_id import request_id_from, sanitise
from torchfaas.toolkit import image_bytes_from, open_image


def test_request_id_order_and_sanitising():
    assert request_id_from({"X-Call-Id": "a", "X-Request-Id": "b"}) == "a"
    assert request_id_from({"X-Request-Id": "b c\n"}) == "bc"
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_from({"X-Request-Id": "\n\t"}))
    assert sanitise("x" * 100, 10) == "x" * 10


def _flask_request(body: bytes, headers: dict, max_length: int = 1 << 20, stream=None):
    """A Flask request as waitress builds it: a body received in full, wsgi.input_terminated."""
    from flask import Flask, request
    from werkzeug.test import EnvironBuilder
    app = Flask("t")
    app.config["MAX_CONTENT_LENGTH"] = max_length
    environ = EnvironBuilder(method="POST", data=body, headers=headers).get_environ()
    if "Content-Length" not in headers:
        environ.pop("CONTENT_LENGTH", None)
    if stream is not None:
        environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True
    return app.request_context(environ), request


def test_request_body_reads_the_whole_body_once_and_keeps_werkzeug_limits(tmp_path):
    from werkzeug.exceptions import RequestEntityTooLarge
    photo = bytes(range(256)) * 800  # 200 KB: more than werkzeug's 64 KiB pieces
    sized = {"Content-Length": str(len(photo))}
    # waitress's in-memory buffer (a body under 512 KiB): handed over, not copied
    ctx, request = _flask_request(photo, sized)
    with ctx:
        body = request_body(request)
        assert body == photo and body is request.environ["wsgi.input"].getvalue()
    # a larger body waits in a temporary file: read
    (tmp_path / "body").write_bytes(photo)
    with open(tmp_path / "body", "rb") as spooled:
        ctx, request = _flask_request(photo, sized, stream=spooled)
        with ctx:
            assert request_body(request) == photo
    # a buffer holding more than the body: only the body
    ctx, request = _flask_request(photo, sized, stream=io.BytesIO(photo + b"next"))
    with ctx:
        assert request_body(request) == photo
    ctx, request = _flask_request(b"", {"Content-Length": "0"})
    with ctx:
        assert request_body(request) == b""
    # no length (a server that streams the body): werkzeug's own read, bounded by the limit
    ctx, request = _flask_request(b"abc", {}, max_length=10)
    with ctx:
        assert request_body(request) == b"abc"
    ctx, request = _flask_request(b"x" * 11, {"Content-Length": "11"}, max_length=10)
    with ctx, pytest.raises(RequestEntityTooLarge):
        request_body(request)


def test_image_bytes_from_each_accepted_body():
    assert image_bytes_from(b"raw", "image/jpeg; charset=x") == b"raw"
    assert image_bytes_from(b"raw", None) == b"raw"  # a client that sends no Content-Type
    encoded = json.dumps({"image": base64.b64encode(b"png").decode()}).encode()
    assert image_bytes_from(encoded, "application/json") == b"png"
    for body, kind, error in [(b"", "image/png", BadRequest), (b"{", "application/json", BadRequest),
                              (b'{"image": 3}', "application/json", BadRequest),
                              (b'{"image": "@@"}', "application/json", BadRequest),
                              (b"x", "multipart/form-data", UnsupportedMediaType)]:
        with pytest.raises(error):
            image_bytes_from(body, kind)


def test_pixel_limit_is_checked_from_the_header():
    out = io.BytesIO()
    Image.new("RGB", (300, 200)).save(out, format="PNG")
    assert open_image(out.getvalue(), 60_000).size == (300, 200)
    with pytest.raises(PayloadTooLarge):
        open_image(out.getvalue(), 59_999)


def test_manifest_detects_tampering(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"weights")
    manifest = write_manifest(tmp_path, ["w.bin"], model_name="m")
    assert read_verified_manifest(tmp_path) == manifest
    assert manifest_version(manifest).startswith("sha256-")
    (tmp_path / "w.bin").write_bytes(b"weightz")
    with pytest.raises(ArtifactError, match="sha256"):
        read_verified_manifest(tmp_path)


def test_sha256_of_matches_hashlib_for_empty_and_multi_megabyte_files(tmp_path):
    import hashlib

    for name, data in (("empty", b""), ("big", bytes(range(256)) * 12_289)):  # 3 MiB + 256 bytes
        (tmp_path / name).write_bytes(data)
        assert sha256_of(tmp_path / name) == hashlib.sha256(data).hexdigest()


def test_the_background_check_answers_what_the_check_itself_does(tmp_path):
    assert verify_in_background(tmp_path) is None  # no manifest: nothing to check
    (tmp_path / "w.bin").write_bytes(b"weights")
    manifest = write_manifest(tmp_path, ["w.bin"], model_name="m")
    assert verify_in_background(tmp_path).result(timeout=10) == manifest
    (tmp_path / "w.bin").write_bytes(b"weightz")
    with pytest.raises(ArtifactError, match="sha256"):
        verify_in_background(tmp_path).result(timeout=10)


def test_log_line_shape():
    stream = io.StringIO()
    log = EventLog(stream, CurrentModel(ModelIdentity("fn")))
    log.emit("inference", "inference", status=200, latency_ms=1.5, skipped=None)
    line = json.loads(stream.getvalue())
    assert list(line)[:4] == ["timestamp", "level", "message", "event"]
    assert line["function"] == "fn" and line["status"] == 200 and "skipped" not in line
    assert rfc3339_ms(0.123) == "1970-01-01T00:00:00.123Z"
