"""A function's objectives, read from its SLO contracts: what the load tools hold it to.

The p99 bound a function promises lives in one place, its latency contract
(`Then for every model version, 99% of requests took at most 250 ms`). The capacity
finder, Locust's thresholds, `make compare` and `make review` take their default from
here rather than from a number of their own, so that a function with a tighter promise
(diabetes: 50 ms) is measured against its own, and changing the contract changes them all.

    torchfaas-slo objective functions/diabetes/slo     # prints 50
    torchfaas-slo objective functions/classifier/slo/latency.feature

The step is matched with the step definition's own pattern (steps.LATENCY_STEP), through
the `parse` library behave matches steps with, so a contract the checker can run is a
contract this reads. Needs behave's Gherkin parser, not a source (no Loki, no log).
"""

from __future__ import annotations

import os
from pathlib import Path

import parse

from .steps import LATENCY_STEP

P99 = 99.0
_LATENCY = parse.compile(LATENCY_STEP, case_sensitive=True)


def step_text(percent: float, bound: str) -> str:
    """The latency step as a contract writes it, for messages: `bound` stands for the number."""
    return "Then " + LATENCY_STEP.replace("{pct:g}", f"{percent:g}").replace("{bound:g}", bound)


class ObjectiveError(ValueError):
    """No objective can be read: no such path, no .feature file, or no latency contract."""


def feature_files(features) -> list[Path]:
    """The .feature files of `features` (a folder, searched recursively, or a file), sorted."""
    path = Path(features)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.feature") if p.is_file())
    raise ObjectiveError(f"no features folder or file {str(features)!r}")


def latency_bounds(features, percent: float = P99) -> list[tuple[float, str]]:
    """Every `Then for every model version, <percent>% of requests took at most N ms` in
    `features`, as (N, "file:line"), in file order. `And`/`But` steps after a `Then` count,
    and a Scenario Outline's rows are expanded as behave runs them."""
    from behave.parser import ParserError, parse_file

    found = []
    for path in feature_files(features):
        try:
            feature = parse_file(str(path))
        except (ParserError, OSError) as err:
            raise ObjectiveError(f"cannot read {path}: {err}") from err
        if feature is None:  # an empty file
            continue
        steps = list(feature.background.steps) if feature.background else []
        for scenario in feature.walk_scenarios():
            steps += scenario.steps
        for step in steps:
            match = _LATENCY.parse(step.name) if step.step_type == "then" else None
            if match and match["pct"] == percent:
                found.append((float(match["bound"]), f"{path}:{step.line}"))
    return found


def latency_objective_ms(features, percent: float = P99) -> float:
    """The p99 (or `percent`) latency bound, in ms, that `features` (a function's SLO
    contracts: a folder or a .feature file) promise.

    Several such contracts (say one per tag) give the strictest of them: a load tool that
    holds the function to the lowest bound cannot pass it where a contract fails it.
    Raises ObjectiveError when there is none (the tools must not invent a number).
    """
    bounds = latency_bounds(features, percent)
    if not bounds:
        files = feature_files(features)
        said = f"none of its {len(files)} .feature file(s) says" if files else "it has no .feature file to say"
        raise ObjectiveError(
            f'no latency contract in {features}: {said} "{step_text(percent, "<N>")}"')
    return min(bound for bound, _ in bounds)


def main(argv: list, prog: str = "torchfaas-slo objective") -> int:
    """`torchfaas-slo objective [FEATURES] [--percent 99]`: print the bound (ms), exit 0;
    exit 2 with one line on stderr when there is none."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Print the latency bound (ms) a function's SLO contracts promise: the N of "
                    f'"{step_text(P99, "N")}". '
                    "The load tools (make capacity, make load, make compare, make review) default to it.")
    parser.add_argument("features", nargs="?", default="features", metavar="FEATURES",
                        help="a features folder or .feature file (default: ./features)")
    parser.add_argument("--percent", type=float, default=P99, help="which percentile's bound (default 99)")
    parser.add_argument("--where", action="store_true", help="also print the file:line of each such contract")
    args = parser.parse_args(argv)
    try:
        bound = latency_objective_ms(args.features, args.percent)
    except ObjectiveError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    print(f"{bound:g}")
    if args.where:
        for value, where in latency_bounds(args.features, args.percent):
            print(f"{value:g}\t{os.path.relpath(where)}")
    return 0
