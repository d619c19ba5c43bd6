"""A comparison feature file's contracts, decided on two samples without behave: what
the calibration replays and each look of a watch run, with the same step functions
`torchfaas-slo compare` runs (behave_glue.py), so all three judge alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import parse

from ..steps import parse_percent
from .behave_glue import STEPS, WARMUP_STEP, step_enough
from .judgements import DEFAULT_CONFIDENCE, verdict
from .sampling import Sample


@dataclass(frozen=True)
class Contracts:
    """The `Then` steps of a comparison feature (step function, its arguments), the
    feature's confidence level, and its warm-up (seconds of each version not judged)."""

    confidence: float
    steps: tuple
    warmup_s: float = 0.0
    function: str = ""  # `Given the function "NAME"` ("" when the feature does not name one)

    @property
    def minimum_requests(self) -> int:
        """The `each version served at least N requests` of the feature (0 without one)."""
        return max((args["count"] for func, args in self.steps if func is step_enough), default=0)


def read(path: str) -> Contracts:
    """The contracts of a comparison .feature file, matched against the registered steps."""
    confidence, warmup_s, function, found = DEFAULT_CONFIDENCE, 0.0, "", []
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            words = raw.strip().split(" ", 1)
            if len(words) != 2 or words[0] not in ("Given", "And", "Then", "But"):
                continue
            text = words[1]
            level = parse.parse("a confidence level of {level}", text)
            if level:
                confidence = parse_percent(level["level"])
                continue
            named = parse.parse('the function "{name}"', text)
            if named:
                function = named["name"]
                continue
            grace = parse.parse(WARMUP_STEP, text)
            if grace:
                warmup_s = float(grace["seconds"])
                continue
            for keyword, pattern, func in STEPS:
                if keyword != "then":
                    continue
                match = parse.parse(pattern, text)
                if match:
                    found.append((func, match.named))
                    break
    if not found:
        raise ValueError(f"no comparison contract in {path}")
    return Contracts(confidence, tuple(found), warmup_s, function)


def pair(base: Sample, cand: Sample, baseline="baseline", candidate="candidate") -> SimpleNamespace:
    """What the contract functions read of a Comparison, for two samples."""
    return SimpleNamespace(baseline=baseline, candidate=candidate, versions=(baseline, candidate),
                           samples={baseline: base, candidate: cand}, logql=_NoLogQL(), process_sd=0.0)


class _NoLogQL(dict):
    def __missing__(self, key):
        return ""


def decide(contracts: Contracts, compared, confidence: float | None = None) -> tuple:
    """(overall verdict, [Judgement]) of the contracts on `compared` (see `pair`), each
    interval at `confidence` (default: the feature's level)."""
    context = SimpleNamespace(slo_results=[], state=SimpleNamespace(
        comparison=compared, confidence=confidence or contracts.confidence))
    for func, args in contracts.steps:
        try:
            func(context, **args)
        except AssertionError:
            pass  # a hold: recorded in slo_results like any verdict
    return verdict(context.slo_results, []), context.slo_results
