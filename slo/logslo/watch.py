"""`torchfaas-slo watch`: judge a canary while traffic shifts to it, look after look.

Every INTERVAL seconds the watch reads the request lines of both model versions that are
new since its last look (newlines.py) and decides the comparison contracts of the
function's feature file on everything read so far (compare/feature.py: the same step
functions `compare` runs):

    hold          at the first look where a contract is confidently beyond its bound
    promote       at the first look where every contract is confidently within its bound
    inconclusive  at the deadline, with how many more requests would decide
    broken        at the deadline, when the last look could not read its data, or a
                  version served no request at all

A look decides nothing when its data is missing: Loki failing (unreachable, slow, 429,
5xx, refusing the query) makes a `data-fault` look, a version with no new request a
`no-new-data` look, fewer judged requests than the feature's minimum a `warm-up` look;
the verdict stays "watching" and the document says why.

Right over the whole watch, not per look: the feature's error (1 - confidence) is spent
over the K looks that can still decide when the first one does (those the deadline
allows, less the warm-up's), the n-th at (2n - 1)/K**2 of it (look_confidence), so by the
union bound the chance that ANY look of a watch holds a candidate that meets its
contracts (or promotes one that breaks them) stays within the feature's confidence level
whatever the stream does between looks. docs/canary.md shows the rates on real, time-ordered streams
with and without this (`torchfaas-slo calibrate-watch`).

Memory: the watch keeps every judged request until a version has `lines_max` of them
(COMPARE_LINES_MAX; COMPARE_PATH=aggregates: from the start), then their counts instead
(compare/binned.py), which do not grow with the traffic; the contracts are decided from
either alike (judge_binned.py says what binning costs).

Each version's first seconds (the feature's warm-up: "Given a watch leaves out the first
30 seconds of each version") are not judged: a cold process is slower for a while, and a
good release must not be held for it.

On the aggregate path (newcounts.py) a look reads each version's counts since the last
look from Loki's metric queries or Prometheus, never a line, and adds them up.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from .compare import feature
from .compare.binned import Binned
from .compare.sampling import Sample
from .compare.text import interval_text, value_text
from .newcounts import Counted
from .newcounts import add as add_counts
from .newlines import line_time
from .report import finite
from .verdicts import BROKEN, HOLD, INCONCLUSIVE, PROMOTE

WATCHING = "watching"
OK, DATA_FAULT, NO_NEW_DATA, WARMING = "ok", "data-fault", "no-new-data", "warm-up"


def look_confidence(confidence: float, looks: int, nth: int = 0) -> float:
    """The level of the `nth` (1-based) of `looks` deciding looks, so that all of them
    together err at most 1 - confidence (a union bound: the looks' intervals may be
    correlated any way at all). The error is spent as the power family's t**2 (Kim and
    DeMets): look n of K gets (2n - 1)/K**2 of it, little at the first looks, where a
    change must be large to be decided anyway, more at the last, where the requests are.
    nth=0: the same share at every look (1/K)."""
    if looks < 1:
        raise ValueError(f"a watch takes at least one look, got {looks}")
    if not 0 <= nth <= looks:
        raise ValueError(f"look {nth} of {looks}")
    share = (2 * nth - 1) / looks ** 2 if nth else 1 / looks
    return 1 - (1 - confidence) * share


@dataclass
class Look:
    index: int
    at: float
    status: str
    verdict: str = WATCHING
    fault: str | None = None
    fault_kind: str | None = None
    new_lines: dict = field(default_factory=dict)
    requests: dict = field(default_factory=dict)
    contracts: list = field(default_factory=list)


class Watch:
    """The state of one canary's watch: what was read, each look, the verdict.

    `observe(at, fresh)` takes one look's new lines ({version: [fields]}), or its new
    counts (newcounts.Counted: the aggregate path), or the fault that prevented reading
    them; nothing here reads a log or knows the clock, so a replay (calibration) and a
    live watch run the same decisions."""

    def __init__(self, contracts: feature.Contracts, baseline: str, candidate: str, started_at: float,
                 interval_s: float, deadline_s: float, function: str = "", source: str = "",
                 per_look: bool = True, process_sd: float = 0.0, lines_max: int | None = None):
        if interval_s <= 0 or deadline_s < interval_s:
            raise ValueError(f"a watch needs 0 < interval <= deadline, got interval {interval_s:g} s, "
                             f"deadline {deadline_s:g} s")
        if baseline == candidate:
            raise ValueError("the baseline and the candidate are the same version")
        self.contracts, self.baseline, self.candidate = contracts, baseline, candidate
        self.function, self.source = function, source
        self.started_at, self.interval_s, self.deadline_s = started_at, interval_s, deadline_s
        self.planned_looks = int(deadline_s // interval_s)
        # per_look=False re-checks the feature's own level at every look (what a fixed
        # window does): kept for the calibration's "before"
        self.per_look = per_look
        self.look_confidence = (look_confidence(contracts.confidence, self.planned_looks) if per_look
                                else contracts.confidence)
        self.first_deciding_look = None
        # None: every request kept; 0: counts from the start
        self.lines_max = lines_max
        empty = Binned if lines_max == 0 else Sample
        self.compared = feature.pair(empty(), empty(), baseline, candidate)
        self.compared.process_sd = process_sd
        self.first_seen: dict = {}
        self.counted: dict = {}  # version -> its counts so far (the aggregate path)
        self.warming = {baseline: 0, candidate: 0}
        self.looks: list = []
        self.verdict, self.reason = WATCHING, "waiting for the first look"
        self.decided_look = self.decided_at = None
        self.judgements: list = []

    @property
    def final(self) -> bool:
        return self.verdict != WATCHING

    @property
    def versions(self) -> tuple:
        return (self.baseline, self.candidate)

    def requests(self) -> dict:
        return {"baseline": self.compared.samples[self.baseline].requests,
                "candidate": self.compared.samples[self.candidate].requests}

    # -- one look ---------------------------------------------------------------------
    def observe(self, at: float, fresh: dict | None, fault: Exception | None = None) -> Look:
        if self.final:
            raise RuntimeError(f"the watch ended ({self.verdict}) at look {len(self.looks)}")
        look = Look(index=len(self.looks) + 1, at=at, status=OK)
        if fault is not None or fresh is None:
            look.status, look.fault = DATA_FAULT, f"{type(fault).__name__}: {fault}" if fault else "no answer"
            look.fault_kind = getattr(fault, "kind", None) or ("file" if isinstance(fault, OSError) else None)
            self.reason = f"no decision at look {look.index}: the data could not be read ({look.fault})"
        else:
            if isinstance(fresh, Counted):  # the aggregate path: counts, not lines
                look.new_lines = {self._side(v): fresh.new_requests(v) for v in self.versions}
                for version in self.versions:
                    self._add_counts(version, fresh.counts.get(version), fresh.warming.get(version, 0))
                silent = [v for v in self.versions if not fresh.new_requests(v)]
            else:
                look.new_lines = {self._side(v): len(fresh.get(v, [])) for v in self.versions}
                for version in self.versions:
                    self._add(version, fresh.get(version, []))
                self._bound_memory()
                silent = [v for v in self.versions if not fresh.get(v)]
            # no contract is decided on fewer requests than the feature's minimum: a class
            # mix or a tail of a handful of requests says nothing (8 a side can look 50% apart)
            fewest = max(2, self.contracts.minimum_requests)
            warming = [v for v in self.versions if self.compared.samples[v].requests < fewest]
            if silent:
                look.status = NO_NEW_DATA
                self.reason = (f"no decision at look {look.index}: no new request of "
                               f"{' or '.join(silent)} since the last look (no traffic yet, or the log "
                               "stopped growing)")
            elif warming:
                look.status = WARMING
                self.reason = (f"no decision at look {look.index}: fewer than {fewest} judged requests of "
                               f"{' and '.join(warming)} (warm-up: {self.contracts.warmup_s:g} s after a "
                               "version's first request)")
            else:
                self._decide(look)
        look.requests = self.requests()
        self.looks.append(look)
        if not self.final and look.index >= self.planned_looks:
            self._deadline(look)
        return look

    def _side(self, version: str) -> str:
        return "baseline" if version == self.baseline else "candidate"

    def _add(self, version: str, lines: list) -> None:
        sample = self.compared.samples[version]
        for fields in lines:
            at = line_time(fields)
            if math.isnan(at):  # no time: cannot tell whether it is in the warm-up
                self.warming[version] += 1
                continue
            first = self.first_seen.setdefault(version, at)
            if at < first + self.contracts.warmup_s:
                self.warming[version] += 1
                continue
            sample.add(fields)

    def _add_counts(self, version: str, counts: dict | None, warming: int) -> None:
        """A look's counts of one version (NewCounts: the warm-up already left out)."""
        self.warming[version] += warming
        if counts is not None:
            self.counted[version] = add_counts(self.counted.get(version), counts)
        if version in self.counted:
            self.compared.samples[version] = Binned.from_counts(self.counted[version])

    def _bound_memory(self) -> None:
        """Past `lines_max` requests a version, both versions as counts from now on."""
        samples = self.compared.samples
        if self.lines_max is None or isinstance(samples[self.baseline], Binned):
            return
        if max(s.requests for s in samples.values()) > self.lines_max:
            for version in self.versions:
                samples[version] = Binned.of_sample(samples[version])

    @property
    def path(self) -> str:
        return "aggregates" if isinstance(self.compared.samples[self.baseline], Binned) else "lines"

    def _decide(self, look: Look) -> None:
        if self.first_deciding_look is None:
            # the error is spread over the looks that can still decide: which look is the
            # first is set by the warm-up and the traffic, not by what the data says
            self.first_deciding_look = look.index
        if self.per_look:
            self.look_confidence = look_confidence(self.contracts.confidence,
                                                   self.planned_looks - self.first_deciding_look + 1,
                                                   look.index - self.first_deciding_look + 1)
        overall, judgements = feature.decide(self.contracts, self.compared, self.look_confidence)
        self.judgements = judgements
        look.contracts = [j.as_json() for j in judgements]
        if overall in (HOLD, PROMOTE):
            look.verdict = overall
            self.verdict, self.decided_look, self.decided_at = overall, look.index, look.at
            broken = [f"{j.contract}: {interval_text(j.as_json())}, bound at most "
                      f"{value_text(j.bound, j.unit)}" for j in judgements if j.verdict == HOLD]
            self.reason = (f"look {look.index}: " + (f"confidently beyond its bound: {'; '.join(broken)}"
                                                     if overall == HOLD else "every contract confidently met"))
        else:
            undecided = [j.contract for j in judgements if j.verdict == INCONCLUSIVE]
            self.reason = f"look {look.index}: not decided yet: {'; '.join(undecided)}"

    def _deadline(self, look: Look) -> None:
        silent = [v for v in self.versions if not self.compared.samples[v].requests]
        if look.status == DATA_FAULT:
            self.verdict, self.reason = BROKEN, f"deadline reached while the data could not be read: {look.fault}"
        elif silent:
            self.verdict = BROKEN
            self.reason = (f"deadline reached with no judged request of {' or '.join(silent)} "
                           f"(warm-up {self.contracts.warmup_s:g} s)")
        else:
            self.verdict = INCONCLUSIVE
            self.reason = f"deadline reached, not decided: {self.needed_text()}"

    def needed_text(self) -> str:
        """What more traffic would decide the undecided contracts."""
        needed = [j.needed_requests for j in self.judgements if j.verdict == INCONCLUSIVE and j.needed_requests]
        if not needed:
            return "no amount of traffic decides it (an estimate sits on its bound)"
        most = max(needed)
        text = f"about {most} requests a version would decide it"
        rate = self.rate()
        if rate:
            text += f" (~{most / rate / 60:.0f} min at this watch's {rate:.1f} req/s a version)"
        return text

    def rate(self) -> float | None:
        """The slower version's judged requests per second of the watch so far."""
        if not self.looks:
            return None
        span = self.looks[-1].at - self.started_at
        fewest = min(self.requests().values())
        return fewest / span if span > 0 and fewest else None

    # -- the document (watch.json, the page, the gate) --------------------------------
    def document(self) -> dict:
        last = self.looks[-1] if self.looks else None
        fault = last.fault if last and last.status == DATA_FAULT else None
        return finite({
            "kind": "watch",
            "verdict": self.verdict,
            "final": self.final,
            "reason": self.reason,
            "function": self.function,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "source": self.source,
            "started_at": self.started_at,
            "deadline_at": self.started_at + self.deadline_s,
            "interval_s": self.interval_s,
            "planned_looks": self.planned_looks,
            "confidence": self.contracts.confidence,
            "look_confidence": self.look_confidence,
            "warmup_s": self.contracts.warmup_s,
            "decided_look": self.decided_look,
            "decided_at": self.decided_at,
            "data_fault": fault,
            "fault_kind": last.fault_kind if fault else None,
            "requests": self.requests(),
            "path": self.path,  # lines: every request kept; aggregates: counts (bounded memory)
            "warming_up": {self._side(v): n for v, n in self.warming.items()},
            "contracts": [j.as_json() for j in self.judgements],
            "looks": [asdict(look) for look in self.looks],
            "errors": [],
        })


def run(watch: Watch, reader, on_look=None, clock=time.time, sleep=time.sleep) -> Watch:
    """Look every interval until the watch ends: read what is new (reader.read(until)),
    observe it, hand the watch to `on_look` (reports, the gate's state)."""
    from .aggregates import AggregateError
    from .loki_backend import LokiError
    from .prometheus_aggregates import PrometheusError
    while not watch.final:
        due = watch.started_at + (len(watch.looks) + 1) * watch.interval_s
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        # each look reads up to its due time: a watch started in the past (--at) replays
        # a recorded log look by look, as fast as it can be read
        try:
            fresh, fault = reader.read(due), None
        except (LokiError, PrometheusError, AggregateError, OSError) as err:  # a look without its data decides nothing
            fresh, fault = None, err
        watch.observe(due, fresh, fault)
        if on_look:
            on_look(watch)
    return watch
