"""The statistics of judge.py on binned counts (compare/binned.py's `Histogram`, `Moments`):
the same intervals, computed from how many requests fell in each bin instead of from
every request, and what binning costs each of them.

- latency shift (Hodges-Lehmann, Mann-Whitney interval): each bin's requests are taken
  as spread evenly over the bin in log latency (ties broken by the bin's width, not
  counted as ties); the count of (baseline, candidate) pairs whose log ratio is at most d
  is then exact under that model: U(d) = sum over baseline bins of count * the mean of
  the candidate's piecewise-linear cumulative count over the bin moved by d, an integral
  evaluated in closed form (O(bins log bins) a d, found by bisection like the line path).
  What binning costs: a request can sit anywhere in its bin, so the estimate can be off
  by at most the log-width of the bins around the median (a 1 ms bin at a 20 ms median:
  5%); with smooth latency the errors of many bins cancel and the estimate lands within a
  small fraction of a bin (the calibration replay measures it, docs/review.md). The
  resolution, the width of the median's bin, is printed with the judgement.
- a quantile's bounds: the order statistics' ranks are judge.quantile_ranks', and each
  bound is conservative: the lower at the lower edge of the bin holding its rank, the
  upper at its upper edge. The interval is wider than the line path's by up to a bin on
  each side, so it decides a little later, never wrongly for binning's sake. The
  estimate places ranks evenly inside their bin.
- ratios and the class mix: counts are all they read, so nothing is lost.
- a value's mean: exact when streamed (running moments); from a value histogram, each
  value at its bin's middle (the mean off by at most half a bin, the variance a little
  high).
- the design effect: judge.design_effect's block bootstrap of the median difference, with
  each time step of the stepped histograms a block and medians interpolated in their bin.
"""

from __future__ import annotations

import math

import numpy as np

from . import judge
from .compare.binned import Histogram, Moments

FLOOR_MS = 1e-3  # as judge.latency_shift: latencies below 1 us are 1 us


def log_edges(hist: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, count) of the occupied bins in log latency: a first bin from 0 is
    taken as wide (in log) as its neighbour, an unbounded last bin likewise (a rank
    statistic only needs those requests below, or above, the rest)."""
    used = hist.occupied()
    lowers, uppers = used.lowers.astype(float), used.uppers.astype(float)
    if lowers[0] <= 0:
        ratio = uppers[1] / uppers[0] if len(uppers) > 1 and math.isfinite(uppers[1]) else 2.0
        lowers[0] = uppers[0] / ratio
    if not math.isfinite(uppers[-1]):
        ratio = lowers[-1] / lowers[-2] if len(lowers) > 1 and lowers[-2] > 0 else 2.0
        uppers[-1] = lowers[-1] * ratio
    lowers, uppers = np.maximum(lowers, FLOOR_MS), np.maximum(uppers, FLOOR_MS * (1 + 1e-9))
    return np.log(lowers), np.log(uppers), used.counts.astype(float)


class _Spread:
    """A side's count over log latency, spread evenly in each bin: its cumulative count F
    (piecewise linear) and that count's integral G, in closed form at any point."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, counts: np.ndarray):
        # the bins are contiguous (occupied() keeps the empty ones between)
        self.x = np.append(lower[0], upper)
        self.width = np.diff(self.x)
        self.f = np.append(0.0, np.cumsum(counts))
        self.g = np.append(0.0, np.cumsum((self.f[:-1] + self.f[1:]) / 2 * self.width))
        self.n = self.f[-1]

    def integral(self, t: np.ndarray) -> np.ndarray:
        """G(t): the integral of F from -inf to t."""
        j = np.clip(np.searchsorted(self.x, t, side="right") - 1, 0, len(self.width) - 1)
        into = np.clip(t - self.x[j], 0.0, self.width[j])
        slope = (self.f[j + 1] - self.f[j]) / self.width[j]
        inside = self.g[j] + self.f[j] * into + slope * into ** 2 / 2
        beyond = self.g[-1] + self.n * (t - self.x[-1])
        return np.where(t <= self.x[0], 0.0, np.where(t >= self.x[-1], beyond, inside))


def latency_shift(baseline: Histogram, candidate: Histogram, confidence: float, widen: float = 1.0,
                  process_sd: float = 0.0) -> judge.Interval:
    """judge.latency_shift on binned latency (the module docstring says the model)."""
    nb, nc = baseline.total, candidate.total
    if not nb or not nc:
        raise ValueError("a latency shift needs at least one request on each side")
    b_low, b_high, b_counts = log_edges(baseline)
    cand = _Spread(*log_edges(candidate))
    pairs = float(nb) * nc

    def at_most(d: float) -> float:
        """Pairs whose candidate - baseline log latency is at most d."""
        return float(np.sum(b_counts * (cand.integral(b_high + d) - cand.integral(b_low + d)) / (b_high - b_low)))

    def shift_at(rank: float) -> float:
        if rank <= 0:
            return -math.inf
        if rank > pairs:
            return math.inf
        lo, hi = float(cand.x[0] - b_high[-1]), float(cand.x[-1] - b_low[0])
        for _ in range(60):
            mid = (lo + hi) / 2
            if at_most(mid) >= rank:
                hi = mid
            else:
                lo = mid
        return hi

    spread = judge.mann_whitney_spread(nb, nc, confidence)
    return judge.shift_interval(shift_at(pairs / 2), shift_at(pairs / 2 - spread), shift_at(pairs / 2 + spread),
                                confidence, widen, process_sd)


def resolution(hist: Histogram) -> float:
    """The relative width of the bin holding the median: about the smallest latency change
    these bins resolve at the middle of the distribution (1 ms at 20 ms: 0.05)."""
    n = hist.total
    if not n:
        return math.nan
    i = hist.bin_of_rank(max(1, (n + 1) // 2))
    lower, upper = float(hist.lowers[i]), float(hist.uppers[i])
    if not math.isfinite(upper) or upper <= 0:
        return math.inf
    return (upper - lower) / max((upper + lower) / 2, FLOOR_MS)


def quantile_bounds(hist: Histogram, phi: float, alpha: float) -> tuple[float, float]:
    """judge.quantile_bounds from bins: the lower bound at the lower edge of the bin holding
    the lower rank, the upper at the upper edge of the bin holding the upper rank."""
    n = hist.total
    if not n:
        return -math.inf, math.inf
    lower_rank, upper_rank = judge.quantile_ranks(n, phi, alpha)
    low = float(hist.lowers[hist.bin_of_rank(lower_rank)]) if lower_rank >= 1 else -math.inf
    high = float(hist.uppers[hist.bin_of_rank(upper_rank)]) if upper_rank <= n else math.inf
    return low, high


def quantile_change(baseline: Histogram, candidate: Histogram, phi: float, confidence: float) -> judge.Interval:
    """judge.quantile_change on binned latency: conservative bounds, interpolated estimate."""
    if not baseline.total or not candidate.total:
        raise ValueError("a quantile needs at least one request on each side")
    alpha = (1 - confidence) / 2
    estimate = candidate.quantile(phi) / baseline.quantile(phi) - 1
    return judge.quantile_ratio(estimate, quantile_bounds(baseline, phi, alpha),
                                quantile_bounds(candidate, phi, alpha), confidence)


def mean_change(baseline: Moments, candidate: Moments, confidence: float) -> judge.Interval:
    return judge.mean_change_of(baseline.n, baseline.mean, baseline.variance, candidate.n, candidate.mean,
                                candidate.variance, confidence)


def _medians(lower: np.ndarray, upper: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The median log latency under each row of `weights` (counts over the bins), placed
    linearly inside its bin."""
    cumulative = np.cumsum(weights, axis=1)
    half = cumulative[:, -1:] / 2
    i = np.minimum((cumulative < half).sum(axis=1), weights.shape[1] - 1)
    rows = np.arange(len(weights))
    before = np.where(i > 0, cumulative[rows, np.maximum(i - 1, 0)], 0.0)
    inside = np.where(weights[rows, i] > 0, (half[:, 0] - before) / np.maximum(weights[rows, i], 1e-300), 0.5)
    return lower[i] + np.clip(inside, 0, 1) * (upper[i] - lower[i])


def design_effect(baseline, candidate, resamples: int = 200, seed: int = 0) -> float:
    """judge.design_effect from two Binned's histograms over time (`latency_over_time`):
    each step of either side a block. 1 with fewer than 10 steps."""
    rng = np.random.default_rng(seed)
    (tb, rows_b), (tc, rows_c) = baseline.latency_over_time(), candidate.latency_over_time()
    steps = np.union1d(tb, tc)
    if len(steps) < 10 or rows_b.sum() < 2 or rows_c.sum() < 2:
        return 1.0
    sides = []
    for times, rows, hist in ((tb, rows_b, baseline.latency), (tc, rows_c, candidate.latency)):
        aligned = np.zeros((len(steps), rows.shape[1]))
        aligned[np.searchsorted(steps, times)] = rows
        full = Histogram(hist.uppers, aligned.sum(axis=0).astype(np.int64), hist.floor)
        used = full.occupied()
        first = int(np.searchsorted(hist.uppers, used.uppers[0]))
        lower, upper, _ = log_edges(full)
        sides.append((lower, upper, aligned[:, first:first + len(used.uppers)]))
    chosen = rng.multinomial(len(steps), np.full(len(steps), 1 / len(steps)), size=resamples).astype(float)
    by_block = _medians(*sides[1][:2], chosen @ sides[1][2]) - _medians(*sides[0][:2], chosen @ sides[0][2])
    by_request = []
    for lower, upper, rows in sides:
        counts = rows.sum(axis=0)
        n = int(counts.sum())
        by_request.append(_medians(lower, upper, rng.multinomial(n, counts / n, size=resamples).astype(float)))
    independent = float(np.var(by_request[1] - by_request[0]))
    return max(1.0, float(np.var(by_block)) / independent) if independent > 0 else 1.0
