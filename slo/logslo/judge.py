"""The statistics that decide a comparison contract, knowing how many requests each side served.

Every comparison contract reads "the candidate's <figure> is at most <bound> worse than the
baseline's". Each figure comes with a one-sided confidence interval at the contract's level
(e.g. 99%) computed from both versions' samples, and the verdict follows from where the
interval lies against the bound:

    hold          the whole interval is above the bound: confidently worse than allowed
    promote       the whole interval is at or below the bound: confidently within it
    inconclusive  the interval straddles the bound: this much traffic cannot tell

The intervals (docs/review.md says why these):
- latency as a whole: the Hodges-Lehmann shift of log latency (the median of the
  candidate/baseline latency ratio over all pairs of requests) with the Mann-Whitney
  interval around it: a rank test over the whole distribution, free of its shape and
  far less noisy than any one quantile of a few hundred requests;
- a quantile ratio (p50, p95, p99): exact, distribution-free order-statistic bounds for
  each version's quantile (binomial), each at half the error rate so that their ratio
  keeps the contract's level (Bonferroni). Latency is skewed and heavy-tailed; these
  bounds assume nothing about its shape and stay honest for a p99 of a few hundred
  requests, where a bootstrap undercovers;
- a difference of two ratios (5xx): Newcombe's hybrid score interval (Wilson bounds of
  each ratio combined), which stays sane at zero or a handful of errors;
- a regression's predicted value: the relative difference of the two means with Welch's
  normal interval (delta method for the ratio), judged on its size: a candidate may move
  predictions neither up nor down by more than the bound;
- a class mix: the total variation distance (the share of answers that would have to
  change class), with a basic bootstrap interval, which corrects the upward bias a
  distance between two noisy histograms has.

Each function takes plain numbers or arrays and returns an Interval; nothing here knows
about logs, Loki or behave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .promql_math import quantile
from .verdicts import HOLD, INCONCLUSIVE, PROMOTE

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A figure's estimate with one-sided bounds at `confidence` each: the figure is
    above `low` with that confidence, and below `high` with that confidence."""

    estimate: float
    low: float
    high: float
    confidence: float

    def __post_init__(self):
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"a confidence level is between 50% and 100%, got {self.confidence!r}")


def decide(interval: Interval, bound: float) -> str:
    """The verdict of an "at most `bound`" contract."""
    if interval.low > bound:
        return HOLD
    if interval.high <= bound:
        return PROMOTE
    return INCONCLUSIVE


def detectable_change(interval: Interval, bound: float, power: float = 0.95, log_scale: bool = False) -> float:
    """The change the contract holds with probability `power` at this sample size, from
    the interval's half-width taken as `z * standard error` (a normal approximation,
    checked against replays by the calibration). `log_scale` for relative changes, whose
    intervals are about symmetric in log(1 + x)."""
    z_conf, z_power = stats.norm.ppf(interval.confidence), stats.norm.ppf(power)
    to = math.log1p if log_scale else (lambda x: x)
    sides = [abs(to(interval.estimate) - to(edge)) for edge in (interval.low, interval.high)
             if math.isfinite(edge) and (not log_scale or edge > -1)]
    if not sides:
        return math.inf
    se = max(sides) / z_conf  # the wider side: never claim more power than either side shows
    shift = to(bound) + (z_conf + z_power) * se
    return math.expm1(shift) if log_scale else shift


def sample_scale_to_decide(interval: Interval, bound: float) -> float | None:
    """How many times the current sample size would decide the contract, if the estimate
    stayed where it is and the interval shrank as 1/sqrt(n); None when it never would
    (the estimate sits on the bound) or when it is decided already."""
    if decide(interval, bound) != INCONCLUSIVE:
        return None
    gap = interval.estimate - bound
    if gap > 0:  # shrink the lower side until it clears the bound
        width = interval.estimate - interval.low
    elif gap < 0:
        width = interval.high - interval.estimate
    else:
        return None
    if not math.isfinite(width):
        return None
    return max(1.0, (width / abs(gap)) ** 2)


# -- quantiles ------------------------------------------------------------------------------

def quantile_ranks(n: int, phi: float, alpha: float) -> tuple[int, int]:
    """The 1-based ranks (l, u) of distribution-free one-sided bounds for the phi-quantile,
    each holding with probability >= 1 - alpha: x(l) <= q <= x(u), where the number of
    values below q is Binomial(n, phi). l < 1 or u > n: no bound at this n."""
    # x(l) <= q unless fewer than l values fall below q, which has probability
    # P(Bin(n, phi) <= l - 1): ppf(alpha) is the smallest k with cdf(k) >= alpha, so
    # l = k keeps cdf(l - 1) < alpha
    lower_rank = int(stats.binom.ppf(alpha, n, phi))
    # x(u) >= q unless u or more values fall below q: P(Bin(n, phi) <= u - 1) >= 1 - alpha
    upper_rank = int(stats.binom.ppf(1 - alpha, n, phi)) + 1
    return lower_rank, upper_rank


def quantile_bounds(sorted_values: np.ndarray, phi: float, alpha: float) -> tuple[float, float]:
    """Distribution-free one-sided bounds for the phi-quantile, each holding with
    probability >= 1 - alpha (quantile_ranks' order statistics). -inf/inf where n is too
    small for a bound."""
    n = len(sorted_values)
    if n == 0:
        return -math.inf, math.inf
    lower_rank, upper_rank = quantile_ranks(n, phi, alpha)
    low = sorted_values[lower_rank - 1] if lower_rank >= 1 else -math.inf
    high = sorted_values[upper_rank - 1] if upper_rank <= n else math.inf
    return float(low), float(high)


def quantile_change(baseline, candidate, phi: float, confidence: float) -> Interval:
    """The candidate's phi-quantile relative to the baseline's (+0.1 = 10% higher)."""
    base, cand = np.sort(np.asarray(baseline, float)), np.sort(np.asarray(candidate, float))
    if not len(base) or not len(cand):
        raise ValueError("a quantile needs at least one request on each side")
    alpha = (1 - confidence) / 2  # two bounds multiplied: each at half the error rate
    # Loki's quantile_over_time (rank phi*(n-1)): the estimate is the number the SLO contracts print
    estimate = quantile(phi, cand.tolist()) / quantile(phi, base.tolist()) - 1
    return quantile_ratio(estimate, quantile_bounds(base, phi, alpha), quantile_bounds(cand, phi, alpha), confidence)


def quantile_ratio(estimate: float, base_bounds: tuple, cand_bounds: tuple, confidence: float) -> Interval:
    """The ratio's interval from each version's quantile bounds (each at half the error rate)."""
    (base_low, base_high), (cand_low, cand_high) = base_bounds, cand_bounds

    def ratio(top, bottom):
        if bottom <= 0 or not math.isfinite(bottom):
            return math.inf if not math.isfinite(bottom) or top > 0 else 0.0
        return top / bottom - 1 if math.isfinite(top) else math.inf

    low = -1.0 if not math.isfinite(cand_low) or not math.isfinite(base_high) else ratio(cand_low, base_high)
    high = ratio(cand_high, base_low) if math.isfinite(base_low) and base_low > 0 else math.inf
    return Interval(estimate, low, high, confidence)


def latency_shift(baseline, candidate, confidence: float, widen: float = 1.0, process_sd: float = 0.0) -> Interval:
    """How much slower the candidate's requests are than the baseline's, as a whole
    (+0.1 = 10% slower): the Hodges-Lehmann estimate of the shift of log latency (the
    median over all pairs of log(candidate) - log(baseline)) and the interval the
    Mann-Whitney U test gives it. Ranks only: an outlier moves it no more than any other
    request. The pairs are counted with a binary search per shift (n log n), not listed,
    so a day of production traffic costs no more memory than its samples. `widen`
    stretches the interval around the estimate (in log latency): sqrt(design_effect(...))
    when requests close in time are alike. `process_sd` adds, in quadrature, the standard
    deviation of the shift between two process starts of the same code (each side one
    process: its speed is a draw that no number of its requests averages out)."""
    base = np.sort(np.log(np.maximum(np.asarray(baseline, float), 1e-3)))
    cand = np.log(np.maximum(np.asarray(candidate, float), 1e-3))
    nb, nc = len(base), len(cand)
    if not nb or not nc:
        raise ValueError("a latency shift needs at least one request on each side")
    pairs = nb * nc
    spread = mann_whitney_spread(nb, nc, confidence)

    def shift_at_rank(rank: float) -> float:
        """The smallest shift d with at least `rank` pairs whose difference is <= d."""
        if rank <= 0:
            return -math.inf
        if rank > pairs:
            return math.inf
        lo, hi = float(cand.min() - base.max()), float(cand.max() - base.min())
        for _ in range(60):  # to ~1e-16 of the range: exact for any latency the log prints
            mid = (lo + hi) / 2
            # pairs with cand - base <= mid, i.e. base >= cand - mid
            at_most = pairs - int(np.searchsorted(base, cand - mid, side="left").sum())
            if at_most >= rank:
                hi = mid
            else:
                lo = mid
        return hi

    estimate = (shift_at_rank(math.floor((pairs + 1) / 2)) + shift_at_rank(math.ceil((pairs + 1) / 2))) / 2
    return shift_interval(estimate, shift_at_rank(math.floor(pairs / 2 - spread)),
                          shift_at_rank(math.ceil(pairs / 2 + spread) + 1), confidence, widen, process_sd)


def mann_whitney_spread(nb: int, nc: int, confidence: float) -> float:
    """z times U's standard deviation (ties ignored): how many pairs either side of half
    the pairs the interval's ends lie."""
    return float(stats.norm.ppf(confidence)) * math.sqrt(nb * nc * (nb + nc + 1) / 12)


def shift_interval(estimate: float, low: float, high: float, confidence: float, widen: float = 1.0,
                   process_sd: float = 0.0) -> Interval:
    """A log-latency shift's estimate and its rank interval's ends as a relative change, each
    half-width stretched by `widen` with `process_sd` added in quadrature."""
    z = float(stats.norm.ppf(confidence))

    def side(width: float) -> float:  # a half-width, widened, with the process term added
        return z * math.hypot(width * widen / z, process_sd) if math.isfinite(width) else math.inf

    low = estimate - side(estimate - low)
    high = estimate + side(high - estimate)
    return Interval(math.expm1(estimate), math.expm1(low) if math.isfinite(low) else -1.0,
                    math.expm1(high) if math.isfinite(high) else math.inf, confidence)


def _weighted_medians(sorted_values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The median of `sorted_values` under each row of `weights` (resample counts)."""
    cumulative = np.cumsum(weights, axis=1)
    return sorted_values[(cumulative < cumulative[:, -1:] / 2).sum(axis=1)]


def design_effect(baseline, base_seconds, candidate, cand_seconds, block_s: float = 1.0,
                  resamples: int = 200, most: int = 10_000, seed: int = 0) -> float:
    """How much less than independent the requests are, for the latency comparison: the
    variance of the difference of median log latencies when whole seconds of both sides
    are resampled together (a block bootstrap), over its variance when single requests
    are; at least 1. A slow second of the whole machine slows both interleaved sides and
    cancels in the difference; a second in which one process alone stalls makes that
    side's requests alike: they weigh like fewer requests, and the interval must widen by
    the square root.
    Each side is thinned to `most` requests first (the variances, not the samples, matter)."""
    rng = np.random.default_rng(seed)
    sides = []
    for values, seconds in ((baseline, base_seconds), (candidate, cand_seconds)):
        values = np.log(np.maximum(np.asarray(values, float), 1e-3))
        seconds = np.asarray(seconds, float)
        if len(values) > most:
            keep = rng.choice(len(values), most, replace=False)
            values, seconds = values[keep], seconds[keep]
        order = np.argsort(values)
        sides.append((values[order], np.floor(seconds[order] / block_s)))
    if min(len(values) for values, _ in sides) < 2:
        return 1.0
    blocks, codes = np.unique(np.concatenate([b for _, b in sides]), return_inverse=True)
    (vb, _), (vc, _) = sides
    cb, cc = codes[:len(vb)], codes[len(vb):]
    if len(blocks) < 10:
        return 1.0  # too few seconds to tell
    chosen = rng.multinomial(len(blocks), np.full(len(blocks), 1 / len(blocks)), size=resamples)
    by_block = _weighted_medians(vc, chosen[:, cc]) - _weighted_medians(vb, chosen[:, cb])
    by_request = (_weighted_medians(vc, rng.multinomial(len(vc), np.full(len(vc), 1 / len(vc)), size=resamples))
                  - _weighted_medians(vb, rng.multinomial(len(vb), np.full(len(vb), 1 / len(vb)), size=resamples)))
    independent = float(np.var(by_request))
    return max(1.0, float(np.var(by_block)) / independent) if independent > 0 else 1.0


# -- ratios of requests ---------------------------------------------------------------------

def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score bounds of a proportion k/n at normal quantile z."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def ratio_difference(base_k: int, base_n: int, cand_k: int, cand_n: int, confidence: float) -> Interval:
    """The candidate's ratio minus the baseline's (+0.03 = 3 points more), Newcombe's
    hybrid score interval (method 10 of Newcombe 1998), each side one-sided at `confidence`."""
    if not base_n or not cand_n:
        raise ValueError("a ratio needs at least one request on each side")
    z = float(stats.norm.ppf(confidence))
    pb, pc = base_k / base_n, cand_k / cand_n
    lb, ub = wilson(base_k, base_n, z)
    lc, uc = wilson(cand_k, cand_n, z)
    d = pc - pb
    low = d - math.sqrt((pc - lc) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((uc - pc) ** 2 + (pb - lb) ** 2)
    return Interval(d, low, high, confidence)


# -- a predicted value ----------------------------------------------------------------------

def mean_change(baseline, candidate, confidence: float) -> Interval:
    """The candidate's mean over the baseline's, minus 1 (+0.05: predictions 5% higher), with
    a normal interval whose standard error is the delta method's for a ratio of two
    independent means (Welch: each side its own variance). Means of a few hundred
    predictions are close to normal whatever the values' shape; the replay in
    tests/slo/test_compare_values.py checks the coverage on real predictions."""
    base, cand = np.asarray(baseline, float), np.asarray(candidate, float)
    return mean_change_of(len(base), float(base.mean()) if len(base) else math.nan,
                          float(base.var(ddof=1)) if len(base) > 1 else math.nan,
                          len(cand), float(cand.mean()) if len(cand) else math.nan,
                          float(cand.var(ddof=1)) if len(cand) > 1 else math.nan, confidence)


def mean_change_of(nb: int, mb: float, vb: float, nc: int, mc: float, vc: float, confidence: float) -> Interval:
    """mean_change from each side's count, mean and variance (ddof=1)."""
    if nb < 2 or nc < 2:
        raise ValueError("a mean change needs at least two values on each side")
    if mb == 0:
        raise ValueError("the baseline's mean is 0: a relative change is undefined")
    ratio = mc / mb
    se = math.sqrt(vc / nc + ratio ** 2 * vb / nb) / abs(mb)
    z = float(stats.norm.ppf(confidence))
    return Interval(ratio - 1, ratio - 1 - z * se, ratio - 1 + z * se, confidence)


def magnitude(interval: Interval) -> Interval:
    """A signed change's size |x|, for an "at most so far away either way" contract: the
    interval of |x| from the signed one's (0 at the bottom when it straddles 0)."""
    low, high = interval.low, interval.high
    if low > 0:
        bounds = (low, high)
    elif high < 0:
        bounds = (-high, -low)
    else:
        bounds = (0.0, max(-low, high))
    return Interval(abs(interval.estimate), *bounds, interval.confidence)


# -- the class mix --------------------------------------------------------------------------

def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Half the L1 distance of two distributions (along the last axis): the share of
    answers that would have to change class to turn one mix into the other."""
    return 0.5 * np.abs(p - q).sum(axis=-1)


def mix_distance(base_counts: dict, cand_counts: dict, confidence: float, seed: int = 0) -> Interval:
    """Total variation distance between the two class mixes, with a basic bootstrap
    interval (each mix resampled from its own counts): the estimate 2*distance - the
    bootstrap's median, which removes the bias sampling noise adds to any distance (two
    draws of one mix are never at 0), and the bootstrap's spread on either side of it."""
    classes = sorted(set(base_counts) | set(cand_counts))
    base = np.array([base_counts.get(c, 0) for c in classes], float)
    cand = np.array([cand_counts.get(c, 0) for c in classes], float)
    nb, nc = int(base.sum()), int(cand.sum())
    if not nb or not nc:
        raise ValueError("a class mix needs at least one answer on each side")
    pb, pc = base / nb, cand / nc
    estimate = float(total_variation(pb, pc))
    rng = np.random.default_rng(seed)
    boot = total_variation(rng.multinomial(nb, pb, size=BOOTSTRAP_RESAMPLES) / nb,
                           rng.multinomial(nc, pc, size=BOOTSTRAP_RESAMPLES) / nc)
    alpha = 1 - confidence
    middle, top, bottom = (float(np.quantile(boot, q)) for q in (0.5, 1 - alpha, alpha))
    corrected = max(0.0, 2 * estimate - middle)
    # the basic bootstrap's bounds, as spreads around the corrected estimate: where the
    # correction is cut at 0 (two mixes closer than noise, e.g. the same answers to the
    # same inputs), the interval keeps its width instead of collapsing to [0, 0]
    low = max(0.0, corrected - (top - middle))
    high = min(1.0, corrected + (middle - bottom))
    return Interval(corrected, low, high, confidence)
