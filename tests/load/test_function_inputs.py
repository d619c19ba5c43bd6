"""The load follows the function: each function declares what the load tools send it in
its own folder (functions/<name>/load_inputs.py), and a Locust run against the real
diabetes function sends its real rows and its bad requests, every one answered as declared."""
import csv
import json
import shutil

import pytest

from loadkit import traffic
from loadkit.localrun import FUNCTIONS
from loadtools import run_locust
from test_locust_run import logged_lines

DIABETES_ROWS = [json.loads(line) for line in (FUNCTIONS / "diabetes" / "testdata" / "rows.jsonl").read_text()
                 .splitlines()]


def test_diabetes_declares_real_rows_alone_and_in_batches():
    good, bad = traffic.load_inputs("diabetes")
    by_instance = {json.dumps(r["instance"], sort_keys=True): r["row"] for r in DIABETES_ROWS}
    sizes = set()
    for payload in good:
        assert payload.content_type == "application/json"
        instances = json.loads(payload.body)["instances"]
        sizes.add(len(instances))
        assert payload.queries == (("", len(instances)),)  # a 200 carries one prediction a row
        rows = [by_instance[json.dumps(i, sort_keys=True)] for i in instances]  # every row is a real patient
        assert payload.label == (f"patient {rows[0]}" if len(rows) == 1 else f"patients {rows[0]}-{rows[-1]}")
    assert sizes == {1, 4, 16}
    share = sum(p.weight for p in good if p.name == "POST / 1 row") / sum(p.weight for p in good)
    assert share == pytest.approx(0.6)
    assert len({p.label for p in good if p.name == "POST / 1 row"}) == len(DIABETES_ROWS)
    kinds = {b.kind: b for b in bad}
    assert {"malformed JSON", "missing feature", "wrong content type"} <= set(kinds)
    assert kinds["wrong content type"].expected_status == 415
    with pytest.raises(ValueError):
        json.loads(kinds["malformed JSON"].body)
    assert "bmi" not in json.loads(kinds["missing feature"].body)["instances"][0]


def test_the_classifier_declares_its_photos_with_topk():
    good, bad = traffic.load_inputs("classifier")
    assert len(good) == 6 * len(traffic.SIZES) * len(traffic.FORMATS)
    assert {p.name for p in good} == {"POST / jpeg", "POST / png", "POST / webp"}
    assert all(p.queries == (("topk=1", 1), ("topk=3", 3), ("topk=5", 5)) for p in good)
    assert {b.kind for b in bad} == {"empty body", "corrupt bytes", "truncated image", "bad topk",
                                      "wrong content type"}


def test_a_function_without_load_inputs_is_sent_its_example(tmp_path):
    folder = tmp_path / "newfn"
    (folder / "testdata").mkdir(parents=True)
    shutil.copy(FUNCTIONS / "diabetes" / "testdata" / "example.json", folder / "testdata")
    good, bad = traffic.load_inputs(str(folder))
    assert [(p.label, p.content_type) for p in good] == [("example", "application/json")]
    assert good[0].body == (folder / "testdata" / "example.json").read_bytes() and bad == []


@pytest.fixture(scope="module")
def diabetes(function_process):
    return function_process("diabetes")


def test_locust_sends_diabetes_its_rows_and_bad_requests(diabetes, tmp_path):
    result = run_locust(diabetes.url, tmp_path, "--function", "diabetes", "--profile", "steady",
                        "--peak-users", "4", "--duration", "6", "--bad-ratio", "0.3", "--seed", "5",
                        "--max-p99-ms", "60000", "--max-fail-ratio", "0.0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "thresholds met" in result.stderr
    with open(tmp_path / "run_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Failure Count"]) == 0  # 200s with one prediction a row, 4xx as declared
    assert "POST / 1 row" in rows and any(name.startswith("bad: ") for name in rows)
    sent = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
    logged = logged_lines(diabetes, [s["request_id"] for s in sent])
    good = [s for s in sent if not s["name"].startswith("bad: ")]
    assert len(good) >= 10 and len(sent) > len(good)
    for s in sent:
        line = logged[s["request_id"]]
        assert line["status"] == s["status"]
        if s in good:  # its log line counts the rows the request carried
            assert line["status"] == 200 and line["instances"] == int(s["name"].split()[2])
        else:
            assert 400 <= line["status"] < 500 and line["error"]
