"""load/soak.py's RSS verdict: transient decode buffers and glibc's arena steps must not
read as growth, a leak must. Its per-minute p99 is the SLO's."""
from pathlib import Path

from loadkit.stats import percentile
from soak import p99, rss_growth

HERE = Path(__file__).parent


def samples(values, every=2.0):
    return [(i * every, v) for i, v in enumerate(values)]


def test_spikes_that_are_given_back_are_not_growth():
    # the shape of a CI run that a median-of-3 measure failed at +44 MiB:
    # large photos' buffers lift RSS by ~40 MiB for a sample or two, then it falls back
    flat = [476.8, 477.0, 512.3, 476.8, 519.4, 477.1] * 10
    memory = rss_growth(samples(flat), warmup_s=30, window_s=10)
    assert memory["growth_mib"] == 0.0 and memory["floor_growth_mib"] == 0.0


def test_a_steady_leak_is_growth_even_under_spikes():
    # 0.5 MiB per 2-s sample (15 MiB/min) for 120 s, with the same transient spikes on top
    leak = [470 + 0.5 * i + (40 if i % 3 == 2 else 0) for i in range(60)]
    memory = rss_growth(samples(leak), warmup_s=30, window_s=10)
    assert memory["slope_mib_per_min"] == 15.0
    low, high = memory["slope_ci95_mib_per_min"]
    assert low <= 15.0 <= high
    assert memory["growth_mib"] == 0.25 * (118 - 30)  # the slope over the time after warm-up


def test_glibc_arena_steps_that_then_stay_flat_are_not_read_as_a_leak():
    # a fresh-clone CI soak (classifier, 91 req/s, 2 s samples): the floor stepped +10 and
    # +23 MiB at 42 s and 48 s as new threads got their malloc arenas, then crept 5 MiB
    # in 50 s; first-to-last read +38.5 MiB and failed the old check at 32
    ci_run = [tuple(map(float, line.split())) for line in (HERE / "soak_rss_ci.txt").read_text().splitlines()]
    memory = rss_growth(ci_run, warmup_s=30, window_s=10)
    assert memory["floor_growth_mib"] > 32
    assert memory["growth_mib"] < 32  # 17.0: the slope most floor pairs agree on, 14.6 MiB/min
    # the same run with a leak of 0.5 MiB/s (~5 KiB a request at its rate) added fails
    leaking = [(t, v + 0.5 * t) for t, v in ci_run]
    assert rss_growth(leaking, warmup_s=30, window_s=10)["growth_mib"] > 32


def test_the_warm_up_is_left_out_and_too_few_samples_after_it_give_no_verdict():
    warming = [300 + 5 * i for i in range(15)] + [400.0] * 20  # grows for 30 s, then flat
    assert rss_growth(samples(warming), warmup_s=30, window_s=10)["growth_mib"] == 0.0
    assert rss_growth(samples([300.0, 310.0]), warmup_s=30, window_s=10) is None
    assert rss_growth(samples([300.0] * 20), warmup_s=30, window_s=10) is None


def test_the_per_minute_p99_is_the_slo_percentile():
    """Interpolated as Loki's quantile_over_time (stats.percentile), not nearest-rank: of 1..10
    nearest-rank would say 10, Loki says 9.91."""
    latencies = [float(v) for v in range(1, 11)]
    assert p99(latencies) == percentile(latencies, 0.99) == 9.91
    assert p99([]) is None
