"""The comparison contracts decided: each one's figure, its interval at the contract's
confidence level (judge.py), and the verdict against the bound.

Each function takes anything with `.samples` (version -> Sample), `.baseline`,
`.candidate`, `.versions`, `.logql` and `.process_sd`: a `Comparison` over one window, a
watch's look (watch.py) or a calibration replay.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

from .. import judge
from ..contracts import fmt
from ..promql_math import quantile
from ..verdicts import INCONCLUSIVE, POWER, PROMOTE, overall

DEFAULT_CONFIDENCE = 0.99


class Compared(Protocol):
    """What a contract reads of two versions' requests (a Comparison, a watch's look)."""

    baseline: str
    candidate: str
    versions: tuple
    samples: dict  # version -> sampling.Sample
    logql: dict  # figure -> LogQL text
    process_sd: float


@dataclass
class Judgement:
    """One comparison contract decided: its figure's estimate and interval against the bound."""

    contract: str
    unit: str  # "x%" relative change, "points" ratio difference, "share" of answers, "requests"
    bound: float
    verdict: str
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    detectable: float | None = None  # the change held POWER of the time at this sample size
    needed_requests: int | None = None  # a version, to decide an inconclusive contract
    note: str = ""
    logql: list = field(default_factory=list)

    def as_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _judged(contract, unit, bound, interval, c: Compared, logql, note="", log_scale=False) -> Judgement:
    verdict = judge.decide(interval, bound)
    scale = judge.sample_scale_to_decide(interval, bound)
    n = min(s.requests for s in c.samples.values())
    return Judgement(contract, unit, bound, verdict, interval.estimate, interval.low, interval.high,
                     interval.confidence, judge.detectable_change(interval, bound, POWER, log_scale),
                     None if scale is None else math.ceil(n * scale), note, logql)


def enough_requests(c: Compared, at_least: int) -> Judgement:
    n = {v: c.samples[v].requests for v in c.versions}
    fewest = min(n.values())
    return Judgement(f"each version served at least {at_least} requests", "requests", at_least,
                     PROMOTE if fewest >= at_least else INCONCLUSIVE, estimate=fewest,
                     needed_requests=None if fewest >= at_least else at_least,
                     note=f"baseline {n[c.baseline]}, candidate {n[c.candidate]}",
                     logql=[c.logql[f"requests of {v}"] for v in c.versions])


def latency_shift(c: Compared, at_most_pct: float, confidence: float) -> Judgement:
    b, k = c.samples[c.baseline], c.samples[c.candidate]
    timed = not any(math.isnan(t) for t in b.seconds + k.seconds)
    deff = judge.design_effect(b.latency_ms, b.seconds, k.latency_ms, k.seconds) if timed else 1.0
    interval = judge.latency_shift(b.latency_ms, k.latency_ms, confidence, widen=math.sqrt(deff),
                                   process_sd=c.process_sd)
    note = f"median {fmt(quantile(0.5, k.latency_ms), 'ms')} vs {fmt(quantile(0.5, b.latency_ms), 'ms')}"
    if deff > 1:
        note += f"; interval widened x{math.sqrt(deff):.2f}: requests close in time are alike"
    if c.process_sd:
        note += f"; with {c.process_sd:.1%} between process starts"
    return _judged("latency of the candidate vs the baseline (all requests, Hodges-Lehmann)", "x%",
                   at_most_pct / 100, interval, c, [c.logql[f"requests of {v}"] for v in c.versions], note,
                   log_scale=True)


def latency_quantile(c: Compared, phi: float, at_most_pct: float, confidence: float) -> Judgement:
    name = f"p{phi * 100:g} latency"
    base, cand = c.samples[c.baseline].latency_ms, c.samples[c.candidate].latency_ms
    interval = judge.quantile_change(base, cand, phi, confidence)
    return _judged(f"{name} of the candidate vs the baseline", "x%", at_most_pct / 100, interval, c,
                   [c.logql[name]], f"{fmt(quantile(phi, cand), 'ms')} vs {fmt(quantile(phi, base), 'ms')}",
                   log_scale=True)


def status_ratio(c: Compared, kind: str, at_most_points: float, confidence: float) -> Judgement:
    """The candidate's 5xx (or 4xx) ratio minus the baseline's."""
    count = {"5xx": lambda s: s.faults, "4xx": lambda s: s.rejections}[kind]
    b, k = c.samples[c.baseline], c.samples[c.candidate]
    interval = judge.ratio_difference(count(b), b.requests, count(k), k.requests, confidence)
    return _judged(f"{kind} ratio of the candidate minus the baseline's", "points", at_most_points / 100, interval,
                   c, [c.logql[f"{kind} ratio"]], f"{count(k)}/{k.requests} vs {count(b)}/{b.requests}")


def class_mix(c: Compared, at_most_pct: float, confidence: float) -> Judgement:
    base, cand = c.samples[c.baseline].classes, c.samples[c.candidate].classes
    interval = judge.mix_distance(base, cand, confidence)
    nb, nc = sum(base.values()), sum(cand.values())
    movers = sorted(set(base) | set(cand), key=lambda k: -abs(cand[k] / nc - base[k] / nb))[:3]
    return _judged("answers whose class differs between the mixes (total variation)", "share", at_most_pct / 100,
                   interval, c, [c.logql[f"class shares of {v}"] for v in c.versions],
                   "biggest moves: " + ", ".join(f"{k!r} {fmt(base[k] / nb, '%')}->{fmt(cand[k] / nc, '%')}"
                                                 for k in movers))


def value_mean(c: Compared, name: str, at_most_pct: float, confidence: float) -> Judgement:
    """How far the candidate's mean `name` (a numeric field of each 200) is from the
    baseline's, either way: a regression that predicts higher or lower on the same inputs."""
    base, cand = c.samples[c.baseline].values(name), c.samples[c.candidate].values(name)
    missing = [v for v, values in ((c.baseline, base), (c.candidate, cand)) if len(values) < 2]
    if missing:
        raise LookupError(f"model version {', '.join(missing)} logged fewer than two numeric {name!r} "
                          "on its 200 answers: is it a field of this function's log line?")
    signed = judge.mean_change(base, cand, confidence)
    note = (f"mean {sum(cand) / len(cand):.4g} vs {sum(base) / len(base):.4g}: "
            f"{fmt(signed.estimate, 'x%')} [{fmt(signed.low, 'x%')}, {fmt(signed.high, 'x%')}] either way")
    return _judged(f"mean {name} of the candidate vs the baseline, either way", "x%", at_most_pct / 100,
                   judge.magnitude(signed), c, [c.logql[f"requests of {v}"] for v in c.versions], note)


def verdict(judgements: list, errors: list) -> str:
    return overall((j.verdict for j in judgements), broken=bool(errors))
