"""The statistics behind the comparison verdicts (slo/logslo/judge.py): each interval keeps
its confidence level, matches a reference computation, and decides as documented."""

import math
from collections import Counter

import numpy as np
import pytest

from logslo import judge


@pytest.mark.parametrize("n,phi", [(60, 0.5), (400, 0.95), (1000, 0.99), (2000, 0.5)])
def test_quantile_bounds_keep_their_confidence_on_a_skewed_distribution(n, phi):
    """Exact order-statistic bounds: each side misses the true quantile of a lognormal
    (latency-like) at most alpha of the time, whatever the shape."""
    rng = np.random.default_rng(n)
    true = math.exp(1.0 * __import__("scipy").stats.norm.ppf(phi))
    trials, alpha = 3000, 0.01
    misses_low = misses_high = 0
    for _ in range(trials):
        x = np.sort(rng.lognormal(0.0, 1.0, size=n))
        low, high = judge.quantile_bounds(x, phi, alpha)
        misses_low += low > true
        misses_high += high < true
    # binomial noise around alpha: 3000 trials at 1% give at most ~2% by chance
    assert misses_low / trials <= 0.02 and misses_high / trials <= 0.02, (misses_low, misses_high)


def test_a_p99_of_few_requests_has_no_upper_bound():
    low, high = judge.quantile_bounds(np.arange(1.0, 101.0), 0.99, 0.005)
    assert high == math.inf and low < 99


def test_latency_shift_is_the_hodges_lehmann_estimate_with_the_mann_whitney_interval():
    """Against the brute-force definition: every pairwise difference of log latency, sorted."""
    rng = np.random.default_rng(7)
    base, cand = rng.lognormal(3.0, 0.5, 300), rng.lognormal(3.1, 0.5, 280)
    got = judge.latency_shift(base, cand, 0.99)
    diffs = np.sort((np.log(cand)[None, :] - np.log(base)[:, None]).ravel())
    pairs = len(diffs)
    spread = 2.3263478740408408 * math.sqrt(300 * 280 * (300 + 280 + 1) / 12)
    assert got.estimate == pytest.approx(math.expm1(np.median(diffs)), rel=1e-9)
    assert got.low == pytest.approx(math.expm1(diffs[math.floor(pairs / 2 - spread) - 1]), rel=1e-9)
    assert got.high == pytest.approx(math.expm1(diffs[math.ceil(pairs / 2 + spread)]), rel=1e-9)
    assert got.low < 0.105 < got.high  # the true shift exp(0.1) - 1


def test_latency_shift_sees_a_shift_of_the_body_that_p99_misses():
    """The case the old judge held by luck: +33% in the middle, the tail unchanged."""
    rng = np.random.default_rng(3)
    body = rng.lognormal(3.0, 0.3, 2000)
    tail = rng.lognormal(4.5, 0.2, 40)
    base = np.concatenate([body, tail])
    cand = np.concatenate([rng.lognormal(3.0, 0.3, 2000) * 1.33, rng.lognormal(4.5, 0.2, 40)])
    shift = judge.latency_shift(base, cand, 0.99)
    assert judge.decide(shift, 0.10) == judge.HOLD
    assert judge.decide(judge.quantile_change(base, cand, 0.99, 0.99), 0.10) != judge.HOLD


def test_ratio_difference_is_newcombes_hybrid_score_interval():
    """Newcombe (1998), table II, example (a): 56/70 vs 48/80, 95% interval 0.0524 to 0.3339
    (two-sided 95% = each side one-sided at 97.5%)."""
    got = judge.ratio_difference(48, 80, 56, 70, 0.975)
    assert got.estimate == pytest.approx(0.2)
    assert got.low == pytest.approx(0.0524, abs=1e-4) and got.high == pytest.approx(0.3339, abs=1e-4)


def test_no_errors_on_either_side_is_promoted_only_with_enough_requests():
    assert judge.decide(judge.ratio_difference(0, 2000, 0, 2000, 0.99), 0.01) == judge.PROMOTE
    assert judge.decide(judge.ratio_difference(0, 100, 0, 100, 0.99), 0.01) == judge.INCONCLUSIVE


def test_mix_distance_corrects_the_bias_of_two_noisy_draws():
    rng = np.random.default_rng(5)
    shares = [0.3, 0.2, 0.2, 0.15, 0.1, 0.05]
    draw = lambda n: Counter(rng.choice(6, size=n, p=shares).tolist())  # noqa: E731 - a two-line helper
    first, second = draw(2000), draw(2000)
    raw = 0.5 * sum(abs(first[k] - second[k]) for k in range(6)) / 2000  # two draws of one mix: never 0
    same = judge.mix_distance(first, second, 0.99)
    assert same.low <= same.estimate <= same.high
    assert same.estimate < raw and same.high < 0.05 and judge.decide(same, 0.10) == judge.PROMOTE
    moved = draw(2000)
    moved = Counter({k: int(v * 0.8) for k, v in moved.items()}) + Counter({5: int(sum(moved.values()) * 0.2)})
    apart = judge.mix_distance(draw(2000), moved, 0.99)
    assert 0.15 < apart.estimate < 0.22 and judge.decide(apart, 0.10) == judge.HOLD


def test_verdicts_follow_where_the_interval_lies():
    assert judge.decide(judge.Interval(0.3, 0.2, 0.4, 0.99), 0.1) == judge.HOLD
    assert judge.decide(judge.Interval(0.0, -0.05, 0.05, 0.99), 0.1) == judge.PROMOTE
    assert judge.decide(judge.Interval(0.08, 0.0, 0.16, 0.99), 0.1) == judge.INCONCLUSIVE


def test_an_inconclusive_contract_says_how_much_more_data_would_decide():
    straddling = judge.Interval(0.05, 0.0, 0.10 + 0.05, 0.99)  # half-width 0.10, 0.05 below the bound
    assert judge.sample_scale_to_decide(straddling, 0.10) == pytest.approx(4.0)
    assert judge.sample_scale_to_decide(judge.Interval(0.1, 0.0, 0.2, 0.99), 0.1) is None  # on the bound
    assert judge.sample_scale_to_decide(judge.Interval(0.0, -0.05, 0.05, 0.99), 0.1) is None  # decided


def test_detectable_change_matches_simulated_power():
    """The report's "held 95% of the time at this size" for the latency contract, against
    replaying shifted samples: the simulated hold rate at that change is about 95%."""
    rng = np.random.default_rng(11)
    pool = rng.lognormal(3.0, 0.6, 20000)
    first = judge.latency_shift(rng.choice(pool, 800), rng.choice(pool, 800), 0.99)
    detectable = judge.detectable_change(first, 0.10, 0.95, log_scale=True)
    holds = sum(judge.decide(judge.latency_shift(rng.choice(pool, 800), rng.choice(pool, 800) * (1 + detectable),
                                                 0.99), 0.10) == judge.HOLD for _ in range(200))
    assert 0.88 <= holds / 200 <= 0.995, (detectable, holds)


def test_a_confidence_level_outside_50_to_100_percent_is_refused():
    with pytest.raises(ValueError):
        judge.Interval(0.0, 0.0, 0.0, 1.0)


def test_design_effect_is_one_for_independent_requests_and_widens_for_one_sided_bursts():
    """Interleaved sides: a slow second of the whole machine slows both and cancels in the
    comparison, but a second in which one process alone stalls (its GC, a worker
    descheduled) makes that side's requests alike: the block bootstrap sees it and the
    latency interval widens by the root of the design effect."""
    rng = np.random.default_rng(2)
    seconds = np.sort(rng.uniform(0, 90, 4000))
    second = seconds.astype(int)
    side = rng.integers(0, 2, 4000).astype(bool)
    calm = rng.lognormal(3.0, 0.5, 4000)
    assert judge.design_effect(calm[side], seconds[side], calm[~side], seconds[~side]) < 1.3
    shared = calm * np.exp(rng.normal(0, 0.6, 90))[second]
    assert judge.design_effect(shared[side], seconds[side], shared[~side], seconds[~side]) < 1.3
    own = calm * np.where(side, np.exp(rng.normal(0, 0.4, 90))[second], np.exp(rng.normal(0, 0.4, 90))[second])
    deff = judge.design_effect(own[side], seconds[side], own[~side], seconds[~side])
    assert deff > 1.5, deff
    plain = judge.latency_shift(own[side], own[~side], 0.99)
    wide = judge.latency_shift(own[side], own[~side], 0.99, widen=math.sqrt(deff))
    assert wide.estimate == pytest.approx(plain.estimate)
    assert (wide.high - wide.low) > 1.2 * (plain.high - plain.low)


def test_the_process_term_widens_the_latency_interval_in_quadrature():
    """make review's sides are one process start each: a 2% sd between starts is added to
    the rank interval's own spread, not multiplied into it."""
    rng = np.random.default_rng(4)
    base, cand = rng.lognormal(3.0, 0.5, 2000), rng.lognormal(3.0, 0.5, 2000)
    plain = judge.latency_shift(base, cand, 0.99)
    with_starts = judge.latency_shift(base, cand, 0.99, process_sd=0.02)
    z = 2.3263478740408408
    own = (math.log1p(plain.high) - math.log1p(plain.estimate)) / z
    assert math.log1p(with_starts.high) - math.log1p(with_starts.estimate) == pytest.approx(z * math.hypot(own, 0.02),
                                                                                            rel=1e-6)
    assert with_starts.estimate == plain.estimate
