"""The shape both backends return, so contracts never care where numbers came from.

A Vector maps a label set to one value (an instant query); a Matrix maps a label set
to [(unix_seconds, value), ...] (a range query). A label set is a sorted tuple of
(name, value) pairs with empty values left out, as Prometheus/Loki print `metric`.
"""

from __future__ import annotations

LabelSet = tuple[tuple[str, str], ...]
Vector = dict[LabelSet, float]
Matrix = dict[LabelSet, list[tuple[float, float]]]


def label_set(labels: dict, only: tuple | None = None) -> LabelSet:
    """Sorted (name, value) pairs; `only` keeps just those names (a `by (...)` clause)."""
    items = labels.items() if only is None else ((k, labels.get(k, "")) for k in only)
    return tuple(sorted((k, v) for k, v in items if v != ""))


def labels_of(key: LabelSet) -> dict:
    return dict(key)


def single_value(vector: Vector) -> float | None:
    """The value of a `by ()` / `sum(...)` answer: one series with no labels, or none."""
    if not vector:
        return None
    if len(vector) != 1:
        raise ValueError(f"expected one series, got {len(vector)}: {sorted(vector)}")
    return next(iter(vector.values()))


def by_label(vector: Vector, name: str) -> dict[str, float]:
    """{label value: number}, e.g. {"v1.2.1": 69.1} for a `by (model_version)` answer."""
    return {dict(key).get(name, ""): value for key, value in vector.items()}
