"""Locust traffic for a torchfaas function, through the gateway or straight at it.

    locust -f load/locustfile.py --headless --host http://127.0.0.1:8080 --profile steady
    locust -f load/locustfile.py --headless --host http://GATEWAY:8080/function/classifier --profile step
    locust -f load/locustfile.py --headless --host http://127.0.0.1:8080 --function diabetes
    make load HOST=http://GATEWAY:8080/function/classifier PROFILE=spike
    make load FUNCTION=diabetes

Users POST the function's own example inputs, declared in its folder
(functions/<name>/load_inputs.py, see traffic.load_inputs): real photos in
JPEG/PNG/WebP at 320-1280 px for the classifier, real patients' rows for diabetes;
each request with its own X-Request-Id, and ~5% bad requests the function declares
(the classifier's: empty body, corrupt or truncated image, bad topk, wrong
Content-Type; diabetes': malformed JSON, a missing feature, ...). Bad requests are
reported under their own names ("bad: ...") and count as successes when they get
the 4xx they deserve; a 5xx, or a 2xx, to a bad request is a failure. A 200 must
carry a predictions list, as long as the input declares.

Behind the OpenFaaS gateway the function logs the gateway's X-Call-Id as the
request id (it wins over X-Request-Id); both are recorded in --sent-log.

Options (each also an environment variable, which `make load` passes through):
    --function NAME|DIR          (LOAD_FUNCTION)   whose inputs to send (default classifier)
    --profile steady|step|spike  (PROFILE)         the load shape, see loadkit/shapes.py (Locust's
                                                   own --profile, which also labels the report)
    --peak-users N               (LOAD_USERS)      users at the top of the shape
    --duration S                 (LOAD_DURATION)   steady/spike length
    --step-users N, --step-seconds S               step ramp granularity
    --max-p95-ms, --max-p99-ms   (MAX_P95_MS, MAX_P99_MS)   0 = no check; p95 off and p99 the
                                                   function's latency contract by default
    --max-fail-ratio             (MAX_FAIL_RATIO)  failed / all requests
    --bad-ratio                  (BAD_RATIO)       share of bad requests
    --sent-log PATH              (SENT_LOG)        JSONL, one line per request sent
A broken threshold makes the run exit with code 1 (see `check_thresholds`).

Distributed (Locust's --master/--worker mode; `make load WORKERS=N` runs it through
load/distributed.py): the master runs the shape, collects the statistics and judges
the thresholds; the workers send the requests. Options given to the master reach the
workers. Each worker sends its sent-log lines to the master with its statistics
reports, so the run still writes one --sent-log, on the master, and the master logs
how many requests each worker made.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import gevent
import gevent.lock
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry

from loadkit import shapes, traffic

log = logging.getLogger("torchfaas.load")

BAD_PREFIX = "bad: "
DEFAULT_FUNCTION = "classifier"
# the same numbers as the SLO contracts: at most 1% failed, and p99 within the function's
# latency contract (None: read from functions/<name>/slo when the run
# is judged; classifier 250 ms, diabetes 50 ms), so the threshold follows the function
DEFAULTS = {"max_p95_ms": 0.0, "max_p99_ms": None, "max_fail_ratio": 0.01}
# how long the shape waits for the users' inputs to be built before its clock starts anyway
MAX_INPUTS_WAIT_S = 120


def _env(name: str, default=None):
    value = os.environ.get(name, "").strip()
    return value if value else default


@events.init_command_line_parser.add_listener
def add_options(parser):
    group = parser.add_argument_group("torchfaas")
    group.add_argument("--function", default=_env("LOAD_FUNCTION"),
                       help="the function whose inputs to send: a folder of functions/ or a path to one "
                            f"(its load_inputs.py, else its testdata/example.*; default {DEFAULT_FUNCTION})")
    group.add_argument("--peak-users", type=int, default=_env("LOAD_USERS"),
                       help="users at the top of the shape (default: steady 4, step 32, spike 24)")
    group.add_argument("--duration", type=float, default=_env("LOAD_DURATION"),
                       help="seconds, for steady (default 60) and spike (default 90)")
    group.add_argument("--step-users", type=int, default=_env("LOAD_STEP_USERS"),
                       help="users added per step of the step profile (default peak/8)")
    group.add_argument("--step-seconds", type=float, default=_env("LOAD_STEP_SECONDS"),
                       help="seconds per step of the step profile (default 20)")
    group.add_argument("--max-p95-ms", type=float, default=_env("MAX_P95_MS", DEFAULTS["max_p95_ms"]),
                       help="fail the run if p95 of the good requests is above this (0 = off)")
    group.add_argument("--max-p99-ms", type=float, default=_env("MAX_P99_MS", DEFAULTS["max_p99_ms"]),
                       help="fail the run if p99 of the good requests is above this (0 = off; default: the "
                            "function's latency contract)")
    group.add_argument("--max-fail-ratio", type=float,
                       default=_env("MAX_FAIL_RATIO", DEFAULTS["max_fail_ratio"]),
                       help="fail the run if failed/all requests is above this")
    group.add_argument("--bad-ratio", type=float, default=_env("BAD_RATIO", 0.05),
                       help="share of deliberately bad requests (default 0.05)")
    group.add_argument("--sent-log", default=_env("SENT_LOG", ""),
                       help="write one JSON line per request sent (request id, name, status, ms)")
    group.add_argument("--seed", type=int, default=_env("LOAD_SEED"), help="seed the payload choice")
    group.add_argument("--split-hosts", default=_env("LOAD_SPLIT_HOSTS", ""),
                       help="comma-separated base URLs: each request goes to one of them, in random blocks per "
                            "payload so each gets the same mix (seeded by --seed; make review: base and candidate "
                            "served side by side)")


def _option(environment, name: str, default=None):
    options = getattr(environment, "parsed_options", None)
    value = getattr(options, name, None) if options is not None else None
    return default if value is None else value


# -- what is sent ------------------------------------------------------------
_INPUTS: dict[str, tuple] = {}
_BUILDING = gevent.lock.Semaphore()  # one build at a time: the others wait for it


def function_of(environment) -> str:
    """The function whose inputs are sent: set on the environment by a library user
    (the capacity finder), else --function; on a worker the master's option arrives at spawn."""
    return (getattr(environment, "load_function", None) or _option(environment, "function")
            or _env("LOAD_FUNCTION", DEFAULT_FUNCTION))


def inputs(function: str) -> tuple[list[traffic.Payload], list[traffic.BadRequest]]:
    """The function's declared load inputs, built once per process.

    Building them is seconds of CPU on a busy machine. In the event loop it would stop
    everything else in this process; a worker's heartbeats among them, and a master that
    hears none for 3 s drops the worker from the run (two workers dropped: "no request
    was made"). So they are built in a thread of gevent's pool, and the loop runs on.
    """
    with _BUILDING:
        if function not in _INPUTS:
            _INPUTS[function] = gevent.get_hub().threadpool.apply(traffic.load_inputs, (function,))
            good, bad = _INPUTS[function]
            log.info("%s: %d kinds of request, %d kinds of bad request", function, len(good), len(bad))
    return _INPUTS[function]


class SentLog:
    """JSONL of every request sent; lets a test (or you) match them to the function's log."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def write(self, **fields):
        with self._lock:
            if not self._file.closed:  # a worker's last report can come in after quitting
                self._file.write(json.dumps(fields, separators=(",", ":")) + "\n")

    def close(self):
        with self._lock:
            self._file.close()


WORKER_REPORT_KEY = "torchfaas_sent"  # our part of a worker's statistics report


class WorkerSentLog:
    """On a worker: counts the requests sent and hands the sent-log lines to the master.

    They travel with the worker's statistics reports (every few seconds, and once
    when the worker stops), so a distributed run writes one sent log, on the master.
    """

    def __init__(self, environment):
        self.environment = environment
        self.requests = 0
        self.lines: list[dict] = []
        environment.events.report_to_master.add_listener(self.report)

    def write(self, **fields):
        self.requests += 1
        if _option(self.environment, "sent_log"):  # the master's options reach the worker at spawn
            self.lines.append(fields)

    def report(self, client_id, data, **_kw):
        data[WORKER_REPORT_KEY] = {"requests": self.requests, "sent": self.lines}
        self.lines = []

    def close(self):
        pass


def on_worker_report(environment, client_id, data):
    """On the master: a worker's sent-log lines and request count."""
    report = data.get(WORKER_REPORT_KEY)
    if not report:
        return
    environment.worker_requests[client_id] = report["requests"]
    if environment.sent_log:
        for fields in report["sent"]:
            environment.sent_log.write(**fields)


def profile_name(environment) -> str:
    """Locust's own --profile (it labels the HTML report) names the shape; else PROFILE."""
    return _option(environment, "profile") or _env("PROFILE", "steady")


@events.init.add_listener
def on_init(environment, **_kw):
    name = profile_name(environment)
    if name not in shapes.PROFILES:
        log.error("unknown load profile %r; choose one of %s", name, ", ".join(shapes.PROFILES))
        sys.exit(2)
    environment.profile = environment.profile or name
    path = _option(environment, "sent_log", "")
    if isinstance(environment.runner, WorkerRunner):
        environment.sent_log = WorkerSentLog(environment)
    else:
        environment.sent_log = SentLog(path) if path else None
    if isinstance(environment.runner, MasterRunner):
        environment.worker_requests = {}
        environment.events.worker_report.add_listener(
            lambda client_id, data, **_kw: on_worker_report(environment, client_id, data))
        environment.workers_with_inputs = set()
        environment.runner.register_message(INPUTS_READY, on_worker_inputs_ready)
    seed = _option(environment, "seed")
    environment.picker = None  # built by the first user, once the options (a worker's from the master) are known
    hosts = [h.strip().rstrip("/") for h in (_option(environment, "split_hosts", "") or "").split(",") if h.strip()]
    environment.splitter = traffic.Splitter(hosts, seed=seed) if hosts else None
    environment.request_ids = traffic.RequestIds()


def picker_of(environment) -> traffic.Picker:
    if environment.picker is None:
        good, bad = inputs(function_of(environment))
        environment.picker = traffic.Picker(good, seed=_option(environment, "seed"))
        environment.bad_requests = bad
    return environment.picker


# -- the inputs are built before the clock starts ----------------------------
INPUTS_READY = "torchfaas_inputs_ready"  # a worker to the master: its users can send


@events.test_start.add_listener
def prepare_inputs(environment, **_kw):
    """Build the inputs before the first user starts, then start the shape's clock.

    Building them is seconds of CPU (the classifier's 54 photos: ~2 s, more on a busy
    machine). Counted inside the shape, that time ended a 2-s steady run before its
    first request. test_start comes before any user is spawned and, on a worker, after
    the master's options have arrived. The Profile holds its clock at 0 until the users
    can send (users_can_send): on a local run the clock restarts here once they can; a
    worker tells the master, which restarts it once every worker has.
    """
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return
    if not hasattr(environment, "picker"):  # used as a library without the init event
        on_init(environment)
    picker_of(environment)
    if isinstance(runner, WorkerRunner):
        runner.send_message(INPUTS_READY)
    elif environment.shape_class is not None:
        environment.shape_class.reset_time()


def on_worker_inputs_ready(environment, msg, **_kw):
    """On the master: one more worker can send; when all can, the shape's clock starts."""
    environment.workers_with_inputs.add(msg.node_id)
    if users_can_send(environment) and environment.shape_class is not None:
        environment.shape_class.reset_time()


def users_can_send(environment) -> bool:
    """Whether the processes that send have built their inputs: on a master every worker,
    else this process."""
    if isinstance(environment.runner, MasterRunner):
        return len(environment.workers_with_inputs) >= environment.runner.worker_count
    return getattr(environment, "picker", None) is not None


class FunctionUser(FastHttpUser):
    """A client of the function: one of its inputs every 0.1-0.5 s, sometimes a broken request."""

    wait_time = between(*traffic.THINK_SECONDS)
    bad_ratio: float | None = None  # None: --bad-ratio; subclasses (the capacity finder) set 0

    def on_start(self):
        env = self.environment
        if not hasattr(env, "picker"):  # used as a library without the init event
            on_init(env)
        picker_of(env)
        self.ratio = self.bad_ratio if self.bad_ratio is not None else float(_option(env, "bad_ratio", 0.05))
        if not env.bad_requests:
            self.ratio = 0.0  # the function declares none
        # ".../function/classifier/" + "/?topk=3" would reach the function as "//"
        self.client.base_url = (self.client.base_url or "").rstrip("/")

    @task
    def call(self):
        env = self.environment
        if env.picker.random.random() < self.ratio:
            self._bad(env.picker.random.choice(env.bad_requests))
        else:
            self._good(env.picker.payload())

    def _good(self, payload: traffic.Payload):
        request_id = self.environment.request_ids.next()
        query, expected = self.environment.picker.query(payload)
        url = self._url("/?" + query if query else "/", payload.label)
        with self.client.post(url, data=payload.body, name=payload.name,
                              headers={"Content-Type": payload.content_type, "X-Request-Id": request_id},
                              catch_response=True) as response:
            problem = None
            if response.status_code != 200:
                problem = f"HTTP {response.status_code}"
            else:
                try:
                    predictions = response.json()["predictions"]
                    if expected is not None and len(predictions) != expected:
                        problem = f"{len(predictions)} predictions, expected {expected} ({query or payload.label})"
                    elif not isinstance(predictions, list):
                        problem = "200 without a predictions list"
                except (ValueError, KeyError, TypeError):
                    problem = "200 without a predictions list"
            self._finish(response, request_id, problem, payload.label)

    def _bad(self, bad: traffic.BadRequest):
        request_id = self.environment.request_ids.next()
        path = "/?" + bad.query if bad.query else "/"
        with self.client.post(self._url(path, bad.kind), data=bad.body, name=BAD_PREFIX + bad.kind,
                              headers={"Content-Type": bad.content_type, "X-Request-Id": request_id},
                              catch_response=True) as response:
            problem = None
            if response.status_code != bad.expected_status:
                problem = f"expected HTTP {bad.expected_status}, got {response.status_code}"
            self._finish(response, request_id, problem, bad.kind)

    def _url(self, path: str, kind: str) -> str:
        """`path` on this request's host: with --split-hosts an absolute URL on the host
        the splitter gives this kind of request (Locust's clients take absolute URLs as they are)."""
        splitter = getattr(self.environment, "splitter", None)
        return splitter.next(kind) + path if splitter else path

    def _finish(self, response, request_id: str, problem: str | None, what: str):
        if problem:
            response.failure(problem)
        else:
            response.success()
        sent_log = self.environment.sent_log if hasattr(self.environment, "sent_log") else None
        if sent_log:
            headers = response.headers or {}
            sent_log.write(request_id=request_id, echoed_id=headers.get("X-Request-Id"),
                           call_id=headers.get("X-Call-Id"), name=response.request_meta["name"],
                           payload=what, status=response.status_code, url=response.request_meta.get("url"),
                           ms=round(response.request_meta["response_time"], 1), ok=problem is None)


# -- the load shape ----------------------------------------------------------
class Profile(LoadTestShape):
    """The shape named by --profile, built on the first tick (options are parsed by then).

    Locust's only shape class: loadkit/shapes.py's shapes are plain tick(run_time) objects.
    In distributed mode it runs on the master, which tells the workers how many users to run.
    Its clock starts when the users can send, once their inputs are built (prepare_inputs):
    a 2-s steady run sends for 2 s however long the building took.
    """

    use_common_options = False

    def __init__(self):
        super().__init__()
        self.shape = None
        self.holding_since: float | None = None  # when the clock was first held for the inputs
        self.gave_up_waiting = False

    def tick(self):
        env = self.runner.environment
        if self.shape is None:
            self.shape = shapes.build(profile_name(env), _option(env, "peak_users"),
                                      _option(env, "duration"), _option(env, "step_users"),
                                      _option(env, "step_seconds"))
            log.info("load profile %s: %s", profile_name(env), vars(self.shape))
        if self.waiting_for_inputs(env):
            self.reset_time()  # the clock stays at 0 until the users can send (prepare_inputs)
        return self.shape.tick(self.get_run_time())

    def waiting_for_inputs(self, env) -> bool:
        """Whether the users cannot send yet, their inputs still being built (at most
        MAX_INPUTS_WAIT_S: then the clock starts anyway, with a warning)."""
        if self.gave_up_waiting or users_can_send(env):
            return False
        now = time.monotonic()
        self.holding_since = self.holding_since or now
        if now - self.holding_since < MAX_INPUTS_WAIT_S:
            return True
        log.warning("the inputs are not built after %g s: the shape's clock starts anyway", MAX_INPUTS_WAIT_S)
        self.gave_up_waiting = True
        return False


# -- thresholds --------------------------------------------------------------
def good_requests(stats) -> StatsEntry:
    """All good requests pooled (bad requests are excluded from the latency checks)."""
    pooled = StatsEntry(stats, "good requests", "POST", use_response_times_cache=False)
    for entry in stats.entries.values():
        if not entry.name.startswith(BAD_PREFIX):
            pooled.extend(entry)
    return pooled


def check_thresholds(stats, max_p95_ms: float, max_p99_ms: float, max_fail_ratio: float) -> list[str]:
    """What is broken, in words; empty when the run passes."""
    broken = []
    total = stats.total
    if total.num_requests == 0:
        return ["no request was made"]
    good = good_requests(stats)
    for name, limit, pct in (("p95", max_p95_ms, 0.95), ("p99", max_p99_ms, 0.99)):
        if limit and good.num_requests:
            value = good.get_response_time_percentile(pct)
            if value > limit:
                broken.append(f"{name} latency of good requests is {value:.0f} ms, above {limit:g} ms")
    if total.fail_ratio > max_fail_ratio:
        broken.append(f"{total.num_failures} of {total.num_requests} requests failed "
                      f"({total.fail_ratio:.2%}), above {max_fail_ratio:.2%}")
    return broken


def max_p99_ms(environment) -> float:
    """--max-p99-ms, else the p99 bound of the function's latency contract."""
    value = _option(environment, "max_p99_ms")
    if value is not None:
        return float(value)
    function = function_of(environment)
    try:
        bound = traffic.latency_objective_ms(function)
    except ValueError as err:  # no latency contract: nothing to hold it to, say so
        log.warning("no p99 threshold: %s (pass --max-p99-ms)", err)
        return 0.0
    log.info("p99 threshold %g ms: %s's latency contract (%s)", bound, function, traffic.slo_features(function))
    return bound


@events.quitting.add_listener
def on_quitting(environment, **_kw):
    if isinstance(environment.runner, MasterRunner):  # counted with the sent log, before it closes
        counts = {environment.runner.get_worker_index(client_id): count
                  for client_id, count in getattr(environment, "worker_requests", {}).items()}
        log.info("%d workers made %d requests: %s", len(counts), sum(counts.values()),
                 ", ".join(f"worker {index} {count}" for index, count in sorted(counts.items())) or "none")
    sent_log = getattr(environment, "sent_log", None)
    if sent_log:
        sent_log.close()
    if getattr(environment, "parsed_options", None) is None or isinstance(environment.runner, WorkerRunner):
        return  # library use, or a worker: the master judges the whole run
    broken = check_thresholds(environment.stats, float(_option(environment, "max_p95_ms", 0)),
                              max_p99_ms(environment), float(_option(environment, "max_fail_ratio", 0.01)))
    for reason in broken:
        log.error("threshold broken: %s", reason)
    if broken:
        environment.process_exit_code = 1
    else:
        log.info("thresholds met")
