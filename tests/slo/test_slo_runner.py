"""`make slo` end to end: the `torchfaas-slo` command (`python -m logslo`) over the
contracts, with either backend, judging windows that must pass and windows that must
fail, naming the contract that failed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import logslo
from fake_loki import bare_json
from test_slo_logql import T0, request

REPO = Path(__file__).resolve().parents[2]
FEATURES = REPO / "functions" / "classifier" / "slo"
SLO_ENV = ("LOKI_URL", "LOG_FILE", "SLO_AT", "SLO_REPORT", "SLO_TAGS")


def run_slo(env_extra, features=FEATURES, tags=None, args=()):
    env = {k: v for k, v in os.environ.items() if k not in SLO_ENV}
    env.update(env_extra)
    # the child imports the same logslo as this test (this checkout's slo/)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(logslo.__file__).parents[1]), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "logslo", str(features), *args]
    if tags:
        cmd += ["--tags", tags]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def features_dir(tmp_path, text):
    """A features folder with one .feature and nothing else: the steps and hooks come
    from the package."""
    target = tmp_path / "features"
    target.mkdir()
    (target / "contract.feature").write_text(text)
    return target


def write_log(tmp_path, lines):
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def healthy_hour(versions=("v1",), **overrides):
    """One request every 10 s per version over the hour before T0: fast, no 5xx."""
    classes = ["daisy", "espresso", "tabby", "golden retriever", "lampshade", "moped"]
    lines = []
    for version in versions:
        for i in range(360):
            fields = dict(version=version, latency=20.0 + i % 7, cls=classes[i % len(classes)])
            fields.update(overrides.get(version, {}).get(i % 10, {}))
            lines.append(request(T0 - 5 - i * 10, **fields))
    return lines


def test_fixture_window_fails_on_the_canarys_5xx_ratio_and_the_classes_it_lacks(fixture_log, answers, tmp_path):
    report = tmp_path / "report.json"
    code, out = run_slo({"LOG_FILE": fixture_log, "SLO_AT": str(answers["instant_time"]), "SLO_REPORT": str(report)})
    assert code != 0, out
    # The fixture log's made-up classes ("tabby cat", "Egyptian Mau") are not the model's
    # labels the contract names ("tabby", "Egyptian cat"): their floors fail too.
    assert "3 of 19 SLO checks VIOLATED" in out
    assert "share of class 'tabby' in classifier's predictions, last 1h (floor): 0%" in out
    code, out = run_slo({"LOG_FILE": fixture_log, "SLO_AT": str(answers["instant_time"]), "SLO_REPORT": str(report),
                         "SLO_TAGS": "not @production-mix"})
    assert code != 0 and "1 of 7 SLO checks VIOLATED" in out, out
    assert "5xx ratio of classifier model version v1.3.0, last 1h: 1.47% (147%) above the bound" in out
    document = json.loads(report.read_text())
    failed = [c for c in document["contracts"] if not c["passed"]]
    assert [c["contract"] for c in failed] == ["5xx ratio of classifier model version v1.3.0, last 1h"]
    assert failed[0]["measured"] == 0.024691358024691357 and failed[0]["bound"] == 0.01
    assert bare_json(failed[0]["logql"][0]) == answers["queries"]["error_ratio_5xx_by_version_1h"]["query"]
    assert "| json event, status, model_version |" in failed[0]["logql"][0]
    assert document["passed"] is False and document["evaluated_at"] == answers["instant_time"]


def loki_json(vector):
    """A Loki instant answer for a vector; numbers as strings, as Loki prints them."""
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": dict(key), "value": [T0, repr(value)]} for key, value in vector.items()]}}


def test_same_report_from_loki_as_from_the_file(fixture_log, answers, fake_loki, tmp_path):
    """Loki answers every contract query: with the real Loki's answer where the fixtures
    have one, else with the file backend's number; both runs must report the same."""
    from fixture_catalog import F, V
    from logslo import queries as q
    from logslo.file_backend import FileBackend

    at = answers["instant_time"]
    file_backend = FileBackend(fixture_log)
    asked = [q.requests(F, 3600, by=V), q.requests(F, 86400, by=V), q.latency_quantile(F, 0.99, 3600, by=V),
             q.status_ratio(F, 3600, 500, by=V), q.class_share(F, 3600), q.class_share(F, 1800),
             q.class_share(F, 1800, offset_s=1800)]
    replies = {query.render(): loki_json(file_backend.instant(query, at)) for query in asked}
    real = {item["query"]: item["response"] for item in answers["queries"].values()}
    # the recorded answers were asked with a bare `| json`, the same numbers (test_slo_fixtures)
    replies.update({text: real[bare_json(text)] for text in replies if bare_json(text) in real})
    assert len({bare_json(text) for text in replies} & set(real)) == 4  # p99 and 5xx by version, shares, 24h traffic
    loki = fake_loki(lambda path, params: (200, replies[params["query"]]))

    file_report, loki_report = tmp_path / "file.json", tmp_path / "loki.json"
    run_slo({"LOG_FILE": fixture_log, "SLO_AT": str(at), "SLO_REPORT": str(file_report)})
    code, out = run_slo({"LOKI_URL": loki.url, "SLO_AT": str(at), "SLO_REPORT": str(loki_report)})
    assert code != 0 and "5xx ratio of classifier model version v1.3.0" in out, out
    from_file = json.loads(file_report.read_text())["contracts"]
    from_loki = json.loads(loki_report.read_text())["contracts"]
    assert from_loki == from_file
    assert {r["params"]["query"] for r in loki.requests} == set(replies)
    assert all(r["params"]["time"] == str(at) for r in loki.requests)


def test_healthy_window_passes(tmp_path):
    log = write_log(tmp_path, healthy_hour(versions=("v1", "v2")))
    features = features_dir(tmp_path, FEATURES.joinpath("latency.feature").read_text())
    shutil.copy(FEATURES / "errors.feature", features)
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0)}, features=features)
    assert code == 0, out
    assert "all 4 SLO checks passed" in out


def test_slow_canary_fails_latency_naming_the_version(tmp_path):
    # Every 10th request of v2 takes 900 ms: its p99 breaks 250 ms, v1's does not.
    log = write_log(tmp_path, healthy_hour(versions=("v1", "v2"), v2={0: {"latency": 900.0}}))
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0)}, features=FEATURES / "latency.feature")
    assert code != 0
    assert "FAIL  p99 latency of classifier model version v2, last 1h" in out
    assert "PASS  p99 latency of classifier model version v1, last 1h" in out
    assert "1 of 2 SLO checks VIOLATED" in out


def test_class_collapse_and_shift_fail_the_prediction_contracts(tmp_path):
    # The last 30 minutes answer "daisy" to everything.
    lines = healthy_hour()
    lines += [request(T0 - 1 - i * 2, cls="daisy") for i in range(900)]
    log = write_log(tmp_path, lines)
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0)}, features=FEATURES / "predictions.feature",
                        tags="not @production-mix")
    assert code != 0
    assert "FAIL  largest class share of classifier ('daisy'), last 1h" in out
    assert "FAIL  class mix shift (PSI) of classifier" in out


def test_retirement_question(tmp_path):
    log = write_log(tmp_path, healthy_hour(versions=("v1",)))
    features = features_dir(tmp_path, """Feature: retirement
  Background:
    Given the function "classifier"
  Scenario: old version still called
    When I look at the requests of the last 24 hours
    Then model version "v1" is no longer called
  Scenario: new version called
    When I look at the requests of the last 24 hours
    Then model version "v1" was called at least 300 times
""")
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0)}, features=features)
    assert code != 0
    assert "FAIL  requests to classifier model version v1, last 24h: 360 requests (bound: at most 0 requests)" in out
    assert "PASS  requests to classifier model version v1, last 24h: 360 requests (bound: at least 300" in out


def test_empty_window_fails_instead_of_passing(tmp_path):
    log = write_log(tmp_path, healthy_hour())
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0 + 86400)}, features=FEATURES / "errors.feature")
    assert code != 0
    assert "no inference request in the window" in out


def test_unreachable_loki_fails_with_a_clear_error(tmp_path):
    code, out = run_slo({"LOKI_URL": "http://127.0.0.1:9", "LOKI_TIMEOUT": "2", "SLO_AT": str(T0)},
                        features=FEATURES / "errors.feature")
    assert code != 0
    assert "ERROR (contract not judged)" in out and "unreachable" in out


def test_no_backend_configured_is_a_usage_error():
    code, out = run_slo({}, features=FEATURES / "errors.feature")
    assert code != 0
    assert "set LOKI_URL (query Loki) or LOG_FILE" in out


def test_the_skeletons_contracts_judge_the_function_being_checked(tmp_path):
    """The template's skeleton contracts name no function: SLO_FUNCTION (make slo FUNCTION=)
    does; without it the run fails saying so, it does not judge nothing."""
    skeleton = REPO / "template" / "python3-http-torch" / "function" / "slo"
    lines = [line.replace('"function": "classifier"', '"function": "tabular"') for line in healthy_hour()]
    log = write_log(tmp_path, lines)
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0), "SLO_FUNCTION": "tabular"}, features=skeleton)
    assert code == 0, out
    assert "p99 latency of tabular model version v1" in out and "5xx ratio of tabular model version v1" in out
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0), "SLO_FUNCTION": ""}, features=skeleton)
    assert code != 0 and "SLO_FUNCTION names no function" in out, out
