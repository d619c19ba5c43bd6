"""The load tools' pure parts: payloads, shapes, percentiles, capacity arithmetic, log summary."""
import ast
import json
import math
import random
from collections import defaultdict

import numpy
import pytest
from PIL import Image

import capacity
import logsummary
import sizing
from loadkit import shapes, stats, traffic
from loadkit.functionlog import read_log
from loadkit.localrun import LOAD, REPO

LOKI_FIXTURES = REPO / "tests" / "slo" / "fixtures" / "loki"  # a real Loki's answers over a real log


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


def test_splitter_gives_every_host_the_same_mix_in_random_order_reproducibly():
    """make review's split: each kind of request alternates between the hosts in random
    blocks, so both get the same payload mix, no period lines up with the payload
    sequence, and the same seed gives the same split."""
    hosts = ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
    kinds = [random.Random(i).choice("abcdefg") for i in range(3000)]
    one, two = traffic.Splitter(hosts, seed=7), traffic.Splitter(hosts, seed=7)
    sequence = [one.next(kind) for kind in kinds]
    assert sequence == [two.next(kind) for kind in kinds]
    for kind in set(kinds):
        sides = [host for host, k in zip(sequence, kinds) if k == kind]
        assert abs(sides.count(hosts[0]) - sides.count(hosts[1])) <= 1, kind
        firsts = sides[::2]  # each block's first host: random, not always the same
        assert 0.3 < firsts.count(hosts[0]) / len(firsts) < 0.7
    other = [traffic.Splitter(hosts, seed=8).next(kind) for kind in kinds]
    assert other != sequence
    with pytest.raises(ValueError):
        traffic.Splitter(hosts[:1])


def test_request_ids_are_unique_and_safe():
    ids = traffic.RequestIds("lt-test")
    made = [ids.next() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(len(i) <= 64 and all(c.isalnum() or c in "._:-" for c in i) for i in made)


def ticks(shape, times):
    return [shape.tick(t) for t in times]


def test_shapes_tick_as_documented():
    steady = ticks(shapes.build("steady", users=5, duration=10), [0, 9.9, 10])
    step = ticks(shapes.build("step", users=8, step_users=2, step_seconds=5), [0, 4.9, 5, 12, 19.9, 20, 24.9, 25])
    spike = ticks(shapes.build("spike", users=12, duration=30), [0, 9.9, 10, 19.9, 20, 29.9, 30])
    assert [t and t[0] for t in steady] == [5, 5, None]
    # 2, 4, 6, 8 users, 5 s each, the top step held twice as long, then stop
    assert [t and t[0] for t in step] == [2, 2, 4, 6, 8, 8, 8, None]
    assert [t and t[0] for t in spike] == [2, 2, 12, 12, 2, 2, None]
    assert spike[2][1] == 12  # the spike arrives all at once


def test_shapes_are_plain_tick_objects_with_their_defaults():
    for name, cls in shapes.PROFILES.items():
        shape = shapes.build(name)
        assert type(shape) is cls and cls.__mro__ == (cls, object)  # no Locust base class
        users, spawn_rate = shape.tick(0)
        assert users >= 1 and spawn_rate > 0
        assert shape.tick(shape.duration) is None  # a profile is one tick() per second of the run
    assert shapes.build("steady").tick(59.9) == (4, 2.0)
    assert shapes.build("step").tick(0) == (4, 4.0)  # 32 users by steps of 32/8
    assert shapes.build("spike").duration == 90
    with pytest.raises(ValueError, match="unknown load profile 'sawtooth'"):
        shapes.build("sawtooth")


def test_percentile_is_lokis_quantile_over_time():
    values = [float(v) for v in range(100, 0, -1)]  # any order
    # rank phi*(n-1), linear interpolation between the closest ranks
    assert stats.percentile(values, 0.5) == pytest.approx(50.5)
    assert stats.percentile(values, 0.99) == pytest.approx(99.01)
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 1) == 100.0
    assert stats.percentile([7.0], 0.99) == 7.0
    assert math.isnan(stats.percentile([], 0.99)) and stats.percentile([], 0.5, empty=0.0) == 0.0
    with pytest.raises(ValueError, match="0.99"):
        stats.percentile(values, 99)
    rng = random.Random(3)
    for n in (2, 3, 10, 101, 1000):
        sample = [rng.lognormvariate(3, 1) for _ in range(n)]
        for phi in (0.01, 0.5, 0.95, 0.99):
            # numpy's default ("linear") is the same definition
            assert stats.percentile(sample, phi) == pytest.approx(float(numpy.quantile(sample, phi)), rel=1e-12)


def test_log_summary_percentiles_are_the_ones_loki_gave():
    """The demo's log summary and the SLO report agree: same log, same p50/p95/p99 as a real Loki 3.7."""
    answers = json.loads((LOKI_FIXTURES / "answers.json").read_text())["queries"]

    def loki(name):
        return {tuple(r["metric"].values()): float(r["value"][1]) for r in answers[name]["response"]["data"]["result"]}

    lines, _broken = read_log(LOKI_FIXTURES / "requests.jsonl")
    summary = logsummary.summarise(lines)  # the log is the query's whole [1h] window
    assert summary["requests"] == loki("requests_1h")[()]
    assert summary["latency_ms"]["p50"] == loki("p50_latency_1h")[()]  # to the last bit
    assert summary["latency_ms"]["p99"] == loki("p99_latency_1h")[()]
    by_version = defaultdict(list)
    for line in lines:
        if line.get("event") == "inference" and "latency_ms" in line:
            by_version[line["model_version"]].append(float(line["latency_ms"]))
    for query, phi in (("p95_latency_by_version_1h", 0.95), ("p99_latency_by_version_1h", 0.99)):
        expected = loki(query)
        assert set(expected) == {(v,) for v in by_version}
        for version, latencies in by_version.items():
            assert stats.percentile(latencies, phi) == expected[(version,)], (query, version)


def load_sources():
    return [*sorted(LOAD.glob("*.py")), *sorted(LOAD.glob("loadkit/*.py")), *sorted(LOAD.glob("benchmark/*.py")),
            *sorted(LOAD.glob("benchmark/seed_handler/*.py"))]


def test_load_tools_stand_on_their_own():
    """load/ imports nothing from tests/, edits no sys.path, and has one percentile (stats.py)."""
    test_modules = {"tests", "support", "conftest", "loadtools"}
    percentiles = []
    for path in load_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & test_modules, (path, ast.unparse(node))
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in test_modules, (path, ast.unparse(node))
            elif isinstance(node, ast.Attribute) and node.attr == "path":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), \
                    f"{path.name}:{node.lineno} uses sys.path"
            elif isinstance(node, ast.FunctionDef) and node.name in ("percentile", "quantile"):
                percentiles.append(f"{path.name}:{node.name}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "tests/support" not in node.value, (path, node.lineno)
    assert percentiles == ["stats.py:percentile"]
    for script in sorted(LOAD.glob("*.sh")):
        code = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in code if "tests/" in line], script


def test_capacity_step_statistics():
    samples = [(float(ms), None) for ms in range(1, 101)] + [(5.0, "HTTPError 429")]
    step = capacity.summarise(users=4, seconds=10, samples=samples)
    assert step.requests == 101 and step.failures == 1
    assert step.rps == pytest.approx(10.0)
    # Loki's quantile over the 100 successes 1..100 ms (rank phi x 99, interpolated)
    assert (step.p50_ms, step.p95_ms, step.p99_ms) == pytest.approx((50.5, 95.05, 99.01))
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
    parsed, broken = read_log(log)
    summary = logsummary.summarise(parsed)
    assert broken == [] and summary["requests"] == 100
    assert summary["by_status"] == {200: 99, 400: 1} and summary["errors"] == {"empty_body": 1}
    assert summary["latency_200_ms"]["p99"] == pytest.approx(98.02)  # as Loki: rank 0.99 x (99-1) = 97.02
    sent = tmp_path / "sent.jsonl"
    sent.write_text("\n".join(json.dumps({"request_id": r, "echoed_id": r, "status": s})
                              for r, s in [("r1", 200), ("bad", 400), ("r2", 500), ("ghost", 200)]))
    count, problems = logsummary.match_sent(parsed, str(sent))
    assert count == 4
    assert problems == ["r2: logged status 200, client saw 500", "ghost: no log line"]
    with open(log, "a") as f:
        f.write("not json\n")
    assert logsummary.main([str(log)]) == 1  # a non-JSON stdout line breaks the contract


def test_sizing_takes_the_most_users_within_the_share_of_what_the_machine_serves():
    think = sizing.THINK_MEAN_S
    assert think == pytest.approx(0.3)
    # a quiet machine: 100 req/s one at a time (10 ms); half of it fits 15 users: capped at 6
    assert sizing.users_for(100, 0.010, 0.5, 6) == (6, "max-users")
    # a busy one: 20 req/s (50 ms): 0.5 * 20 * 0.35 = 3.5 -> 3 users, offering 3 / 0.35 = 8.6 req/s <= 10
    users, why = sizing.users_for(20, 0.050, 0.5, 6)
    assert (users, why) == (3, "machine") and users / (think + 0.050) <= 0.5 * 20
    assert sizing.users_for(20, 0.050, 0.5, 6)[0] + 1 > 0.5 * 20 * (think + 0.050)  # one more would not fit
    # a machine that serves next to nothing still gets one user
    assert sizing.users_for(1, 1.0, 0.5, 6) == (1, "machine")
    with pytest.raises(ValueError):
        sizing.users_for(20, 0.05, 0, 6)
    with pytest.raises(ValueError):
        sizing.users_for(20, 0.05, 0.5, 0)
