"""The load tools' pure parts: payloads, shapes, capacity arithmetic, log summary."""
import json
import subprocess
import sys

import pytest
from PIL import Image

import capacity
import logsummary
import traffic
from loadtools import LOAD, REPO, clean_env


@pytest.fixture(scope="module")
def corpus():
    return traffic.build_corpus()


def test_corpus_is_real_photos_in_three_formats_and_sizes(corpus):
    assert len(corpus) == 6 * len(traffic.SIZES) * len(traffic.FORMATS)
    assert {p.fmt for p in corpus} == {"jpeg", "png", "webp"}
    for payload in corpus:
        with Image.open(__import__("io").BytesIO(payload.body)) as image:
            assert image.format == traffic.FORMATS[payload.fmt][0]
            assert max(image.size) == payload.long_side
        assert payload.content_type == f"image/{payload.fmt}"


def test_picker_follows_the_weights_and_is_reproducible(corpus):
    picks = [traffic.Picker(corpus, seed=7).payload() for _ in range(1)]
    again = [traffic.Picker(corpus, seed=7).payload() for _ in range(1)]
    assert picks == again
    picker = traffic.Picker(corpus, seed=1)
    formats = [picker.payload().fmt for _ in range(3000)]
    assert 0.5 < formats.count("jpeg") / len(formats) < 0.7  # weight 6 of 10
    photos = {picker.payload().photo for _ in range(500)}
    assert len(photos) == 6  # every photo is used: no class dominates the predictions


def test_bad_requests_cover_the_client_mistakes(corpus):
    bad = {b.kind: b for b in traffic.bad_requests(corpus)}
    assert bad["empty body"].body == b""
    assert bad["wrong content type"].expected_status == 415
    assert "topk=0" in bad["bad topk"].query
    assert all(400 <= b.expected_status < 500 for b in bad.values())


def test_request_ids_are_unique_and_safe():
    ids = traffic.RequestIds("lt-test")
    made = [ids.next() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(len(i) <= 64 and all(c.isalnum() or c in "._:-" for c in i) for i in made)


TICKS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import shapes
out = {}
for name, kwargs, times in [("steady", dict(users=5, duration=10), [0, 9.9, 10]),
                            ("step", dict(users=8, step_users=2, step_seconds=5), [0, 4.9, 5, 12, 19.9, 20, 24.9, 25]),
                            ("spike", dict(users=12, duration=30), [0, 9.9, 10, 19.9, 20, 29.9, 30])]:
    shape = shapes.build(name, **kwargs)
    ticks = []
    for t in times:
        shape.get_run_time = lambda t=t: t
        tick = shape.tick()
        ticks.append(None if tick is None else [tick[0], tick[1]])
    out[name] = ticks
print(json.dumps(out))
"""


def test_shapes_tick_as_documented():
    # shapes.py imports Locust (gevent patching): run it in its own interpreter
    result = subprocess.run([sys.executable, "-c", TICKS, str(LOAD)], capture_output=True, text=True,
                            cwd=REPO, env=clean_env(), timeout=60, check=True)
    ticks = json.loads(result.stdout.strip().splitlines()[-1])
    assert [t and t[0] for t in ticks["steady"]] == [5, 5, None]
    # 2, 4, 6, 8 users, 5 s each, the top step held twice as long, then stop
    assert [t and t[0] for t in ticks["step"]] == [2, 2, 4, 6, 8, 8, 8, None]
    assert [t and t[0] for t in ticks["spike"]] == [2, 2, 12, 12, 2, 2, None]
    assert ticks["spike"][2][1] == 12  # the spike arrives all at once


def test_capacity_step_statistics():
    samples = [(float(ms), None) for ms in range(1, 101)] + [(5.0, "HTTPError 429")]
    step = capacity.summarise(users=4, seconds=10, samples=samples)
    assert step.requests == 101 and step.failures == 1
    assert step.rps == pytest.approx(10.0)
    assert (step.p50_ms, step.p95_ms, step.p99_ms) == (50.0, 95.0, 99.0)
    assert step.in_flight == pytest.approx(10.0 * 50.5 / 1000)
    assert capacity.judge(step, slo_p99_ms=250, max_fail_ratio=0.05, min_requests=50).passed
    assert not capacity.judge(capacity.summarise(4, 10, samples), 90, 0.05, 50).passed
    assert "failure ratio" in capacity.judge(capacity.summarise(4, 10, samples), 250, 0.0, 50).verdict
    assert "not meaningful" in capacity.judge(capacity.summarise(4, 10, samples[:10]), 250, 0.05, 50).verdict


def test_capacity_steps_labels_and_best_step():
    assert list(capacity.user_steps(1, 1.25, 20)) == [1, 2, 3, 4, 5, 7, 9, 12, 15, 19]
    steps = [capacity.Step(users=u, seconds=10, rps=r, passed=p, mean_ms=m)
             for u, r, p, m in [(1, 20, True, 50), (2, 34, True, 58), (4, 38, True, 105), (6, 37, False, 160)]]
    best = capacity.best_step(steps)
    assert best.users == 4
    labels = capacity.scale_labels(best, "capacity", peak_rps=200)
    assert labels == {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "6",  # 200 / (38 x 0.9)
                      "com.openfaas.scale.target": "4", "com.openfaas.scale.type": "capacity",
                      "com.openfaas.scale.target-proportion": "0.9"}
    assert capacity.scale_labels(best, "rps")["com.openfaas.scale.target"] == "38"
    assert capacity.scale_labels(best, "rps")["com.openfaas.scale.max"] == "10"
    assert capacity.best_step([capacity.Step(users=1, seconds=1)]) is None
    yaml = capacity.labels_yaml(labels)
    assert 'com.openfaas.scale.type: "capacity"' in yaml and yaml.startswith("functions:\n  classifier:")


def test_log_summary_and_sent_matching(tmp_path):
    log = tmp_path / "function.log"
    lines = [{"event": "startup"}]
    lines += [{"event": "inference", "request_id": f"r{i}", "status": 200, "latency_ms": float(i),
               "top1_class": "espresso", "model_version": "v1"} for i in range(1, 100)]
    lines += [{"event": "inference", "request_id": "bad", "status": 400, "latency_ms": 1.0, "error": "empty_body",
               "model_version": "v1"}]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    parsed, broken = logsummary.read_log(str(log))
    summary = logsummary.summarise(parsed)
    assert broken == 0 and summary["requests"] == 100
    assert summary["by_status"] == {200: 99, 400: 1} and summary["errors"] == {"empty_body": 1}
    assert summary["latency_200_ms"]["p99"] == 99.0  # nearest rank: ceil(0.99 x 99)
    sent = tmp_path / "sent.jsonl"
    sent.write_text("\n".join(json.dumps({"request_id": r, "echoed_id": r, "status": s})
                              for r, s in [("r1", 200), ("bad", 400), ("r2", 500), ("ghost", 200)]))
    count, problems = logsummary.match_sent(parsed, str(sent))
    assert count == 4
    assert problems == ["r2: logged status 200, client saw 500", "ghost: no log line"]
    with open(log, "a") as f:
        f.write("not json\n")
    assert logsummary.main([str(log)]) == 1  # a non-JSON stdout line breaks the contract
