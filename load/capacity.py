"""Capacity finder: how much can ONE replica take before the latency SLO breaks?

    python load/capacity.py --host http://127.0.0.1:8080
    make capacity                       # starts the function locally, measures it, stops it
    make capacity HOST=http://GATEWAY:8080/function/classifier   # pin it to 1 replica first

Closed-loop Locust users with no think time post the function's load inputs (its
functions/<name>/load_inputs.py: photos for the classifier, real rows for diabetes;
no bad requests), so the number of users is the concurrency offered to the replica.
Concurrency grows step by step (1, 2, 3, 4, 5, 7, 9, 12, ... by --growth); each
step is warmed up, then measured for --step-seconds: throughput, p50/p95/p99 and
failures, from the client's side (stricter than the function's own latency_ms).
It stops at the first step whose p99 is above the SLO (or whose failure ratio is
too high) twice in a row (--confirm: one noisy window does not end the search),
or when more users stop adding throughput. The last step that met the
SLO is the replica's capacity: its throughput (req/s) and its concurrency
(requests in flight). Those give the `com.openfaas.scale.*` labels for stack.yml:

    type capacity  target = in-flight requests per replica (the default: for a
                   CPU-bound, batching model server in-flight work is what saturates)
    type rps       target = requests per second per replica

with target-proportion 0.9, so OpenFaaS scales out at 90% of what a replica
sustains, and max sized from --peak-rps when you give it.

The load generator shares the machine when you measure a local function, so the
numbers are a floor for a dedicated pod with the same CPUs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from loadkit.stats import percentile

# Locust (and its gevent monkey-patching) is imported by run() only, so the
# arithmetic below can be imported and tested without it.
# The SLO has no number of its own here: --slo-p99-ms defaults to the function's latency
# contract (traffic.latency_objective_ms: functions/<name>/slo), so the
# classifier is measured at its 250 ms and diabetes at its 50 ms.


@dataclass
class Step:
    users: int
    seconds: float
    requests: int = 0
    failures: int = 0
    rps: float = 0.0          # successful requests per second
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    passed: bool = False
    verdict: str = ""
    failure_reasons: dict = field(default_factory=dict)

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def in_flight(self) -> float:
        """Little's law: requests in flight at the replica (throughput x time in system)."""
        return self.rps * self.mean_ms / 1000


def summarise(users: int, seconds: float, samples: list[tuple[float, str | None]]) -> Step:
    """A step's numbers from (response_time_ms, error or None) samples."""
    ok = sorted(ms for ms, error in samples if error is None)
    step = Step(users=users, seconds=seconds, requests=len(samples), failures=len(samples) - len(ok))
    for _ms, error in samples:
        if error is not None:
            step.failure_reasons[error] = step.failure_reasons.get(error, 0) + 1
    if ok:
        step.rps = len(ok) / seconds
        step.mean_ms = sum(ok) / len(ok)
        step.p50_ms, step.p95_ms, step.p99_ms = (percentile(ok, p) for p in (0.5, 0.95, 0.99))
    return step


def judge(step: Step, slo_p99_ms: float, max_fail_ratio: float, min_requests: int) -> Step:
    if step.requests < min_requests:
        step.verdict = f"only {step.requests} requests (< {min_requests}): p99 not meaningful"
    elif step.fail_ratio > max_fail_ratio:
        step.verdict = f"failure ratio {step.fail_ratio:.1%} > {max_fail_ratio:.1%}"
    elif step.p99_ms > slo_p99_ms:
        step.verdict = f"p99 {step.p99_ms:.0f} ms > SLO {slo_p99_ms:g} ms"
    else:
        step.passed, step.verdict = True, "meets the SLO"
    return step


def user_steps(start: int, growth: float, max_users: int):
    users = max(1, start)
    while users <= max_users:
        yield users
        users = max(users + 1, math.ceil(users * growth))


def best_step(steps: list[Step]) -> Step | None:
    """The highest-throughput step that met the SLO."""
    passed = [s for s in steps if s.passed]
    return max(passed, key=lambda s: (s.rps, -s.users)) if passed else None


def scale_labels(best: Step, scale_type: str = "capacity", min_replicas: int = 1,
                 max_replicas: int | None = None, peak_rps: float | None = None,
                 proportion: float = 0.9) -> dict[str, str]:
    """The com.openfaas.scale.* labels for a replica that sustains `best`."""
    rps_target = max(1, math.floor(best.rps))
    capacity_target = max(1, best.users)
    target = capacity_target if scale_type == "capacity" else rps_target
    if max_replicas is None:
        # replicas needed for the peak when each one is scaled out at `proportion` of its capacity
        max_replicas = math.ceil(peak_rps / (best.rps * proportion)) if peak_rps else 10
    return {
        "com.openfaas.scale.min": str(min_replicas),
        "com.openfaas.scale.max": str(max(min_replicas, max_replicas)),
        "com.openfaas.scale.target": str(target),
        "com.openfaas.scale.type": scale_type,
        "com.openfaas.scale.target-proportion": f"{proportion:g}",
    }


def labels_yaml(labels: dict[str, str], function: str = "classifier") -> str:
    lines = ["functions:", f"  {function}:", "    labels:"]
    lines += [f'      {key}: "{value}"' for key, value in labels.items()]
    return "\n".join(lines)


# -- running the steps -------------------------------------------------------
class Recorder:
    def __init__(self, environment):
        self.samples: list[tuple[float, str | None]] | None = None
        environment.events.request.add_listener(self.on_request)

    def on_request(self, response_time, exception=None, **_kw):
        if self.samples is not None:
            self.samples.append((response_time, None if exception is None else str(exception)[:80]))

    def window(self, seconds: float) -> list[tuple[float, str | None]]:
        import gevent
        self.samples = []
        gevent.sleep(seconds)
        samples, self.samples = self.samples, None
        return samples


def check_reachable(host: str, timeout: float = 10.0) -> None:
    import requests
    try:
        response = requests.get(host.rstrip("/") + "/ready", timeout=timeout)
    except requests.RequestException as exc:
        sys.exit(f"capacity: {host} is not reachable: {exc}")
    if response.status_code != 200:
        sys.exit(f"capacity: {host}/ready answered {response.status_code}; is the function up?")


def run(args) -> list[Step]:
    import gevent
    from locust import constant
    from locust.env import Environment

    import locustfile

    class CapacityUser(locustfile.FunctionUser):
        """Back-to-back requests: one user = one request in flight."""
        wait_time = constant(0)
        bad_ratio = 0.0

    env = Environment(user_classes=[CapacityUser], host=args.host.rstrip("/"), events=locustfile.events)
    env.load_function = args.function
    locustfile.on_init(env)
    locustfile.picker_of(env)  # the inputs are built before the first step's clock starts
    recorder = Recorder(env)
    runner = env.create_local_runner()
    steps: list[Step] = []
    flat = 0
    print(f"{'users':>5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'fail':>6} {'in-flight':>9}  verdict",
          flush=True)
    try:
        for users in user_steps(args.start_users, args.growth, args.max_users):
            runner.start(users, spawn_rate=max(users, 1))
            gevent.sleep(args.warmup_seconds)
            for attempt in range(1 + args.confirm):
                samples = recorder.window(args.step_seconds)
                step = judge(summarise(users, args.step_seconds, samples), args.slo_p99_ms,
                             args.max_fail_ratio, args.min_requests)
                retry = not step.passed and step.requests >= args.min_requests and attempt < args.confirm
                if retry:
                    step.verdict += "; measuring again to confirm"
                print(f"{users:>5} {step.rps:>7.1f} {step.p50_ms:>7.0f} {step.p95_ms:>7.0f} {step.p99_ms:>7.0f} "
                      f"{step.fail_ratio:>6.1%} {step.in_flight:>9.1f}  {step.verdict}", flush=True)
                if not retry:
                    break
            steps.append(step)
            if not step.passed and step.requests >= args.min_requests:
                break
            best = best_step(steps[:-1])
            flat = flat + 1 if best and step.rps < best.rps * 1.03 else 0
            if flat >= args.patience:
                print(f"      throughput stopped growing for {flat} steps: the replica is saturated", flush=True)
                break
    finally:
        runner.quit()
        if getattr(env, "sent_log", None):
            env.sent_log.close()
    return steps


def report(args, steps: list[Step]) -> int:
    best = best_step(steps)
    result = {"host": args.host, "slo_p99_ms": args.slo_p99_ms, "max_fail_ratio": args.max_fail_ratio,
              "steps": [asdict(s) | {"fail_ratio": s.fail_ratio, "in_flight": s.in_flight} for s in steps],
              "capacity": None, "labels": None}
    print()
    if best is None:
        print(f"capacity: not even {steps[0].users if steps else args.start_users} user(s) met the SLO "
              f"(p99 <= {args.slo_p99_ms:g} ms, failures <= {args.max_fail_ratio:.1%}); "
              "check the function (make run) or raise --slo-p99-ms")
        code = 1
    else:
        labels = scale_labels(best, args.scale_type, args.min_replicas, args.max_replicas, args.peak_rps)
        other = scale_labels(best, "rps" if args.scale_type == "capacity" else "capacity",
                             args.min_replicas, args.max_replicas, args.peak_rps)
        result["capacity"] = {"rps": round(best.rps, 1), "concurrency": best.users,
                              "in_flight": round(best.in_flight, 2), "p99_ms": best.p99_ms}
        result["labels"] = labels
        print(f"capacity of one replica at p99 <= {args.slo_p99_ms:g} ms: {best.rps:.1f} req/s "
              f"with {best.users} concurrent requests (p99 {best.p99_ms:.0f} ms, "
              f"{best.in_flight:.1f} in flight by Little's law)")
        print("\nset these labels on the function in stack.yml:\n")
        print(labels_yaml(labels, args.function))
        print("\n# or, to scale on request rate instead: "
              f"com.openfaas.scale.type: \"{other['com.openfaas.scale.type']}\""
              f" with com.openfaas.scale.target: \"{other['com.openfaas.scale.target']}\"")
        if not args.peak_rps and args.max_replicas is None:
            print("# max is a placeholder: pass --peak-rps (your busiest req/s) to size it")
        code = 0
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
        print(f"\nresult written to {args.json}")
    return code


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    p.add_argument("--host", default=env("FUNCTION_URL") or "http://127.0.0.1:8080",
                   help="the function: http://127.0.0.1:8080 or http://GATEWAY:8080/function/classifier")
    p.add_argument("--slo-p99-ms", type=float, default=float(env("SLO_P99_MS")) if env("SLO_P99_MS") else None,
                   help="latency SLO: p99 at most this many ms (env SLO_P99_MS; default: the function's latency "
                        "contract, functions/<name>/slo, e.g. classifier 250, diabetes 50)")
    p.add_argument("--max-fail-ratio", type=float, default=float(env("MAX_FAIL_RATIO") or 0.01))
    p.add_argument("--start-users", type=int, default=1)
    p.add_argument("--growth", type=float, default=1.25, help="next step = ceil(users x growth), at least +1")
    p.add_argument("--max-users", type=int, default=64)
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="settle time after each step change")
    p.add_argument("--step-seconds", type=float, default=float(env("STEP_SECONDS") or 15),
                   help="measurement window per step")
    p.add_argument("--min-requests", type=int, default=50, help="fewer requests than this: the step is not judged")
    p.add_argument("--confirm", type=int, default=1,
                   help="re-measure a step that breaks the SLO this many times before believing it "
                        "(a noisy neighbour can spoil one window)")
    p.add_argument("--patience", type=int, default=3,
                   help="stop after this many steps without a 3%% throughput gain")
    p.add_argument("--scale-type", choices=("capacity", "rps"), default="capacity")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=None)
    p.add_argument("--peak-rps", type=float, default=float(env("PEAK_RPS")) if env("PEAK_RPS") else None,
                   help="the busiest request rate you expect; sizes com.openfaas.scale.max")
    p.add_argument("--function", default=env("LOAD_FUNCTION") or "classifier",
                   help="the function: whose load inputs are sent (functions/<name>/load_inputs.py), "
                        "whose latency contract is the default SLO, and its name in the stack.yml snippet")
    p.add_argument("--json", default=env("CAPACITY_JSON") or "reports/capacity/capacity.json",
                   help="where to write the result ('' for nowhere)")
    args = p.parse_args(argv)
    if args.slo_p99_ms is None:
        from loadkit import traffic
        try:
            args.slo_p99_ms = traffic.latency_objective_ms(args.function)
        except ValueError as err:  # logslo.objectives.ObjectiveError: no latency contract
            p.error(f"{err}; pass --slo-p99-ms (or SLO_P99_MS=...)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import locust  # noqa: F401 imported for its side effect: gevent must monkey-patch before anything imports ssl
    check_reachable(args.host)
    print(f"capacity finder: {args.host}, SLO p99 <= {args.slo_p99_ms:g} ms, failures <= {args.max_fail_ratio:.1%}, "
          f"{args.step_seconds:g} s per step after {args.warmup_seconds:g} s warm-up", flush=True)
    started = time.monotonic()
    steps = run(args)
    print(f"({time.monotonic() - started:.0f} s)")
    return report(args, steps)


if __name__ == "__main__":
    sys.exit(main())
