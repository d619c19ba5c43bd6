"""The raw-sample counting of a restarted replica (logslo.prometheus_aggregates.rises) and
the instance matcher that splits its series from the steady ones."""
import re

from logslo.prometheus_aggregates import Series, instances, rises


def test_each_sample_adds_its_rise_or_its_whole_value_after_a_reset():
    samples = [(10, "5"), (11, "9"), (12, "9"), (13, "2"), (14, "6")]  # restarted between 12 and 13
    assert rises(4.0, samples) == [(10.0, 1.0), (11.0, 4.0), (12.0, 0.0), (13.0, 2.0), (14.0, 4.0)]
    assert sum(n for _, n in rises(4.0, samples)) == (9 - 4) + 6
    # born in the window: its first value is counted whole
    assert rises(None, [(10, "3"), (11, "7")]) == [(10.0, 3.0), (11.0, 4.0)]


def test_restarted_instances_are_matched_exactly_and_left_out_of_the_steady_query():
    matcher = instances({"10.0.0.5:8080", "10.0.0.17:8080"})
    pattern = re.search(r'=~"(.*)"', matcher).group(1).replace("\\\\", "\\")
    assert re.fullmatch(pattern, "10.0.0.5:8080") and not re.fullmatch(pattern, "10.0.0.55:8080")
    assert not re.fullmatch(pattern, "10a0a0a5:8080")  # the dots are literal
    series = Series("torchfaas_requests_total", "classifier", frozenset({"10.0.0.5:8080"}), event="inference")
    assert series.steady() == ('torchfaas_requests_total{function="classifier",event="inference",'
                               'instance!~"10\\\\.0\\\\.0\\\\.5:8080"}')
    assert 'instance=~"10' in series.restarted_only()
    assert Series("x", "f").steady() == 'x{function="f"}'  # no restart: no instance matcher
