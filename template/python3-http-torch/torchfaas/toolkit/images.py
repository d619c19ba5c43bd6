"""Image input for image models: raw bytes or JSON base64, with limits.

Accepted: `image/jpeg`, `image/png`, `image/webp`, `application/octet-stream`
(and a missing Content-Type) as raw bytes; `application/json` as
`{"image": "<base64>"}`. The pixel count is checked from the header, before
any pixel is decoded, so a small file that expands to gigabytes is a 413.
"""
import base64
import binascii
import io
import json
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..settings import Settings, env

RAW_TYPES = {"image/jpeg", "image/png", "image/webp", "application/octet-stream", ""}
DECODABLE_FORMATS = {"JPEG", "PNG", "WEBP"}

# open_image() checks the pixel count itself, against MAX_PIXELS; PIL's own
# global check (a warning up to 2x its limit, an error beyond) is switched off
# so that one limit, one error code and no stderr noise apply.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageSettings(Settings):
    """The runtime's settings plus the image limit, for image functions: a handler opts in
    with `settings_class = ImageSettings` and reads `settings.max_pixels` in load()."""
    # decoded pixels (width x height, from the header) above which an image is a 413
    max_pixels: int = env("MAX_PIXELS", 25_000_000, int)

    def __post_init__(self):
        super().__post_init__()
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, not {self.max_pixels}")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def image_bytes_from(body: bytes, content_type: str | None) -> bytes:
    """The encoded image carried by a request body, or a 4xx ApiError."""
    kind = media_type(content_type)
    if not body:
        raise BadRequest("request body is empty", code="empty_body")
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # "[" * 100000 recurses
            raise BadRequest("body is not valid JSON", code="invalid_json") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            raise BadRequest('JSON body must be {"image": "<base64>"}', code="invalid_json")
        try:
            data = base64.b64decode(payload["image"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("image is not valid base64", code="invalid_base64") from None
        if not data:
            raise BadRequest("image is empty", code="empty_body")
        return data
    if kind in RAW_TYPES:
        return body
    raise UnsupportedMediaType(
        f"unsupported Content-Type {kind[:64]!r}; send image/jpeg, image/png, image/webp, "
        "application/octet-stream or application/json", code="unsupported_media_type")


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """A lazily decoded PIL image whose size is within `max_pixels`."""
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadRequest("body is not a decodable image", code="invalid_image") from None
    if image.format not in DECODABLE_FORMATS:
        raise UnsupportedMediaType(f"image format {image.format} is not supported; use JPEG, PNG or WebP",
                                   code="unsupported_image_format")
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"image has {width * height} pixels, limit is {max_pixels}",
                              code="image_too_large")
    if width < 1 or height < 1:
        raise BadRequest("image has no pixels", code="invalid_image")
    return image


def decode_rgb(image: Image.Image) -> Image.Image:
    """Decode the pixels as RGB; truncated or corrupt data is a 400."""
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, SyntaxError):
        raise BadRequest("image data is truncated or corrupt", code="invalid_image") from None


def decode_rgb_array(image: Image.Image) -> np.ndarray:
    """Decode a lazily opened image (open_image) to uint8 [H, W, 3] RGB pixels, at the
    scale its `draft()` chose if any; truncated or corrupt data is a 400.

    A YCbCr or greyscale JPEG is decoded by simplejpeg: libjpeg-turbo writing RGB
    straight into the array, outside the GIL, where Pillow decodes into its own
    4-bytes-per-pixel image and copies that out again. Same library, same IDCT and
    upsampling: the same pixels (checked in tests/speed/test_fast_path.py) for about
    60% of the CPU (docs/benchmarks.md, "The fast path"). Anything else, and a JPEG that simplejpeg
    refuses (it treats libjpeg's warnings as errors), is decoded by Pillow, which
    decides whether it is a 400.
    """
    if image.format == "JPEG" and image.mode in ("RGB", "L") and isinstance(image.fp, io.BytesIO):
        scale = image.decoderconfig[0] if image.decoderconfig else 1  # set by draft()
        width, height = image.size  # draft() already divided it, rounding up as libjpeg does
        try:
            pixels = simplejpeg.decode_jpeg(image.fp.getbuffer(), "RGB", min_width=width, min_height=height,
                                            min_factor=scale)
        except ValueError:
            pixels = None
        if pixels is not None and pixels.shape == (height, width, 3):
            return pixels
    return np.asarray(decode_rgb(image))
