"""LogQL rendering and the file backend's Loki semantics on small hand-made logs."""

import json
from datetime import UTC

import pytest

from logslo import queries
from logslo.file_backend import FileBackend
from logslo.logfile import parse_rfc3339_ns
from logslo.logql import LabelFilter, LogQuery, RangeAggregation, format_duration
from logslo.psi import psi

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z


def stamp(seconds: float) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def request(at, version="v1", status=200, latency=10.0, cls="daisy", **extra):
    line = {"timestamp": stamp(at), "level": "INFO", "message": "inference", "event": "inference",
            "request_id": f"r{at}", "function": "classifier", "model_name": "m", "model_version": version,
            "status": status, "latency_ms": latency}
    if status == 200:
        line.update(top1_class=cls, top1_prob=0.9)
    line.update(extra)
    return json.dumps(line)


def backend(tmp_path, lines):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return FileBackend(str(path))


def test_durations_and_offsets_render_as_in_logql():
    assert [format_duration(s) for s in (300, 1800, 3600, 86400, 90)] == ["5m", "30m", "1h", "24h", "90s"]
    text = queries.class_share("classifier", 1800, offset_s=1800).render()
    assert "[30m] offset 30m)" in text and " / on() group_left sum(" in text


def test_quotes_in_label_values_are_escaped():
    assert LabelFilter("top1_class", "=", 'say "hi"').render() == 'top1_class="say \\"hi\\""'


def test_wrong_combinations_are_refused():
    logs = LogQuery((("app", "x"),))
    with pytest.raises(ValueError):
        RangeAggregation("quantile_over_time", logs, 60, phi=0.5)  # no unwrap
    with pytest.raises(ValueError):
        LabelFilter("status", ">=", "500")  # string compared numerically


def test_rfc3339_parsing_is_exact():
    assert parse_rfc3339_ns("2026-11-21T04:00:00.123Z") == 1795233600_123_000_000
    assert parse_rfc3339_ns("2026-11-21T05:00:00.5+01:00") == 1795233600_500_000_000


def test_window_is_left_open_right_closed(tmp_path):
    fb = backend(tmp_path, [request(T0 - 3600), request(T0 - 3599.999), request(T0), request(T0 + 0.001)])
    assert fb.instant(queries.requests("classifier", 3600), T0) == {(): 2.0}


def test_non_json_lines_and_bad_numbers_are_dropped_like_error_filters(tmp_path):
    fb = backend(tmp_path, [
        "2026/11/21 04:00:00 Forked function has started",
        "[1, 2]",
        request(T0 - 1, latency=10.0),
        request(T0 - 2, latency="slow"),  # unwrap fails: not a sample, still a request
        request(T0 - 3, latency=30.0),
    ])
    assert fb.instant(queries.requests("classifier", 60), T0) == {(): 3.0}
    assert fb.instant(queries.latency_quantile("classifier", 0.5, 60), T0) == {(): 20.0}
    assert fb.log.not_json == 2


def test_without_by_every_request_is_its_own_series(tmp_path):
    fb = backend(tmp_path, [request(T0 - i, latency=float(i)) for i in range(1, 5)])
    no_by = queries.latency_quantile("classifier", 0.99, 60, by=None)
    # a bare `| json` makes every field a label: each request is its own series (what
    # Loki does, and why the contracts say `by ()`)
    assert len(fb.instant(no_by.bare(), T0)) == 4
    # `| json event, latency_ms`: the series are told apart by those fields only
    assert len(fb.instant(no_by, T0)) == 1
    assert fb.instant(queries.latency_quantile("classifier", 0.99, 60), T0) == {(): pytest.approx(3.97)}


def test_ratio_leaves_out_versions_without_faults_and_other_functions(tmp_path):
    fb = backend(tmp_path, [request(T0 - 1, "v1", 500), request(T0 - 2, "v1"), request(T0 - 3, "v2"),
                            request(T0 - 4, "v1", 500, function="other")])
    got = fb.instant(queries.status_ratio("classifier", 60, 500, by=("model_version",)), T0)
    assert got == {(("model_version", "v1"),): 0.5}


def test_psi_is_zero_for_equal_mixes_and_grows_with_shift():
    same = {"a": 0.5, "b": 0.5}
    assert psi(same, same) == 0
    assert 0.1 < psi({"a": 0.8, "b": 0.2}, same) < psi({"a": 1.0}, same)


def test_a_field_list_must_cover_the_filters_and_the_by_labels():
    with pytest.raises(ValueError, match="does not extract status"):
        LogQuery((("app", "x"),), (LabelFilter("status", "=", 200),), fields=("event",))
    with pytest.raises(ValueError, match="by \\(model_version\\)"):
        RangeAggregation("count_over_time", LogQuery((("app", "x"),), fields=("event",)), 60, by=("model_version",))
    query = queries.requests("classifier", 60, by=("model_version",))
    assert '| json event, model_version | __error__=""' in query.render()
    assert '| json | __error__=""' in query.bare().render()


def test_field_list_and_bare_json_count_the_same_lines(tmp_path):
    fb = backend(tmp_path, [
        "2026/11/21 04:00:00 Forked function has started", '["inference"]', '"inference"',
        request(T0 - 1, "v1", 500), request(T0 - 2, "v2"), request(T0 - 3, "v2", latency="slow"),
        json.dumps({"timestamp": stamp(T0 - 4), "event": "model_loaded", "function": "classifier"}),
    ])
    for query in (queries.requests("classifier", 60, by=("model_version",)),
                  queries.status_ratio("classifier", 60, 500, by=("model_version",)),
                  queries.latency_quantile("classifier", 0.5, 60, by=("model_version",)),
                  queries.class_share("classifier", 60)):
        assert fb.instant(query, T0) == fb.instant(query.bare(), T0), query.render()
