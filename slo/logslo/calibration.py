"""How often the comparison contracts are wrong, measured on real request lines.

`torchfaas-slo calibrate` (make judge-calibration) replays a committed log of one
`make review` run whose two sides served identical code (slo/calibration/): every
inference line of both sides is one pool. A trial draws two disjoint samples of
`--requests` lines from it, labels them baseline and candidate, optionally changes the
candidate, and decides the contracts of a comparison feature file (functions/classifier/compare), with
the same step functions `torchfaas-slo compare` runs:

    identical    nothing changed: every hold is a false alarm
    latency      every candidate request 25% slower
    5xx          3% of the candidate's requests answered 500 (+3 points)
    class mix    20% of the candidate's answers moved to the pool's most common class

It prints, per scenario, how often the whole comparison held, was inconclusive or
promoted, and which contracts held, and exits 1 when a target is missed: false holds
above 2.5%, any detection below 97.5%.

`--path aggregates` judges each trial's two samples as counts instead (compare/binned.py:
each side streamed into bins, written as the aggregate interface's dict and read back, as
an aggregate fetcher's answer is); `--path both` judges every trial both ways and prints
how often each contract's verdict differs and by how much its interval moves: what
binning costs, measured on the same draws.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .compare import feature
from .compare.binned import Binned
from .compare.sampling import Sample
from .verdicts import HOLD, INCONCLUSIVE, PROMOTE

SCENARIOS = ("identical", "latency +25%", "5xx +3 points", "class mix 20% moved")
TARGETS = {"identical": ("at most", 0.025), "latency +25%": ("at least", 0.975),
           "5xx +3 points": ("at least", 0.975), "class mix 20% moved": ("at least", 0.975)}


def read_pool(path: str) -> list:
    """The inference lines of a JSONL log (gzip or plain), as dicts."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.startswith("{")]
    return [line for line in lines if line.get("event") == "inference" and "latency_ms" in line]


def samples_of(lines: list) -> Sample:
    sample = Sample()
    for line in lines:
        sample.add({k: str(v) for k, v in line.items() if v is not None})
    return sample


def binned_of(lines: list, bin_ms: float = 0.0) -> Binned:
    """The lines as an aggregate answer: counted into bins (the streamed path's 1% log-scale
    bins, or linear ones `bin_ms` wide as Loki's `floor` makes them), through the
    interface's dict."""
    binned = Binned(linear_uppers(bin_ms)) if bin_ms else Binned()
    for line in lines:
        binned.add({k: str(v) for k, v in line.items() if v is not None})
    return Binned.from_counts(binned.to_counts())


def linear_uppers(width_ms: float, highest_ms: float = 10_000.0) -> np.ndarray:
    return np.append(np.arange(1, math.ceil(highest_ms / width_ms) + 1) * width_ms, math.inf)


def readers(bin_ms: float = 0.0) -> dict:
    return {"lines": samples_of, "aggregates": lambda lines: binned_of(lines, bin_ms)}


def _gap(x: float, y: float) -> float:
    """y - x, 0 where both are the same infinity (an interval unbounded either way)."""
    return 0.0 if x == y else y - x


@dataclass
class Agreement:
    """Both paths on the same draws: per contract, verdicts that differ and how far the
    aggregate path's estimate and bounds are from the line path's (absolute, the
    contract's unit)."""

    trials: int = 0
    overall_differs: int = 0
    differs: Counter = field(default_factory=Counter)  # (contract, lines verdict, aggregates verdict)
    moves: dict = field(default_factory=dict)  # contract -> [(d estimate, d low, d high)]

    def add(self, lines: tuple, aggregates: tuple) -> None:
        (overall_l, judged_l), (overall_a, judged_a) = lines, aggregates
        self.trials += 1
        self.overall_differs += overall_l != overall_a
        for a, b in zip(judged_l, judged_a):
            if a.verdict != b.verdict:
                self.differs[(a.contract, a.verdict, b.verdict)] += 1
            if a.low is not None and b.low is not None:
                self.moves.setdefault(a.contract, []).append(
                    tuple(_gap(x, y) for x, y in ((a.estimate, b.estimate), (a.low, b.low), (a.high, b.high))))

    def summary(self) -> dict:
        """contract -> {mean and max |difference| of estimate, low, high}."""
        out = {}
        for contract, moves in self.moves.items():
            columns = list(zip(*moves))
            out[contract] = {f"{stat}_{name}": (sum(map(abs, col)) / len(col) if stat == "mean" else max(map(abs, col)))
                             for name, col in zip(("estimate", "low", "high"), columns) for stat in ("mean", "max")}
        return out

    def table(self) -> str:
        lines = [f"agreement of the two paths on the same {self.trials} trials: the overall verdict differs in "
                 f"{self.overall_differs}", "",
                 "| contract | verdicts that differ (lines -> aggregates) | mean / max shift of the estimate | "
                 "of the lower bound | of the upper bound |", "|---|---|---|---|---|"]
        summary = self.summary()
        for contract in dict.fromkeys([c for c, *_ in self.differs] + list(summary)):
            moved = ", ".join(f"{a}->{b} {n}" for (c, a, b), n in self.differs.items() if c == contract) or "none"
            figures = summary.get(contract, {})
            cells = [f"{figures[f'mean_{k}']:.4f} / {figures[f'max_{k}']:.4f}" if figures else "-"
                     for k in ("estimate", "low", "high")]
            lines.append(f"| {contract} | {moved} | {' | '.join(cells)} |")
        return "\n".join(lines)


def change(scenario: str, lines: list, rng: random.Random, target_class: str) -> list:
    """The candidate's lines with the scenario's change applied (copies)."""
    out = [dict(line) for line in lines]
    if scenario == "latency +25%":
        for line in out:
            line["latency_ms"] = float(line["latency_ms"]) * 1.25
    elif scenario == "5xx +3 points":
        for line in out:
            if rng.random() < 0.03:
                line.update(status=500, error="internal")
                line.pop("top1_class", None)
    elif scenario == "class mix 20% moved":
        for line in out:
            if line.get("status") == 200 and rng.random() < 0.20:
                line["top1_class"] = target_class
    return out


@dataclass
class Tally:
    trials: int = 0
    verdicts: Counter = field(default_factory=Counter)
    holds_by_contract: Counter = field(default_factory=Counter)
    undecided_by_contract: Counter = field(default_factory=Counter)

    def rate(self, verdict: str) -> float:
        return self.verdicts[verdict] / self.trials if self.trials else 0.0


def run(pool: list, contracts: tuple, requests: int, trials: dict, seed: int = 1, path: str = "lines",
        agreement: Agreement | None = None, bin_ms: float = 0.0) -> dict:
    """{scenario: Tally}: `trials[scenario]` trials of two disjoint samples of `requests`,
    judged as `path` reads them ("lines" or "aggregates", in bins `bin_ms` wide or 1% log
    bins). With `agreement`, every trial is judged the other way too and the differences
    are added to it."""
    paths = readers(bin_ms)
    if 2 * requests > len(pool):
        raise ValueError(f"the pool holds {len(pool)} requests: too few for two samples of {requests}")
    read = paths[path]
    rng = random.Random(seed)
    target = Counter(line.get("top1_class") for line in pool if line.get("status") == 200).most_common(1)[0][0]
    tallies = {}
    for scenario in SCENARIOS:
        tally = Tally()
        for _ in range(trials.get(scenario, 0)):
            drawn = rng.sample(pool, 2 * requests)
            base, cand = drawn[:requests], change(scenario, drawn[requests:], rng, target)
            overall, judgements = feature.decide(contracts, feature.pair(read(base), read(cand)))
            if agreement is not None:
                other = paths["aggregates" if path == "lines" else "lines"]
                again = feature.decide(contracts, feature.pair(other(base), other(cand)))
                pair = ((overall, judgements), again)
                agreement.add(*(pair if path == "lines" else pair[::-1]))
            tally.trials += 1
            tally.verdicts[overall] += 1
            tally.holds_by_contract.update(j.contract for j in judgements if j.verdict == HOLD)
            tally.undecided_by_contract.update(j.contract for j in judgements if j.verdict == INCONCLUSIVE)
        tallies[scenario] = tally
    return tallies


def missed_targets(tallies: dict) -> list:
    missed = []
    for scenario, (word, target) in TARGETS.items():
        tally = tallies.get(scenario)
        if not tally or not tally.trials:
            continue
        rate = tally.rate(HOLD)
        if (word == "at most" and rate > target) or (word == "at least" and rate < target):
            missed.append(f"{scenario}: held in {rate:.1%} of {tally.trials} trials, target {word} {target:.1%}")
    return missed


def table(tallies: dict, requests: int, pool: int) -> str:
    lines = [f"calibration: {requests} requests a version, drawn from {pool} real request lines of identical code",
             "", "| scenario | trials | hold | inconclusive | promote | target (hold) | contracts that held | "
             "contracts left inconclusive |", "|---|---:|---:|---:|---:|---|---|---|"]
    for scenario, tally in tallies.items():
        word, target = TARGETS[scenario]
        held = ", ".join(f"{name} {count}" for name, count in tally.holds_by_contract.most_common()) or "-"
        undecided = ", ".join(f"{name} {count}" for name, count in tally.undecided_by_contract.most_common()) or "-"
        lines.append(f"| {scenario} | {tally.trials} | {tally.rate(HOLD):.1%} | "
                     f"{tally.rate(INCONCLUSIVE):.1%} | {tally.rate(PROMOTE):.1%} | "
                     f"{word} {target:.1%} | {held} | {undecided} |")
    return "\n".join(lines)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """--log and --features: what a replay reads (this command's and calibrate-watch's)."""
    parser.add_argument("--log", default="slo/calibration/identical-code.jsonl.gz",
                        help="a log of one run whose two sides served identical code")
    parser.add_argument("--features", default="functions/classifier/compare/canary.feature",
                        help="the comparison contracts")


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="torchfaas-slo calibrate", description=__doc__.splitlines()[0])
    add_replay_arguments(parser)
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests a version per trial (default 2000: about what make review serves a "
                             "version by default)")
    parser.add_argument("--trials", type=int, default=400, help="trials of identical code")
    parser.add_argument("--detection-trials", type=int, default=200, help="trials of each changed candidate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--path", choices=("lines", "aggregates", "both"), default="lines",
                        help="judge each trial from every request (lines), from bin counts (aggregates), or "
                             "both ways, printing where they differ")
    parser.add_argument("--bin-ms", type=float, default=0.0,
                        help="aggregates: linear latency bins this wide (1: what Loki's floor gives) instead of "
                             "the streamed path's 1%% log-scale bins")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    pool = read_pool(args.log)
    trials = {s: (args.trials if s == "identical" else args.detection_trials) for s in SCENARIOS}
    agreement = Agreement() if args.path == "both" else None
    tallies = run(pool, feature.read(args.features), args.requests, trials, args.seed,
                  "lines" if args.path == "both" else args.path, agreement, args.bin_ms)
    bins = f"linear {args.bin_ms:g} ms bins" if args.bin_ms else "1% log-scale bins"
    print(f"path: {args.path}" + (f" ({bins})" if args.path != "lines" else ""))
    print(table(tallies, args.requests, len(pool)))
    if agreement is not None:
        print("\n" + agreement.table())
    missed = missed_targets(tallies)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"requests": args.requests, "pool": len(pool), "missed": missed, "path": args.path,
                       "bin_ms": args.bin_ms,
                       **({"agreement": {"trials": agreement.trials, "overall_differs": agreement.overall_differs,
                                         "differs": [[*k, n] for k, n in agreement.differs.items()],
                                         "moves": agreement.summary()}} if agreement else {}),
                       "scenarios": {s: {"trials": t.trials, **{v: t.rate(v) for v in
                                                                (HOLD, INCONCLUSIVE, PROMOTE)},
                                         "holds_by_contract": dict(t.holds_by_contract),
                                         "inconclusive_by_contract": dict(t.undecided_by_contract)}
                                     for s, t in tallies.items()}}, handle, indent=2)
    for line in missed:
        print(f"TARGET MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
