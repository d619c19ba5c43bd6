"""The one parser of GET /metrics: Prometheus text -> samples (prometheus_client's parser)."""
from prometheus_client.parser import text_string_to_metric_families


def parse_samples(text: str | bytes) -> list:
    """Every sample of a /metrics body (name, labels, value)."""
    if isinstance(text, bytes):
        text = text.decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def by_name(samples: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in samples:
        out.setdefault(s.name, []).append(s)
    return out


def series(samples: list) -> set:
    """The distinct series: (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))) for s in samples}


def gauge(text: str | bytes, name: str) -> float:
    """The value of an unlabelled-by-request gauge (the first sample named `name`)."""
    for s in parse_samples(text):
        if s.name == name:
            return s.value
    raise KeyError(name)
