"""The hostile-input corpus: every accepted kind of body, malformed.

Truncated and mutated JPEG/PNG/WebP, forged dimensions (decompression bombs),
wrong and missing content types, bad JSON and base64, empty bodies, bad query
values; each with the status and error code the classifier must answer (with
the limits of support.classifier). The in-process suite checks every answer
and its log line; the process suite sends it for rounds to watch memory.
"""
import base64
import io
import json
import random
import struct

from PIL import Image

from loadkit.photos import photo_bytes, reencode
from support.classifier import MAX_BODY
from support.contract import assert_json_error


def jpeg() -> bytes:
    return photo_bytes("rocket.jpg")


def png() -> bytes:
    return reencode("coffee.png", "PNG")


def webp() -> bytes:
    return reencode("china.jpg", "WEBP", quality=80)


def png_bomb(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF header claims width x height (a forged bomb)."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_with_size(width: int, height: int) -> bytes:
    """A real lossy WebP whose VP8 key-frame header claims width x height (max 16383)."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(out, format="WEBP", lossless=False)
    data = bytearray(out.getvalue())
    assert data[12:16] == b"VP8 "
    struct.pack_into("<HH", data, 26, width & 0x3FFF, height & 0x3FFF)
    return bytes(data)


def png_with_ztxt_bomb() -> bytes:
    """A valid small PNG with a zTXt chunk that inflates to 64 MiB of text."""
    import zlib
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    data = out.getvalue()
    payload = b"Comment\x00\x00" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    chunk = struct.pack(">I", len(payload)) + b"zTXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"zTXt" + payload) & 0xFFFFFFFF)
    iend = data.rfind(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def b64_json(data: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(data).decode()}).encode()


def mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    """Random byte flips, deletions and junk splices (the format's magic kept)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(12, len(buf))
            kind = rng.random()
            if kind < 0.5:
                buf[at] = rng.randrange(256)
            elif kind < 0.75:
                del buf[at:at + rng.randint(1, 4096)]
            else:
                buf[at:at] = rng.randbytes(rng.randint(1, 512))
        out.append(bytes(buf))
    return out


# (name, body, content type or None for no header, params, expected status, expected code)
# status None: a mutated image may still decode (200) or fail in any 4xx way; never 5xx.
def corpus() -> list[tuple]:
    j, p, w = jpeg(), png(), webp()
    cases = [
        # truncated images
        *[(f"jpeg-cut-{n}", j[:n], "image/jpeg", {}, 400, "invalid_image") for n in (2, 3, 20, 600, len(j) // 2)],
        *[(f"png-cut-{n}", p[:n], "image/png", {}, 400, "invalid_image") for n in (4, 8, 40, len(p) // 2)],
        *[(f"webp-cut-{n}", w[:n], "image/webp", {}, 400, "invalid_image") for n in (4, 12, 30, len(w) // 2)],
        ("jpeg-magic-then-junk", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "image/jpeg", {}, 400, "invalid_image"),
        ("png-magic-then-junk", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "image/png", {}, 400, "invalid_image"),
        ("webp-magic-then-junk", b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(range(256)) * 8, "image/webp", {}, 400,
         "invalid_image"),
        ("not-an-image", b"hello, I am text", "image/jpeg", {}, 400, "invalid_image"),
        # mutated images: whatever they decode to, never a 5xx
        *[(f"jpeg-mutant-{i}", m, "image/jpeg", {}, None, None) for i, m in enumerate(mutations(j, 8, 1))],
        *[(f"png-mutant-{i}", m, "image/png", {}, None, None) for i, m in enumerate(mutations(p, 8, 2))],
        *[(f"webp-mutant-{i}", m, "image/webp", {}, None, None) for i, m in enumerate(mutations(w, 8, 3))],
        # decompression bombs: a few KB that claim far more pixels than MAX_PIXELS
        ("png-bomb-100mpx", png_bomb(10_000, 10_000), "image/png", {}, 413, "image_too_large"),
        ("jpeg-forged-4gpx", jpeg_with_size(65_000, 65_000), "image/jpeg", {}, 413, "image_too_large"),
        ("webp-forged-268mpx", webp_with_size(16_383, 16_383), "image/webp", {}, 413, "image_too_large"),
        ("png-bomb-in-json", b64_json(png_bomb(5_000, 5_000)), "application/json", {}, 413, "image_too_large"),
        ("png-ztxt-bomb", png_with_ztxt_bomb(), "image/png", {}, 400, "invalid_image"),
        # body over the limit (MAX_BODY) and just at it
        ("body-over-limit", b"\xff" * (MAX_BODY + 1), "application/octet-stream", {}, 413, "payload_too_large"),
        ("body-at-limit", b"\xff" * MAX_BODY, "application/octet-stream", {}, 400, "invalid_image"),
        # wrong and missing content types
        ("text-plain", j, "text/plain", {}, 415, "unsupported_media_type"),
        ("form-urlencoded", b"image=abc&x=1", "application/x-www-form-urlencoded", {}, 415, "unsupported_media_type"),
        ("multipart", b"--x\r\n\r\nabc\r\n--x--", "multipart/form-data; boundary=x", {}, 415,
         "unsupported_media_type"),
        ("image-gif-type", j, "image/gif", {}, 415, "unsupported_media_type"),
        ("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", {}, 415, "unsupported_media_type"),
        ("very-long-type", j, "application/" + "x" * 4000, {}, 415, "unsupported_media_type"),
        ("json-type-jpeg-body", j, "application/json", {}, 400, "invalid_json"),
        ("png-type-json-body", b64_json(p), "image/png", {}, 400, "invalid_image"),
        ("no-type-junk", b"\x00\x01\x02junk", None, {}, 400, "invalid_image"),
        ("gif-as-jpeg", reencode("flower.jpg", "GIF"), "image/jpeg", {}, 415, "unsupported_image_format"),
        ("bmp-as-octet", reencode("flower.jpg", "BMP"), "application/octet-stream", {}, 415,
         "unsupported_image_format"),
        # bad JSON
        ("json-cut", b'{"image": "iVBOR', "application/json", {}, 400, "invalid_json"),
        ("json-list", b"[1, 2, 3]", "application/json", {}, 400, "invalid_json"),
        ("json-string", b'"just a string"', "application/json", {}, 400, "invalid_json"),
        ("json-image-null", b'{"image": null}', "application/json", {}, 400, "invalid_json"),
        ("json-image-number", b'{"image": 12}', "application/json", {}, 400, "invalid_json"),
        ("json-image-object", b'{"image": {"b64": "AAAA"}}', "application/json", {}, 400, "invalid_json"),
        ("json-bad-utf8", b'{"image": "\xff\xfe\xfd"}', "application/json", {}, 400, "invalid_json"),
        ("json-deeply-nested", b"[" * 100_000, "application/json", {}, 400, "invalid_json"),
        ("json-deep-object", b'{"a":' * 50_000, "application/json", {}, 400, "invalid_json"),
        ("json-nan", b'{"image": NaN}', "application/json", {}, 400, "invalid_json"),
        # bad base64
        ("b64-bad-chars", b'{"image": "not base64!!"}', "application/json", {}, 400, "invalid_base64"),
        ("b64-bad-padding", b'{"image": "QUJDRA="}', "application/json", {}, 400, "invalid_base64"),
        ("b64-urlsafe", json.dumps({"image": base64.urlsafe_b64encode(b"\xfb\xff" * 30).decode()}).encode(),
         "application/json", {}, 400, "invalid_base64"),
        ("b64-with-newlines", json.dumps({"image": base64.encodebytes(j[:3000]).decode()}).encode(),
         "application/json", {}, 400, "invalid_base64"),
        ("b64-of-junk", b64_json(b"junk junk junk"), "application/json", {}, 400, "invalid_image"),
        ("b64-of-truncated-jpeg", b64_json(j[: len(j) // 2]), "application/json", {}, 400, "invalid_image"),
        ("b64-empty", b'{"image": ""}', "application/json", {}, 400, "empty_body"),
        # empty bodies, every accepted type
        *[(f"empty-{t}", b"", t, {}, 400, "empty_body")
          for t in ("image/jpeg", "image/png", "image/webp", "application/octet-stream", "application/json", None)],
        # bad query values
        ("topk-zero", j, "image/jpeg", {"topk": "0"}, 400, "invalid_topk"),
        ("topk-negative", j, "image/jpeg", {"topk": "-1"}, 400, "invalid_topk"),
        ("topk-huge", j, "image/jpeg", {"topk": "9" * 400}, 400, "invalid_topk"),
        ("topk-float", j, "image/jpeg", {"topk": "2.5"}, 400, "invalid_topk"),
        ("topk-superscript", j, "image/jpeg", {"topk": "\u00b2"}, 400, "invalid_topk"),  # "²".isdigit()
        ("topk-empty", j, "image/jpeg", {"topk": ""}, 400, "invalid_topk"),
    ]
    return cases


def check_answer(case: tuple, res):
    """The answer to one corpus case: never a 5xx; a mutant may decode (200) or be
    any image 4xx; every other case its exact status and code."""
    name, _, _, _, status, code = case
    assert res.status_code < 500, (name, res.status_code, res.text[:300])
    if status is None:
        if res.status_code == 200:
            assert res.json()["predictions"] if callable(res.json) else res.json["predictions"]
            return
        payload = assert_json_error(res)
        assert payload["error"]["code"] in (
            "invalid_image", "image_too_large", "unsupported_image_format"), (name, res.text)
    else:
        assert_json_error(res, status, code)
