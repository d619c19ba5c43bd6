"""Run the locustfile distributed: one Locust master and N workers (Locust's own mode).

    python load/distributed.py --workers 4 -- --headless --host URL --profile step ...
    make load WORKERS=4 [LOCAL_WORKERS=n] HOST=http://GATEWAY:8080/function/classifier ...

Everything after `--` goes to the master, as it would to a plain `locust` run
(`-f load/locustfile.py --master --expect-workers N` are added). The master waits
for N workers (at most --max-wait seconds), runs the load shape, gathers their
statistics and judges the thresholds; its exit code is this command's.

--local-workers M (default: all N) of the workers are started here, on this
machine, and stopped with the master. For load beyond one machine, start the
others where you like, pointed at this master (it then listens on all interfaces,
port --master-port, Locust's 5557 by default):

    locust -f load/locustfile.py --worker --master-host MASTER_IP --master-port 5557

Workers need the repository's load/ folder and the same Python packages
(requirements-dev.txt); they get the run's options from the master.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadkit.localrun import free_port

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LOCUST_MASTER_PORT = 5557


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ours, master_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s --workers N [options] -- LOCUST_MASTER_ARGS...")
    parser.add_argument("--workers", type=int, required=True, help="workers the master waits for")
    parser.add_argument("--local-workers", type=int, default=None,
                        help="how many of them to start on this machine (default: all)")
    parser.add_argument("--master-port", type=int, default=None,
                        help="port the master listens on (default: a free one when every worker is "
                             f"local, else Locust's {LOCUST_MASTER_PORT})")
    parser.add_argument("--max-wait", type=int, default=120,
                        help="seconds the master waits for its workers before giving up (default 120)")
    args = parser.parse_args(ours)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.local_workers is None:
        args.local_workers = args.workers
    if not 0 <= args.local_workers <= args.workers:
        parser.error("--local-workers must be between 0 and --workers")
    return args, master_args


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def stop(proc: subprocess.Popen, sig: int | None, grace: float) -> None:
    """`sig` (None: wait for it to end by itself), then SIGKILL after `grace` seconds."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    args, master_args = parse_args(sys.argv[1:] if argv is None else argv)
    all_local = args.local_workers == args.workers
    port = args.master_port or (free_port() if all_local else LOCUST_MASTER_PORT)
    bind = "127.0.0.1" if all_local else "*"
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    master = subprocess.Popen(locust("--master", "--master-bind-host", bind, "--master-bind-port", str(port),
                                     "--expect-workers", str(args.workers),
                                     "--expect-workers-max-wait", str(args.max_wait), *master_args))
    workers: list[subprocess.Popen] = []
    try:
        print(f"distributed: master on port {port}, waiting for {args.workers} workers "
              f"({args.local_workers} started here)", file=sys.stderr, flush=True)
        workers = [subprocess.Popen(locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
                                    stdin=subprocess.DEVNULL)
                   for _ in range(args.local_workers)]
        while master.poll() is None:
            for index, worker in enumerate(workers):
                if worker.poll() not in (None, 0):
                    print(f"distributed: local worker {index} exited with code {worker.returncode}; "
                          "stopping the run", file=sys.stderr, flush=True)
                    return 2
            time.sleep(0.2)
        return master.returncode
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The master first: it ends the run, writes its reports, judges the thresholds and
        # tells its workers to quit. With SIGINT, because a headless Locust running a load
        # shape installs its SIGTERM handler only once the shape is over (a SIGTERM kills it
        # with its reports unwritten). A Ctrl-C in the terminal has reached it already: a
        # second one would interrupt its shutdown.
        stop(master, None if received == [signal.SIGINT] else signal.SIGINT, grace=30)
        deadline = time.monotonic() + 5
        for worker in workers:  # they quit when the master tells them to; else SIGTERM (handled)
            try:
                worker.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(worker, signal.SIGTERM, grace=10)


if __name__ == "__main__":
    sys.exit(main())
