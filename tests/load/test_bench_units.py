"""The benchmark's pure parts: the sustained pipeline window's accounting (limits.py), the
figures the report derives and the CPU budget it sets beside each throughput target
(bench_report.py)."""
import copy
import hashlib
import time

import pytest

import bench_report
from limits import Pipeline


def test_pipeline_window_counts_images_per_call_and_the_wall_time():
    # sleeping calls: 2 workers x 3 images every ~20 ms -> ~300 images/s, next to no CPU
    window = Pipeline(lambda: time.sleep(0.02), batch=3, workers=2).window(0.4)
    assert 200 < window["images_per_s"] < 310
    assert window["cpu_ms_per_image"] < 1.0


def test_pipeline_window_charges_the_cpu_of_both_workers():
    payload = bytes(4_000_000)

    def call():  # hashing releases the GIL: both workers compute at once
        hashlib.sha256(payload).digest()

    started = time.thread_time()
    for _ in range(5):
        call()
    per_call_ms = (time.thread_time() - started) * 1000 / 5
    window = Pipeline(call, batch=2, workers=2).window(0.4)
    # CPU per image is one call's CPU over its 2 images, however the 2 CPUs were shared
    assert window["cpu_ms_per_image"] == pytest.approx(per_call_ms / 2, rel=0.5)


def level(concurrency, throughput, cpu_ms):
    return {"concurrency": concurrency, "throughput": throughput, "cpu_ms_per_request": cpu_ms}


def test_cpu_budget_sets_the_seed_share_beside_the_pipeline_and_the_runtime():
    res = {"seed": [level(1, 20, 50.0), level(16, 30, 60.0)],
           "runtime_only": [level(16, 300, 1.5)],
           "variants": {
               "fp32": {"served": [level(1, 40, 25.0), level(16, 90, 21.0)],
                        "pipeline_windows": [{"images_per_s": 120, "cpu_ms_per_image": 16.0},
                                             {"images_per_s": 130, "cpu_ms_per_image": 14.5}]},
               "bf16": {"served": [level(16, 100, 17.0)]}}}  # no sustained window: no line
    lines = bench_report.cpu_budget(res)
    assert len(lines) == 1
    assert lines[0].startswith("  fp32: >= 3x the seed leaves 20.00 (seed 60.00 / 3); served 21.00;")
    assert lines[0].endswith("the pipeline alone 14.50 per image + the runtime's own 1.50 = 16.00")


def test_the_served_cpu_split_adds_up_and_separates_the_streams_from_serving():
    variant = {"served": [level(1, 90, 10.6), level(16, 180, 10.3)],
               "pipeline_windows": [{"images_per_s": 240, "cpu_ms_per_image": 8.1},
                                    {"images_per_s": 248, "cpu_ms_per_image": 8.0}],
               "limits": {"workers": 2,
                          "stages_ms": {"preprocess": 2.1, "model": 6.0, "postprocess": 0.0, "batch": 4}}}
    split = bench_report.cpu_split(variant, [level(16, 300, 0.7)])
    line = bench_report.served_cpu_split(split)
    # 10.3 = 2.1 + 6.0 + 0.0 - 0.1 (streams against alone: the pipeline's 8.0) + 0.7 + 1.6 (serving)
    assert line.startswith("  server CPU per request at c16: 10.30 ms = preprocess 2.10 + model 6.00 (b4)")
    assert "postprocess 0.00 - 0.10 decode and forward passes in 2 streams" in line
    assert "the pipeline's 8.00 per image" in line
    assert "+ the runtime's own 0.70" in line and "+ 1.60 serving beside the model" in line
    assert split.serving_beside_ms == pytest.approx(1.6)
    assert split.server_own_ms == pytest.approx(2.2)


def test_bf16_ratios_are_taken_against_fp32_of_the_same_run():
    def variant(c1, c16, p50, model):
        return {"served": [{**level(1, c1, 9.0), "p50_ms": p50}, {**level(16, c16, 8.0), "p50_ms": p50 * 3}],
                "limits": {"model_limit": model, "pipeline_limit": c16 * 1.1}}

    res = {"seed": [{**level(1, 20, 50.0), "p50_ms": 40.0}, {**level(16, 30, 60.0), "p50_ms": 500.0}],
           "logging_ms": 0.01,
           "variants": {"fp32": variant(50, 100, 18.0, 300.0), "bf16": variant(70, 160, 12.0, 540.0)}}
    bf16 = bench_report.ratios_of(res, "bf16")
    assert bf16["c16_vs_fp32"] == pytest.approx(1.6) and bf16["model_vs_fp32"] == pytest.approx(1.8)
    assert bf16["c16_vs_seed"] == pytest.approx(160 / 30) and bf16["p50_c1_vs_seed"] == pytest.approx(0.3)
    assert "c16_vs_fp32" not in bench_report.ratios_of(res, "fp32")
    targets = {key: (op, target) for key, _, op, target in bench_report.TARGETS["bf16"]}
    assert targets["c16_vs_fp32"] == (">=", 1.5) and targets["model_vs_fp32"] == (">=", 2.0)
    assert targets["c16_vs_seed"] == (">=", 4.5) and targets["p50_c1_vs_seed"] == ("<=", 0.4)


def classifier_run():
    """A classifier run's measured figures, as bench.py gathers them (one precision)."""
    windows = [{"images_per_s": 240, "cpu_ms_per_image": 8.1}, {"images_per_s": 248, "cpu_ms_per_image": 8.0}]
    limits = {"torch_threads": 1, "model": {"aoti": {1: 140.0, 4: 167.0}}, "model_limit": 320.0,
              "served_backend": "aoti", "best_batch": 4, "workers": 2, "preprocess_per_s": 490.0,
              "pipeline_limit": 248.0, "pipeline_peak": 244.0, "window_s": 1.0,
              "stages_ms": {"preprocess": 2.1, "model": 6.0, "postprocess": 0.0, "batch": 4}}
    served = [{**level(1, 97, 10.6), "p50_ms": 10.2, "p99_ms": 11.1, "errors": 0},
              {**level(16, 187, 10.3), "p50_ms": 86.9, "p99_ms": 122.0, "errors": 0}]
    seed = [{**level(1, 36, 27.3), "p50_ms": 26.6, "p99_ms": 31.7, "errors": 0},
            {**level(16, 60, 31.2), "p50_ms": 259.3, "p99_ms": 286.5, "errors": 0}]
    return {"when": "now", "cpus": 2, "cpu_model": "AMD EPYC", "cpu_capability": "AVX512, AVX512-BF16, no AMX",
            "bf16_feature": None, "logging_ms": 0.02,
            "seed": seed, "runtime_only": [level(16, 300, 0.7)],
            "variants": {"fp32": {"limits": limits, "served": served, "pipeline_windows": windows,
                                  "cold_start": {"served_s": 0.9, "bare_s": 0.75}}}}


def test_derive_adds_the_figures_once_and_the_report_only_renders_them():
    res = bench_report.derive(classifier_run())
    variant = res["variants"]["fp32"]
    assert variant["serving_beside_ms"] == pytest.approx(1.6) and variant["server_own_ms"] == pytest.approx(2.2)
    assert variant["runtime_own_ms"] == pytest.approx(0.7)
    assert res["ratios"]["fp32"]["c16_vs_seed"] == pytest.approx(187 / 60)
    before = copy.deepcopy(res)
    text = bench_report.report(res)
    assert res == before
    assert "  fp32 served c16 / seed c16 throughput               3.12x  (target >= 3.0x)  ok" in text
    assert "+ 1.60 serving beside the model" in text
    # the figures differ by 2x between CPU capabilities: the header names the machine's
    assert "# CPU: AMD EPYC (AVX512, AVX512-BF16, no AMX); native bf16: none" in text


def test_the_report_gives_memory_per_replica_and_where_the_cold_start_went():
    res = classifier_run()
    runs = []
    for anon in (150.0, 120.0, 130.0):  # three starts: the report takes each figure's median
        low, top = copy.deepcopy(res["variants"]["fp32"]["served"])
        low["memory_mb"] = {"rss_mb": anon + 90, "anon_mb": anon, "file_mb": 90.0}
        top["peak_memory_mb"] = {"rss_mb": anon + 200, "anon_mb": anon + 110, "file_mb": 90.0}
        runs.append([low, top])
    res["variants"]["fp32"]["served_runs"] = runs
    res["variants"]["fp32"]["cold_start"]["phases_ms"] = {"interpreter_ms": 60.0, "imports_ms": 500.0,
                                                          "setup_ms": 20.0, "load_ms": 120.0, "warmup_ms": 50.0}
    text = bench_report.report(bench_report.derive(res))
    assert ("after c1: anon 130 + file 90 = 220; peak at c16: RSS 330 (anon 240, file 90); "
            "medians of 3 starts") in text
    assert "process start -> ready 0.900 s (interpreter 60 + imports 500 + setup 20 + load 120 + warm-up 50 ms)" \
        in text
