"""What the load users send: a function's example inputs, and its bad requests.

Pure Python (no Locust import), so the inputs can be checked by unit tests and
reused by the capacity finder and the soak. Each function declares its own load
inputs in its folder (`functions/<name>/load_inputs.py`, see `load_inputs()`; the
fallback is its `testdata/example.*`). The photo corpus below is the classifier's:
the photos the test suite uses (load/loadkit/photos.py: photos shipped inside scikit-image
and scikit-learn), re-encoded as JPEG/PNG/WebP at several resolutions, the way
phones and browsers would upload them.
"""
from __future__ import annotations

import importlib.util
import io
import itertools
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from loadkit.example import MEDIA_TYPES, example_of
from loadkit.localrun import import_build
from loadkit.photos import PHOTOS

# format -> (PIL format, Content-Type, save options, share of the traffic)
FORMATS = {
    "jpeg": ("JPEG", "image/jpeg", {"quality": 85}, 6),
    "png": ("PNG", "image/png", {"compress_level": 1}, 2),
    "webp": ("WEBP", "image/webp", {"quality": 80}, 2),
}
# a load user's wait between two requests, seconds (Locust's `between`): the demo sizes its
# users by it (sizing.py)
THINK_SECONDS = (0.1, 0.5)
# long side in pixels -> share of the traffic (thumbnails, web uploads, phone uploads)
SIZES = {320: 3, 640: 5, 1280: 2}


@dataclass(frozen=True)
class Payload:
    """One good request: what it is, its body and media type, its share of the traffic."""
    label: str          # what it is: the sent log's `payload`; make review's split alternates per label
    name: str           # its row in Locust's statistics, e.g. "POST / jpeg"
    content_type: str
    body: bytes = field(repr=False)
    weight: float = 1
    # (query string, how many predictions a 200 to it carries; None: any), one picked per request
    queries: tuple = (("", None),)


@dataclass(frozen=True)
class PhotoPayload(Payload):
    photo: str = ""
    fmt: str = ""
    long_side: int = 0


@dataclass(frozen=True)
class BadRequest:
    """A client mistake the function must answer with `expected_status`, never 5xx."""
    kind: str
    body: bytes
    content_type: str
    query: str
    expected_status: int


def build_corpus(sizes: dict[int, int] | None = None, formats: dict | None = None,
                 queries: dict[str, int | None] | None = None) -> list[PhotoPayload]:
    """Every photo, at every size, in every format (about 2 s of CPU for 54 payloads);
    `queries`: {query string: predictions a 200 carries}, one picked per request."""
    sizes = SIZES if sizes is None else sizes
    formats = FORMATS if formats is None else formats
    picks = tuple((queries or {"": None}).items())
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
                stem = Path(photo).stem
                corpus.append(PhotoPayload(f"{stem} {fmt} {side}px", f"POST / {fmt}", content_type, out.getvalue(),
                                           size_weight * fmt_weight, picks, stem, fmt, side))
    return corpus


def bad_requests(corpus: list[Payload] | None = None) -> list[BadRequest]:
    """One of each client mistake an image function must reject with a 4xx."""
    jpeg = next((p.body for p in corpus or () if p.content_type == "image/jpeg"), None)
    if jpeg is None:
        jpeg = build_corpus(sizes={640: 1}, formats={"jpeg": FORMATS["jpeg"]})[0].body
    return [
        BadRequest("empty body", b"", "image/jpeg", "", 400),
        BadRequest("corrupt bytes", os.urandom(2048), "image/jpeg", "", 400),
        BadRequest("truncated image", jpeg[: len(jpeg) // 3], "image/jpeg", "", 400),
        BadRequest("bad topk", jpeg, "image/jpeg", "topk=0", 400),
        BadRequest("wrong content type", b"this is not an image", "text/plain", "", 415),
    ]


# -- a function's own load inputs ---------------------------------------------
def _body(body) -> bytes:
    """bytes as they are, str as UTF-8, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def as_payload(item) -> Payload:
    """A Payload, or a dict: body (bytes, str, or an object sent as JSON), label, and
    optionally name ("POST /"), content_type (application/json), weight (1), and either
    predictions (how many a 200 carries) or queries ({query string: predictions})."""
    if isinstance(item, Payload):
        return item
    queries = item.get("queries") or {"": item.get("predictions")}
    return Payload(item["label"], item.get("name", "POST /"), item.get("content_type", "application/json"),
                   _body(item["body"]), float(item.get("weight", 1)), tuple(queries.items()))


def as_bad_request(item) -> BadRequest:
    """A BadRequest, or a dict: kind, body, expected_status, optionally content_type
    (application/json) and query."""
    if isinstance(item, BadRequest):
        return item
    return BadRequest(item["kind"], _body(item["body"]), item.get("content_type", "application/json"),
                      item.get("query", ""), int(item["expected_status"]))


REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"


def function_dir(function: str) -> Path:
    """A function's folder: a path to one, or the name of a folder of functions/."""
    path = Path(function)
    return path if path.is_dir() else FUNCTIONS / function


# -- a function's latency objective ---------------------------------------------
def slo_features(function: str) -> Path:
    """The SLO contracts `function` is judged by: its folder's `slo/` (the Makefile's
    SLO_FEATURES, `functions/$(FUNCTION)/slo`)."""
    return function_dir(function) / "slo"


def latency_objective_ms(function: str) -> float:
    """The p99 bound (ms) `function`'s latency contract promises: the default SLO of the
    capacity finder, Locust's p99 threshold and the soak's report, so that each function is
    loaded against its own promise (classifier 250 ms, diabetes 50 ms) and a contract's
    number lives in its .feature file only. Raises logslo.objectives.ObjectiveError (a
    ValueError) when the function has no latency contract."""
    # this checkout's SLO tool (slo/logslo), whichever copy `pip install ./slo` put in the
    # venv: the contract and the code that reads it come from the same tree
    import_build(REPO / "slo", ("logslo",))
    from logslo.objectives import latency_objective_ms as from_contract
    return from_contract(slo_features(function))


def load_inputs(function: str) -> tuple[list[Payload], list[BadRequest]]:
    """What the load tools send `function` (a name or a folder): its `load_inputs.py`'s
    `payloads()` and `bad_requests()` (the latter optional); without that file, the
    function's example request (testdata/example.*, as `make invoke` sends it) and no
    bad requests."""
    folder = function_dir(function)
    module_path = folder / "load_inputs.py"
    if module_path.is_file():
        spec = importlib.util.spec_from_file_location(f"load_inputs_{folder.name}", module_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        good = [as_payload(p) for p in module.payloads()]
        bad = [as_bad_request(b) for b in getattr(module, "bad_requests", list)()]
    else:
        example = example_of(folder)  # the example `make invoke` sends
        good = [Payload("example", f"POST / {example.name}", MEDIA_TYPES[example.suffix.lower()],
                        example.read_bytes())]
        bad = []
    if not good:
        raise ValueError(f"{module_path}: payloads() gave no request to send")
    return good, bad


class Picker:
    """Weighted random choice over the corpus, reproducible with a seed."""

    def __init__(self, corpus: list[Payload], seed: int | None = None):
        self.corpus = corpus
        self.cum_weights = list(itertools.accumulate(p.weight for p in corpus))
        self.random = random.Random(seed)

    def payload(self) -> Payload:
        return self.random.choices(self.corpus, cum_weights=self.cum_weights)[0]

    def query(self, payload: Payload) -> tuple[str, int | None]:
        """One of the payload's (query string, predictions a 200 carries), at random."""
        return self.random.choice(payload.queries)


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
