"""`torchfaas-slo compare` reading each version as counts Loki computed (COMPARE_PATH=
aggregates: LokiBackend.version_counts, metric queries and no line) gives the verdicts of
the line path, through a real HTTP server (the Loki stand-in) over the same log."""

import json

import pytest

from loki_standin import LokiStandIn
from test_slo_compare import T0, bad_canary, baseline, good_canary, run_compare, verdicts, write


def compare_through(loki, out, path):
    code, text = run_compare({"LOKI_URL": loki.url, "SLO_AT": str(T0), "COMPARE_BASELINE": "v1",
                              "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(out), "COMPARE_PATH": path})
    return code, text, json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("canary,verdict", [(bad_canary, "hold"), (good_canary, "promote")])
def test_aggregates_from_loki_give_the_line_path_s_verdicts(tmp_path, canary, verdict):
    log = write(tmp_path, baseline() + canary())
    with LokiStandIn(log) as loki:
        line_code, line_text, lines = compare_through(loki, tmp_path / "lines", "lines")
        before = len(loki.requests)
        agg_code, agg_text, aggregates = compare_through(loki, tmp_path / "aggregates", "aggregates")
        asked = loki.requests[before:]
    assert not loki.errors
    assert line_code == agg_code, line_text + agg_text
    assert lines["verdict"] == aggregates["verdict"] == verdict
    assert verdicts(lines) == verdicts(aggregates)
    assert (lines["path"], aggregates["path"]) == ("lines", "aggregates")
    # the aggregate path read no line: every query it sent was a metric query
    assert not [r for r in asked if r["path"].endswith("query_range") and "count_over_time" not in
                r["params"]["query"] and "quantile_over_time" not in r["params"]["query"]]
    assert any("label_format bin=" in r["params"]["query"] for r in asked)
    # binning moves the latency shift's estimate by less than a bin (0.5 ms at 20 ms: 2.5%)
    shift = {doc["path"]: next(c for c in doc["contracts"] if c["contract"].startswith("latency of"))
             for doc in (lines, aggregates)}
    assert shift["aggregates"]["estimate"] == pytest.approx(shift["lines"]["estimate"], abs=0.01)
    print(f"\n{verdict}: latency shift lines {shift['lines']['estimate']:+.4f} "
          f"[{shift['lines']['low']:+.4f}, {shift['lines']['high']:+.4f}], aggregates "
          f"{shift['aggregates']['estimate']:+.4f} [{shift['aggregates']['low']:+.4f}, "
          f"{shift['aggregates']['high']:+.4f}]")
