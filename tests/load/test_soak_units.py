"""load/soak.py's RSS verdict: transient decode buffers must not read as growth, a leak must."""
from soak import rss_growth


def samples(values, every=2.0):
    return [(i * every, v) for i, v in enumerate(values)]


def test_spikes_that_are_given_back_are_not_growth():
    # the shape of a CI run that the old median-of-3 measure failed at +44 MiB:
    # large photos' buffers lift RSS by ~40 MiB for a sample or two, then it falls back
    flat = [476.8, 477.0, 512.3, 476.8, 519.4, 477.1] * 10
    baseline, final, growth = rss_growth(samples(flat), warmup_s=30, window_s=10)
    assert (baseline, final) == (476.8, 476.8) and growth == 0.0


def test_a_steady_leak_is_growth_even_under_spikes():
    # 0.5 MiB per 2-s sample for 120 s, with the same transient spikes on top
    leak = [470 + 0.5 * i + (40 if i % 3 == 2 else 0) for i in range(60)]
    _, _, growth = rss_growth(samples(leak), warmup_s=30, window_s=10)
    # the floors are where each window starts, t=30 s and t=108 s: 39 samples apart
    assert growth == 19.5


def test_the_warm_up_is_left_out_and_no_sample_after_it_gives_no_verdict():
    warming = [300 + 5 * i for i in range(15)] + [400.0] * 20  # grows for 30 s, then flat
    assert rss_growth(samples(warming), warmup_s=30, window_s=10)[2] == 0.0
    assert rss_growth(samples([300.0, 310.0]), warmup_s=30, window_s=10) == (None, None, None)
