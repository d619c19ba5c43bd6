"""The comparison contracts decided: each one's figure, its interval at the contract's
confidence level (judge.py), and the verdict against the bound.

Each function takes anything with `.samples` (version -> Sample or Binned), `.baseline`,
`.candidate`, `.versions`, `.logql` and `.process_sd`: a `Comparison` over one window, a
watch's look (watch.py) or a calibration replay. Both versions are every request (Sample:
judge.py's statistics) or both are counts (Binned: judge_binned.py's, the same intervals
from bins); the figure, the verdict and the advice are built alike from either.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

from .. import judge, judge_binned
from ..contracts import fmt
from ..verdicts import INCONCLUSIVE, POWER, PROMOTE, overall
from .binned import Binned

DEFAULT_CONFIDENCE = 0.99


class Compared(Protocol):
    """What a contract reads of two versions' requests (a Comparison, a watch's look)."""

    baseline: str
    candidate: str
    versions: tuple
    samples: dict  # version -> sampling.Sample, or binned.Binned for both
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


def _sides(c: Compared) -> tuple:
    """(baseline, candidate, binned): the two versions' requests, and whether they are counts."""
    b, k = c.samples[c.baseline], c.samples[c.candidate]
    binned = isinstance(b, Binned)
    if binned != isinstance(k, Binned):
        raise TypeError("one version was read as lines and the other as aggregates: judge both alike")
    return b, k, binned


def _resolution(b, k) -> str:
    """What the latency bins resolve at the median (binned versions only)."""
    widest = max(judge_binned.resolution(b.latency), judge_binned.resolution(k.latency))
    return f"; bins resolve {widest:.1%} at the median"


def enough_requests(c: Compared, at_least: int) -> Judgement:
    n = {v: c.samples[v].requests for v in c.versions}
    fewest = min(n.values())
    return Judgement(f"each version served at least {at_least} requests", "requests", at_least,
                     PROMOTE if fewest >= at_least else INCONCLUSIVE, estimate=fewest,
                     needed_requests=None if fewest >= at_least else at_least,
                     note=f"baseline {n[c.baseline]}, candidate {n[c.candidate]}",
                     logql=[c.logql[f"requests of {v}"] for v in c.versions])


def latency_shift(c: Compared, at_most_pct: float, confidence: float) -> Judgement:
    b, k, binned = _sides(c)
    if binned:
        deff = judge_binned.design_effect(b, k) if b.steps and k.steps else 1.0
        interval = judge_binned.latency_shift(b.latency, k.latency, confidence, widen=math.sqrt(deff),
                                              process_sd=c.process_sd)
    else:
        timed = not any(math.isnan(t) for t in b.seconds + k.seconds)
        deff = judge.design_effect(b.latency_ms, b.seconds, k.latency_ms, k.seconds) if timed else 1.0
        interval = judge.latency_shift(b.latency_ms, k.latency_ms, confidence, widen=math.sqrt(deff),
                                       process_sd=c.process_sd)
    note = f"median {fmt(k.quantile(0.5), 'ms')} vs {fmt(b.quantile(0.5), 'ms')}"
    if deff > 1:
        note += f"; interval widened x{math.sqrt(deff):.2f}: requests close in time are alike"
    if c.process_sd:
        note += f"; with {c.process_sd:.1%} between process starts"
    if binned:
        note += _resolution(b, k)
    return _judged("latency of the candidate vs the baseline (all requests, Hodges-Lehmann)", "x%",
                   at_most_pct / 100, interval, c, [c.logql[f"requests of {v}"] for v in c.versions], note,
                   log_scale=True)


def latency_quantile(c: Compared, phi: float, at_most_pct: float, confidence: float) -> Judgement:
    name = f"p{phi * 100:g} latency"
    b, k, binned = _sides(c)
    if binned:
        interval = judge_binned.quantile_change(b.latency, k.latency, phi, confidence)
    else:
        interval = judge.quantile_change(b.latency_ms, k.latency_ms, phi, confidence)
    note = f"{fmt(k.quantile(phi), 'ms')} vs {fmt(b.quantile(phi), 'ms')}"
    if binned:
        note += "; bounds at bin edges"
    return _judged(f"{name} of the candidate vs the baseline", "x%", at_most_pct / 100, interval, c,
                   [c.logql[name]], note, log_scale=True)


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
    b, k, binned = _sides(c)
    base, cand = b.values(name), k.values(name)
    if binned:
        (nb, mb), (nc, mc) = (base.n, base.mean), (cand.n, cand.mean)
    else:
        (nb, mb), (nc, mc) = (len(base), sum(base) / max(1, len(base))), (len(cand), sum(cand) / max(1, len(cand)))
    missing = [v for v, n in ((c.baseline, nb), (c.candidate, nc)) if n < 2]
    if missing:
        raise LookupError(f"model version {', '.join(missing)} logged fewer than two numeric {name!r} "
                          "on its 200 answers: is it a field of this function's log line?")
    signed = judge_binned.mean_change(base, cand, confidence) if binned else judge.mean_change(base, cand, confidence)
    note = (f"mean {mc:.4g} vs {mb:.4g}: "
            f"{fmt(signed.estimate, 'x%')} [{fmt(signed.low, 'x%')}, {fmt(signed.high, 'x%')}] either way")
    if binned and mb:
        # each side's mean from bin middles: off by at most half its widest bucket (the
        # errors of similar distributions mostly cancel; this is the worst case)
        note += f"; bins: each mean within {max(base.off_by, cand.off_by) / abs(mb):.1%} at worst"
    return _judged(f"mean {name} of the candidate vs the baseline, either way", "x%", at_most_pct / 100,
                   judge.magnitude(signed), c, [c.logql[f"requests of {v}"] for v in c.versions], note)


def verdict(judgements: list, errors: list) -> str:
    return overall((j.verdict for j in judgements), broken=bool(errors))
