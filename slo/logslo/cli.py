"""The `torchfaas-slo` command (also `python -m logslo`).

    torchfaas-slo [check] [FEATURES ...] [--log-file F | --loki-url URL] [--at T]
                  [--report PATH] [--tags EXPR] [-- BEHAVE_ARGS ...]

`check` (the default command) runs the SLO contracts in FEATURES (folders or .feature
files; default ./features) against Loki or a JSONL log and exits 0 when every contract
holds, 1 when one is violated or could not be judged, 2 when no source (Loki or log
file) is configured, the log file is missing, empty or unreadable, or the command line
is wrong.
Every flag has an environment variable (the flag wins): LOKI_URL, LOG_FILE, SLO_AT,
SLO_REPORT, SLO_TAGS; LOKI_TIMEOUT, LOKI_TENANT, LOKI_USERNAME, LOKI_PASSWORD and
LOKI_TOKEN are read from the environment only (secrets stay out of the command line).

`compare` judges a candidate model version against a baseline (see the compare package):

    torchfaas-slo compare [FEATURES ...] --baseline V --candidate V [--log-file F | --loki-url URL]
                          [--at T] [--report-dir DIR] [--tags EXPR]

exit 0 promote, 1 hold, 2 inconclusive (the data cannot tell: too few requests, an
interval straddling a bound), 3 broken run (no data for a version, Loki failing, a
missing/empty/unreadable log, a usage error).

`calibrate` replays a committed log of identical code through the comparison contracts
and prints their false-hold and detection rates (see calibration.py).

`objective` prints the p99 latency bound (ms) of the latency contract in FEATURES (a
function's SLO folder or a .feature file): the default the load tools hold the function to
(see objectives.py); exit 2 when there is no latency contract.

    torchfaas-slo objective [FEATURES] [--percent 99]

`commits` prints, as JSON, the commits (SOURCE_COMMIT of the image) each model version
seen in the window was built from: {"sha256-...": ["0123abc..."]}.

Commands are looked up in COMMANDS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from . import __version__
from . import settings as settings_mod

PROG = "torchfaas-slo"


def check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} [check]",
        description="Check the SLO contracts (Gherkin .feature files) against Loki or a JSONL log.",
        epilog="Arguments after `--` go to behave unchanged (e.g. -- --junit --junit-directory reports).")
    parser.add_argument("features", nargs="*", metavar="FEATURES",
                        help="features folders or .feature files (default: ./features)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--loki-url", metavar="URL", help="query this Loki over HTTP (env LOKI_URL)")
    source.add_argument("--log-file", metavar="FILE",
                        help="evaluate the same LogQL over a JSONL log (env LOG_FILE; used when LOKI_URL is unset)")
    parser.add_argument("--at", metavar="UNIX_SECONDS", help="evaluation time (env SLO_AT; default now)")
    parser.add_argument("--report", metavar="PATH", help="write the JSON report here (env SLO_REPORT)")
    parser.add_argument("--tags", metavar="EXPR",
                        help='behave tag expression, e.g. "not @production-mix" (env SLO_TAGS)')
    parser.add_argument("--html", metavar="PATH",
                        help="write the self-contained HTML report (charts, verdicts) here (env SLO_HTML)")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def check(argv: list, environ=None) -> int:
    argv, behave_args = _split(argv)
    args = check_parser().parse_args(argv)
    env = _source_env(args, environ)
    if args.report is not None:
        env["SLO_REPORT"] = args.report
    if args.html is not None:
        env["SLO_HTML"] = args.html
    tags = args.tags if args.tags is not None else env.get("SLO_TAGS", "")
    features = args.features or ["features"]
    missing = [path for path in features if not os.path.exists(path)]
    if missing:
        print(f"{PROG}: no features folder or file {', '.join(map(repr, missing))}", file=sys.stderr)
        return 2
    slo = _settings(env)
    if slo is None:  # a missing, empty or unreadable log (or no source at all): one line, exit 2
        return 2
    from .runner import run
    return run(features, settings=slo, tags=tags.strip() or None, behave_args=behave_args)


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} compare",
        description="Judge a candidate model version against a baseline over the same window, from the same "
                    "log or Loki, with the comparison contracts (Gherkin .feature files). Exit 0 promote, "
                    "1 hold, 2 inconclusive, 3 broken run.",
        epilog="Arguments after `--` go to behave unchanged.")
    parser.add_argument("features", nargs="*", metavar="FEATURES",
                        help="comparison contracts: folders or .feature files (default: ./compare)")
    parser.add_argument("--baseline", metavar="VERSION", help="the baseline's model_version (env COMPARE_BASELINE)")
    parser.add_argument("--candidate", metavar="VERSION", help="the candidate's model_version (env COMPARE_CANDIDATE)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--loki-url", metavar="URL", help="query this Loki over HTTP (env LOKI_URL)")
    source.add_argument("--log-file", metavar="FILE", help="a JSONL log (env LOG_FILE; used when LOKI_URL is unset)")
    parser.add_argument("--at", metavar="UNIX_SECONDS", help="evaluation time (env SLO_AT; default now)")
    parser.add_argument("--report-dir", metavar="DIR",
                        help="write report.md, report.json, report.html here "
                             "(env COMPARE_REPORT; default reports/compare)")
    parser.add_argument("--tags", metavar="EXPR", help="behave tag expression (env SLO_TAGS)")
    return parser


def compare(argv: list, environ=None) -> int:
    argv, behave_args = _split(argv)
    args = compare_parser().parse_args(argv)
    env = _source_env(args, environ)
    for flag, name in ((args.baseline, "COMPARE_BASELINE"), (args.candidate, "COMPARE_CANDIDATE"),
                       (args.report_dir, "COMPARE_REPORT")):
        if flag:
            env[name] = flag
    slo = _settings(env, "compare")
    if slo is None or not _two_versions(slo.compare, "compare"):
        return 3
    features = args.features or ["compare"]
    nowhere = [path for path in features if not os.path.exists(path)]
    if nowhere:
        print(f"{PROG} compare: no features folder or file {', '.join(map(repr, nowhere))}", file=sys.stderr)
        return 3
    from .compare import EXIT_CODES, behave_glue
    from .runner import run
    report_json = os.path.join(slo.compare.report_dir, "report.json")
    if os.path.exists(report_json):
        os.remove(report_json)  # a stale verdict must never decide this run's exit code
    tags = args.tags if args.tags is not None else env.get("SLO_TAGS", "")
    code = run(features, settings=slo, tags=tags.strip() or None, behave_args=behave_args,
               hooks_class=behave_glue.CompareHooks, register_steps=behave_glue.register)
    try:
        with open(report_json, encoding="utf-8") as handle:
            verdict = json.load(handle)["verdict"]
    except (OSError, ValueError, KeyError):
        print(f"{PROG} compare: no verdict (behave exit {code}); see the output above", file=sys.stderr)
        return 3
    return EXIT_CODES[verdict]


def _settings(env: dict, command: str = "", check_source: bool = True):
    """The tool's settings (with a usable source), or None after one line on stderr."""
    from . import settings
    try:
        slo = settings.from_env(env)
        if check_source:
            slo.source.check()
    except settings.SettingsError as err:
        print(f"{PROG}{' ' + command if command else ''}: {err}", file=sys.stderr)
        return None
    return slo


def _two_versions(wanted, command: str) -> bool:
    """A comparison needs two different model versions: say which is missing."""
    missing = [name for name, value in (("COMPARE_BASELINE", wanted.baseline),
                                        ("COMPARE_CANDIDATE", wanted.candidate)) if not value]
    if missing:
        print(f"{PROG} {command}: set {' and '.join(missing)} (--baseline/--candidate: the two model versions)",
              file=sys.stderr)
        return False
    if wanted.baseline == wanted.candidate:
        print(f"{PROG} {command}: the baseline and the candidate are the same version", file=sys.stderr)
        return False
    return True


def _source_env(args, environ) -> dict:
    """The environment with the command line's source and time applied: an explicit
    source on the command line replaces the other one from the environment."""
    env = dict(os.environ if environ is None else environ)
    if args.loki_url:
        env["LOKI_URL"] = args.loki_url
        env.pop("LOG_FILE", None)
    if args.log_file:
        env["LOG_FILE"] = args.log_file
        env.pop("LOKI_URL", None)
    if args.at is not None:
        env["SLO_AT"] = args.at
    return env


def commits(argv: list, environ=None) -> int:
    """Which commit each model version seen in the window was built from (its image's
    SOURCE_COMMIT, in the `model_loaded` line): what the scheduled job comments on."""
    from . import queries, settings
    from .vectors import labels_of

    parser = argparse.ArgumentParser(prog=f"{PROG} commits", description=commits.__doc__)
    parser.add_argument("--function", default=settings.DEFAULT_FUNCTION, help="the function (stream label app)")
    parser.add_argument("--window", type=int, default=7 * 86400, metavar="SECONDS",
                        help="how far back to look for model_loaded lines (default 7 days)")
    parser.add_argument("--version", help="only this model version")
    parser.add_argument("--failed-in", metavar="REPORT",
                        help="a check's JSON report (SLO_REPORT): only the versions its violated "
                             "contracts name, or every version when they name none (a contract over all traffic)")
    args = parser.parse_args(argv)
    try:
        slo = settings.from_env(dict(os.environ if environ is None else environ))
        answer = slo.backend.instant(queries.deployments(args.function, args.window), slo.at)
    except Exception as err:  # no source, a bad log, Loki failing: cannot say
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    found = {}
    for key in answer:
        labels = labels_of(key)
        version, commit = labels.get("model_version", ""), labels.get("source_commit", "")
        if commit and (args.version is None or version == args.version):
            found.setdefault(version, []).append(commit)
    if args.failed_in:
        try:
            with open(args.failed_in, encoding="utf-8") as handle:
                violated = [c["contract"] for c in json.load(handle)["contracts"] if not c["passed"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"{PROG}: cannot read the report {args.failed_in}: {err}", file=sys.stderr)
            return 2
        named = {v for v in found
                 if any(re.search(rf"version {re.escape(v)}(?=[,\s)]|$)", name) for name in violated)}
        found = {v: found[v] for v in named} if named else (found if violated else {})
    print(json.dumps({version: sorted(found[version]) for version in sorted(found)}))
    return 0


def calibrate(argv: list, environ=None) -> int:
    """How often the comparison contracts hold identical code, and catch real changes
    (calibration.py)."""
    from . import calibration
    return calibration.main(argv)


def watch(argv: list, environ=None) -> int:
    """A canary watched while traffic shifts to it (watch_command.py)."""
    from . import watch_command
    return watch_command.main(argv, environ)


def serve(argv: list, environ=None) -> int:
    """The HTTP gate Flagger's webhooks and Argo Rollouts' web metric ask (gate.py), one
    watch per canary (canaries.py)."""
    parser = argparse.ArgumentParser(prog=f"{PROG} serve", description=serve.__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default all)")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--functions-dir", default="functions", metavar="DIR",
                        help="each function's comparison contracts are DIR/<function>/compare (default functions)")
    parser.add_argument("--report-dir", default="reports/canary", metavar="DIR",
                        help="each canary's watch.json, watch.html, report.md in DIR/<namespace>/<name>")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    args = parser.parse_args(argv)
    slo = _settings(dict(os.environ if environ is None else environ), "serve", check_source=False)
    if slo is None:
        return 3
    if not (slo.source.loki_url or slo.source.log_file):  # a log may still be empty: it grows
        print(f"{PROG} serve: {settings_mod.NO_SOURCE}", file=sys.stderr)
        return 3
    from . import gate
    from .canaries import Canaries
    canaries = Canaries(slo, functions_dir=args.functions_dir, report_dir=args.report_dir)
    try:
        gate.serve(gate.make_app(canaries), args.host, args.port, args.threads)
    finally:
        canaries.stop()
    return 0


def calibrate_watch(argv: list, environ=None) -> int:
    """How often a watch is wrong over a whole watch, on real time-ordered streams
    (watch_calibration.py)."""
    from . import watch_calibration
    return watch_calibration.main(argv)


def objective(argv: list, environ=None) -> int:
    """The latency bound a function's contracts promise (objectives.py)."""
    from . import objectives
    return objectives.main(argv, prog=f"{PROG} objective")


COMMANDS = {"check": check, "compare": compare, "watch": watch, "serve": serve, "commits": commits,
            "calibrate": calibrate,
            "calibrate-watch": calibrate_watch, "objective": objective}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} [{'|'.join(COMMANDS)}] ...  (default: check)\n")
        check_parser().print_help()
        return 0
    return check(argv)


def _split(argv: list) -> tuple:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []
