"""What the load users send: real photos in several formats and sizes, and bad requests.

Pure Python (no Locust import), so the corpus can be checked by unit tests and
reused by the capacity finder. The photos are the ones the test suite uses
(load/photos.py: photos shipped inside scikit-image and scikit-learn),
re-encoded as JPEG/PNG/WebP at several resolutions, the way phones and browsers
would upload them.
"""
from __future__ import annotations

import io
import itertools
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from photos import PHOTOS

# format -> (PIL format, Content-Type, save options, share of the traffic)
FORMATS = {
    "jpeg": ("JPEG", "image/jpeg", {"quality": 85}, 6),
    "png": ("PNG", "image/png", {"compress_level": 1}, 2),
    "webp": ("WEBP", "image/webp", {"quality": 80}, 2),
}
# long side in pixels -> share of the traffic (thumbnails, web uploads, phone uploads)
SIZES = {320: 3, 640: 5, 1280: 2}


@dataclass(frozen=True)
class Payload:
    photo: str
    fmt: str
    long_side: int
    content_type: str
    body: bytes
    weight: int

    @property
    def label(self) -> str:
        return f"{self.photo} {self.fmt} {self.long_side}px"


@dataclass(frozen=True)
class BadRequest:
    """A client mistake the function must answer with `expected_status`, never 5xx."""
    kind: str
    body: bytes
    content_type: str
    query: str
    expected_status: int


def build_corpus(sizes: dict[int, int] | None = None, formats: dict | None = None) -> list[Payload]:
    """Every photo, at every size, in every format (about 2 s of CPU for 54 payloads)."""
    sizes = SIZES if sizes is None else sizes
    formats = FORMATS if formats is None else formats
    corpus = []
    for photo, path in sorted(PHOTOS.items()):
        with Image.open(path) as original:
            rgb = original.convert("RGB")
        for side, size_weight in sizes.items():
            scale = side / max(rgb.size)
            resized = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                                 Image.Resampling.BICUBIC)
            for fmt, (pil_format, content_type, options, fmt_weight) in formats.items():
                out = io.BytesIO()
                resized.save(out, format=pil_format, **options)
                corpus.append(Payload(Path(photo).stem, fmt, side, content_type, out.getvalue(),
                                      size_weight * fmt_weight))
    return corpus


def bad_requests(corpus: list[Payload]) -> list[BadRequest]:
    """One of each client mistake the function must reject with a 4xx."""
    jpeg = next(p.body for p in corpus if p.fmt == "jpeg")
    return [
        BadRequest("empty body", b"", "image/jpeg", "", 400),
        BadRequest("corrupt bytes", os.urandom(2048), "image/jpeg", "", 400),
        BadRequest("truncated image", jpeg[: len(jpeg) // 3], "image/jpeg", "", 400),
        BadRequest("bad topk", jpeg, "image/jpeg", "topk=0", 400),
        BadRequest("wrong content type", b"this is not an image", "text/plain", "", 415),
    ]


class Picker:
    """Weighted random choice over the corpus, reproducible with a seed."""

    def __init__(self, corpus: list[Payload], seed: int | None = None):
        self.corpus = corpus
        self.cum_weights = list(itertools.accumulate(p.weight for p in corpus))
        self.random = random.Random(seed)

    def payload(self) -> Payload:
        return self.random.choices(self.corpus, cum_weights=self.cum_weights)[0]


class Splitter:
    """Which host each request goes to, in random blocks per kind of request: the first of
    a kind goes to a random host, the next to another, until every host had one; then a
    new random order (seeded). Every host so gets the same mix of payloads (within one
    request of each kind), and what the payloads cost cannot pass for a difference
    between the hosts; a plain coin per request left one side ~5% cheaper photos in
    a 90-s review, the same side in every run of a seed."""

    def __init__(self, hosts: list[str], seed: int | None = None):
        if len(hosts) < 2:
            raise ValueError(f"a split needs at least two hosts, got {hosts!r}")
        self.hosts = list(hosts)
        # its own generator: the payload sequence stays the one --seed gives without a split
        self.random = random.Random(None if seed is None else f"split-{seed}")
        self._blocks: dict = {}

    def next(self, kind: str = "") -> str:
        block = self._blocks.setdefault(kind, [])
        if not block:
            block.extend(self.random.sample(self.hosts, len(self.hosts)))
        return block.pop()


class RequestIds:
    """`<prefix>-<n>-<random>`: unique, sortable per run, safe for the runtime's sanitiser."""

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix or "lt" + time.strftime("%H%M%S")
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self._counter):06d}-{uuid.uuid4().hex[:8]}"
