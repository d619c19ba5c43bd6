"""Coverage-guided fuzzing of the request path (atheris + libFuzzer), in-process.

    python tests/fuzz/fuzz_request.py --seconds 60 [--work reports/fuzz] [--crashes tests/fuzz/crashes]

Seeds are real photos (load/loadkit/photos.py and the classifier's testdata) re-encoded
small as JPEG, PNG and WebP, sent raw and as JSON base64, plus JSON and
request-id/tenant/query variants (see fuzzkit.py for the input layout).
torchfaas, the classifier's handler, PIL's image plugins, werkzeug and flask are
instrumented for coverage; torch and numpy are not (too big to instrument and
not the request path). libFuzzer stops the campaign past 4 GiB of RSS (one input
that blows memory up); RSS is printed every 20000 executions.

Then a leak check, in a fresh process: the campaign's corpus and the seeds are
replayed until RSS settles, then ~6000 times more under new request ids and
tenants (fuzzkit.replay_rss_growth). It fails when RSS grows by more than
FUZZ_LEAK_KIB_PER_REQUEST (default 2 KiB) per request in both halves. The
campaign's own RSS is no leak check: it climbs with the largest input found so
far (a 4-megapixel WebP peaks ~100 MiB above the rest and glibc keeps much of
it), up to 780 MiB in a 60 s CI campaign that leaked nothing.

Prints executions, coverage (libFuzzer's edge and feature counts, and the
corpus it grew), the leak check and every crash input, which is written to
--crashes: replayed by tests/fuzz/test_fuzz.py as a regression test. Exit 0
when no property broke.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# the runtime, load/ (photos, localrun) and fuzzkit, as pytest's pythonpath has them
sys.path[:0] = [str(REPO / "template/python3-http-torch"), str(REPO / "load"), str(HERE)]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_THREADS": "1"}  # as CI's campaign ran it


def write_seeds(folder: Path) -> int:
    """Real photos, small, in every format and encoding the harness knows."""
    from PIL import Image

    from fuzzkit import encode
    from loadkit.photos import PHOTOS

    folder.mkdir(parents=True, exist_ok=True)
    sources = dict(PHOTOS)
    sources.update({p.name: p for p in sorted((REPO / "functions/classifier/testdata").glob("*.jpg"))})
    count = 0
    for name, path in sources.items():
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        image.thumbnail((96, 96))
        for fmt, ctype in (("JPEG", 1), ("PNG", 2), ("WEBP", 3)):
            out = io.BytesIO()
            image.save(out, format=fmt, quality=70) if fmt != "PNG" else image.save(out, format=fmt)
            small = out.getvalue()
            variants = [encode(small, content_type=ctype), encode(small, content_type=4, mode=1, query=2),
                        encode(small, content_type=0, request_id=b"\x00gw-call-1", tenant=b"globex", query=3)]
            if fmt == "JPEG":
                variants.append(encode(json.dumps({"image": __import__("base64").b64encode(small).decode()})
                                       .encode(), content_type=5, mode=2))
            for i, data in enumerate(variants):
                (folder / f"seed-{name}-{fmt}-{i}").write_bytes(data)
                count += 1
    for i, body in enumerate([b"", b"{}", b'{"image": ""}', b'{"image": "!!"}', b"[" * 50, b"\xff\xd8\xff"]):
        (folder / f"seed-small-{i}").write_bytes(encode(body, content_type=5 if body[:1] in b"{[" else 1))
        count += 1
    return count


def fuzz(argv: list[str]) -> None:
    """Runs in the child: atheris takes over the process."""
    import atheris
    import numpy  # noqa: F401 imported before the hook, so not instrumented
    import torch  # noqa: F401 imported before the hook, so not instrumented

    with atheris.instrument_imports(include=["torchfaas", "fuzzed_classifier", "PIL", "werkzeug",
                                             "flask", "fuzzkit"]):
        import PIL.Image
        PIL.Image.init()  # every image plugin, imported under instrumentation
        import fuzzkit as harness
        target = harness.Target()
    # the classifier's modules are loaded from files: instrument their functions explicitly,
    # in every module that binds them (handler.py calls its own import of to_pixels)
    parts = [m for n, m in list(sys.modules.items()) if n.startswith("fuzzed_classifier.")]
    for name in ("Classifier", "parse_topk", "to_pixels", "draft_jpeg", "center_crop_box"):
        obj = next(getattr(m, name) for m in parts if hasattr(m, name))
        if isinstance(obj, type):
            for attr, value in list(vars(obj).items()):
                if callable(value) and hasattr(value, "__code__"):
                    setattr(obj, attr, atheris.instrument_func(value))
            continue
        instrumented = atheris.instrument_func(obj)
        for part in parts:
            if getattr(part, name, None) is obj:
                setattr(part, name, instrumented)

    def one_input(data: bytes):
        harness.check(target, data)
        if target.executions % 20000 == 0:
            print(f"#fuzz executions={target.executions} rss_mib={harness.settled_rss_mib():.0f}",
                  file=sys.stderr, flush=True)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def replay(folders: list[str]) -> None:
    """Runs in the child: the leak check over the inputs in `folders`."""
    import fuzzkit as harness
    inputs = [p.read_bytes() for folder in folders for p in sorted(Path(folder).iterdir()) if p.is_file()]
    target = harness.Target()
    try:
        print("REPLAY SUMMARY " + json.dumps(harness.replay_rss_growth(target, inputs)), flush=True)
    finally:
        target.close()


def leak_check(folders: list[Path]) -> dict:
    limit = float(os.environ.get("FUZZ_LEAK_KIB_PER_REQUEST", "2"))
    proc = subprocess.run([sys.executable, __file__, "--replay", *map(str, folders)], capture_output=True,
                          text=True, env=CHILD_ENV)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPLAY SUMMARY ")]
    if proc.returncode != 0 or not lines:  # a property broke on replay, or the replay did not run
        return {"error": (proc.stdout + proc.stderr)[-3000:], "limit_kib_per_request": limit, "leaks": True}
    result = json.loads(lines[-1].removeprefix("REPLAY SUMMARY "))
    return {**result, "limit_kib_per_request": limit, "leaks": result["leak_kib_per_request"] > limit}


STAT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description="coverage-guided fuzzing of the request path")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--work", default=None, help="working corpus folder (default: a temporary one)")
    parser.add_argument("--crashes", default=str(HERE / "crashes"))
    parser.add_argument("--max-len", type=int, default=32768)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--replay", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_known_args()


def run_fuzzer(args: argparse.Namespace, corpus: Path, seeds: Path,
               crashes: Path) -> tuple[int, re.Match | None, list[str]]:
    """libFuzzer in a child process for --seconds, its progress lines echoed; -> (its exit
    code, its last coverage line, the last 60 lines it wrote)."""
    cmd = [sys.executable, __file__, "--child", f"-max_total_time={args.seconds}", f"-max_len={args.max_len}",
           "-rss_limit_mb=4096", "-timeout=20", f"-artifact_prefix={crashes}/", "-print_final_stats=1",
           str(corpus), str(seeds)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace",
                            env=CHILD_ENV)
    last, tail = None, []
    for line in proc.stderr:
        tail = (tail + [line.rstrip()])[-60:]
        match = STAT.search(line)
        if match:
            last = match
        if any(word in line for word in ("#fuzz", "INITED", "pulse", "DONE", "ERROR")):
            print(line.rstrip(), flush=True)
    return proc.wait(), last, tail


def fuzz_summary(code: int, last: re.Match | None, tail: list[str], elapsed: float, new_crashes: list[Path]) -> dict:
    """The run's figures, from libFuzzer's last coverage line and its final stats."""
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", "\n".join(tail)))
    summary = {
        "seconds": round(elapsed, 1),
        "executions": int(stats.get("number_of_executed_units") or (last.group(1) if last else 0)),
        "coverage_edges": int(last.group(2)) if last else None,
        "coverage_features": int(last.group(3)) if last else None,
        "corpus_inputs": int(last.group(4)) if last else None,
        "peak_rss_mb": int(stats["peak_rss_mb"]) if "peak_rss_mb" in stats else None,
        "crash_inputs": [str(p) for p in new_crashes],
        "exit_code": code,
    }
    if summary["executions"]:
        summary["executions_per_s"] = round(summary["executions"] / elapsed, 1)
    return summary


def main() -> int:
    args, rest = parse_args()
    if args.child:
        fuzz(rest)
        return 0
    if args.replay:
        replay(rest)
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fuzz-"))
    corpus, seeds = work / "corpus", work / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    n_seeds = write_seeds(seeds)
    crashes = Path(args.crashes)
    crashes.mkdir(parents=True, exist_ok=True)
    before = set(crashes.iterdir())
    print(f"fuzzing the request path for {args.seconds} s ({n_seeds} seeds, corpus {corpus})", flush=True)
    started = time.monotonic()
    code, last, tail = run_fuzzer(args, corpus, seeds, crashes)
    new_crashes = sorted(set(crashes.iterdir()) - before)
    summary = fuzz_summary(code, last, tail, time.monotonic() - started, new_crashes)
    if code != 0:
        print("\n".join(tail[-40:]), file=sys.stderr)
    for path in new_crashes:
        print(f"crash input {path} (replayed by tests/fuzz/test_fuzz.py): {path.read_bytes()[:200]!r}")
    summary["replay"] = leak_check([corpus, seeds])
    print(f"leak check: {json.dumps(summary['replay'])}", flush=True)
    print("FUZZ SUMMARY " + json.dumps(summary), flush=True)
    return 0 if code == 0 and not new_crashes and not summary["replay"]["leaks"] else 1


if __name__ == "__main__":
    sys.exit(main())
