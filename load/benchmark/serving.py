"""Serving a function (or any HTTP server) and loading it, for the benchmark commands.

`make bench` (bench.py) and `make bench-peers` (peer_bench.py) measure servers the same
way, through this module: `start_function()` (a function started through localrun's
`FunctionProcess`, as everything in the repository starts one, timed to its first
/ready 200), the closed-loop client and its prebuilt requests, `load_levels()`
(concurrency levels one after the other, the server's and the client's CPU around each,
plus whatever extra meters a command passes), `best_of_starts()` and `rotated()` (the
order of the servers in each round).
"""
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from loadkit.localrun import FunctionProcess
from loadkit.stats import percentile

# what every process the benchmark starts inherits: the environment it was given, not
# the torch allocator settings bench.py applies to its own in-process limits (the seed
# handler and the bare-load baseline run as they would anywhere; the function sets its own)
ORIGINAL_ENV = dict(os.environ)


def log(msg: str) -> None:
    """Progress, on stderr: stdout carries the report."""
    print(msg, file=sys.stderr, flush=True)


# -- requests -------------------------------------------------------------------------
def real_jpegs() -> dict[str, bytes]:
    """The three real 640x427 photos every server is loaded with."""
    from loadkit.photos import PHOTOS

    return {name: PHOTOS[name].read_bytes() for name in ("china.jpg", "flower.jpg", "rocket.jpg")}


def raw_post(path: str, content_type: str, body: bytes) -> bytes:
    """One prebuilt HTTP/1.1 POST, as the load client sends it."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def build_requests(jpegs: dict, path: str = "/?topk=5", content_type: str = "image/jpeg") -> list[bytes]:
    return [raw_post(path, content_type, body) for body in jpegs.values()]


def payload_requests(payloads: list, count: int = 240, seed: int = 1) -> list[bytes]:
    """`count` raw HTTP requests drawn from a function's load inputs by their weights
    (seeded, so every start and every run sends the same sequence), each with its
    Content-Type and one of its query strings."""
    from loadkit import traffic

    picker = traffic.Picker(payloads, seed=seed)
    out = []
    for _ in range(count):
        payload = picker.payload()
        query, _predictions = picker.query(payload)
        out.append(raw_post(f"/{'?' + query if query else ''}", payload.content_type, payload.body))
    return out


# -- the closed loop ------------------------------------------------------------------
async def _client(port: int, requests: list[bytes], offset: int, warm_until: float, stop_at: float,
                  records: list):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            payload = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            writer.write(payload)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            ended = time.perf_counter()
            if started >= warm_until:
                records.append((ended, ended - started, status))
    finally:
        writer.close()


def closed_loop(port: int, requests: list[bytes], concurrency: int, warmup: float, duration: float) -> dict:
    """`concurrency` keep-alive clients, each sending its next request when the last is
    answered: throughput over the measured window, latency percentiles, non-200 answers."""
    records: list = []

    async def run():
        now = time.perf_counter()
        warm_until, stop_at = now + warmup, now + warmup + duration
        await asyncio.gather(*(_client(port, requests, k, warm_until, stop_at, records)
                               for k in range(concurrency)))
        return warm_until, stop_at

    warm_until, stop_at = asyncio.run(run())
    done = [r for r in records if r[0] <= stop_at]
    latencies = sorted(r[1] * 1000 for r in records)
    errors = sum(1 for r in records if r[2] != 200)
    return {"concurrency": concurrency, "requests": len(records), "errors": errors,
            "throughput": len(done) / (stop_at - warm_until),
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


# -- a function ---------------------------------------------------------------------
def started(process: FunctionProcess) -> FunctionProcess:
    """`process` started and ready (/ready 200), or stopped if it never gets there.
    /ready is polled every 5 ms: `ready_at - started` is the cold start the benchmark reports."""
    process.start(wait_ready=False)
    try:
        process.wait_ready(poll=0.005)
    except BaseException:
        process.stop()
        raise
    return process


def start_function(build: Path, artifacts: Path, extra_env: dict, name: str = "classifier",
                   log: Path | None = None) -> FunctionProcess:
    """A function's build folder served as the container serves it (`python index.py`),
    with the environment the benchmark was given, its JSON log to `log` (default: a
    temporary file); returns once it is ready."""
    env = {"ARTIFACTS_DIR": str(artifacts), "DRAIN_SECONDS": "0", **extra_env}
    return started(FunctionProcess(build, env, name=name, log=log, base_env=ORIGINAL_ENV))


def start_to_ready_seconds(build: Path, artifacts: Path, env: dict, name: str = "classifier") -> float:
    """One start of the served function: process start to /ready 200."""
    with start_function(build, artifacts, env, name) as process:
        return process.ready_at - process.started


# -- load levels ----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ms_per_request(result: dict, warmup: float, duration: float, key: str = "server_cpu_s") -> float:
    """A process's CPU per request over the whole run, warm-up included (closed_loop
    counts only the measured window's requests)."""
    total = result["requests"] * (warmup + duration) / duration
    return result[key] * 1000 / max(1, total)


class Meter(Protocol):
    """An extra measurement around each load level: `begin()` just before it, `end()`
    after, which adds its fields to the level's result and returns a progress note."""

    def begin(self) -> None: ...

    def end(self, result: dict, wall: float) -> str: ...


@dataclass(frozen=True)
class Load:
    """What each start of a server is loaded with: the prebuilt requests, the concurrency
    levels in turn, and each level's warm-up and measured seconds."""
    requests: list[bytes]
    levels: list[int]
    warmup: float
    duration: float


def load_levels(server, load: Load, *, server_cpu=cpu_seconds, meters: tuple[Meter, ...] = (),
                label: str = "") -> list[dict]:
    """`server` (anything with `proc` and `port`) under closed-loop load at each level in
    turn: the closed loop's figures, the server's CPU (`server_cpu(pid)`: its process, or
    its process tree) and this client's CPU, each per request, and the meters' fields."""
    warmup, duration = load.warmup, load.duration
    out = []
    for concurrency in load.levels:
        for meter in meters:
            meter.begin()
        cpu0, client0, wall0 = server_cpu(server.proc.pid), time.process_time(), time.perf_counter()
        result = closed_loop(server.port, load.requests, concurrency, warmup, duration)
        wall = time.perf_counter() - wall0
        result["server_cpu_s"] = server_cpu(server.proc.pid) - cpu0
        # the load generator shares the 2 CPUs: what it takes is not the server's to use
        result["client_cpu_s"] = time.process_time() - client0
        result["cpu_ms_per_request"] = cpu_ms_per_request(result, warmup, duration)
        notes = [meter.end(result, wall) for meter in meters]
        log(f"  {label + ' ' if label else ''}c={concurrency}: {result['throughput']:.1f} req/s, "
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, errors {result['errors']}, "
            f"server CPU {result['cpu_ms_per_request']:.2f} ms/request" + "".join(f", {n}" for n in notes))
        out.append(result)
    return out


class ClientCpu:
    """The load generator's CPU per request (`client_cpu_ms_per_request`)."""

    def __init__(self, load: Load):
        self.warmup, self.duration = load.warmup, load.duration

    def begin(self) -> None:
        pass

    def end(self, result: dict, wall: float) -> str:
        result["client_cpu_ms_per_request"] = cpu_ms_per_request(result, self.warmup, self.duration, "client_cpu_s")
        return f"client {result['client_cpu_ms_per_request']:.2f}"


def best_of_starts(runs: list[list[dict]]) -> list[dict]:
    """Per load level, the start with the highest throughput, with the lowest p50 of any start."""
    return [{**max(same_level, key=lambda r: r["throughput"]), "p50_ms": min(r["p50_ms"] for r in same_level)}
            for same_level in zip(*runs)]


# -- rounds ---------------------------------------------------------------------------
def rotated(items: list, round_: int) -> list:
    """`items` in round `round_`'s order: each round starts one further along, so over
    the rounds every server runs early and late in a round alike (this machine's speed
    drifts over minutes)."""
    k = round_ % len(items)
    return items[k:] + items[:k]
