"""The watches `torchfaas-slo serve` keeps: one per canary, each looking on its own thread.

The gate (gate.py) asks `canaries.document(namespace, name, metadata)` at every webhook
call; the first call for a canary (or for a new revision of it: Flagger's checksum,
Argo's pod-template hash) starts its watch, and every call answers at once from the
watch's latest look: a rollout controller times out in seconds, Loki may take longer,
and a slow answer must never count as a failed check.

Which function, and which two versions:
- the function: metadata `function`, else the canary's name (an OpenFaaS function's
  Deployment is named after it); its contracts: FUNCTIONS_DIR/<function>/compare;
- the versions: metadata `baseline` and `candidate` (model_version values), else found
  in the log: the two model versions that served the function in the last DISCOVER_S
  seconds, the one with more requests being the baseline (a canary starts with a small
  share of the traffic). Until exactly two are found the watch waits, and says so.
"""

from __future__ import annotations

import os
import threading
import time

from . import queries
from .file_backend import FileBackend
from .newlines import NewLines
from .settings import Settings
from .vectors import by_label
from .watch import Watch, run
from .watch_command import Reports, contracts_of, source_of

DISCOVER_S = 600


class Canaries:
    def __init__(self, slo: Settings, functions_dir: str = "functions", report_dir: str = "reports/canary",
                 clock=time.time):
        self.slo, self.functions_dir, self.report_dir = slo, functions_dir, report_dir
        self.clock = clock
        self.lock = threading.Lock()
        self.watches: dict = {}  # (namespace, name) -> CanaryWatch

    def document(self, namespace: str, name: str, metadata: dict) -> dict:
        key, revision = (namespace, name), metadata.get("revision", "")
        with self.lock:
            current = self.watches.get(key)
            if current is None or (revision and revision != current.revision):
                if current is not None:
                    current.stop()
                current = self.watches[key] = CanaryWatch(self, namespace, name, metadata)
                current.start()
        return current.document()

    def stop(self) -> None:
        with self.lock:
            for canary in self.watches.values():
                canary.stop()


class CanaryWatch:
    """One canary's watch on a thread, and the document of its latest look."""

    def __init__(self, canaries: Canaries, namespace: str, name: str, metadata: dict):
        self.canaries, self.namespace, self.name = canaries, namespace, name
        self.revision = metadata.get("revision", "")
        self.function = metadata.get("function") or name
        self.baseline, self.candidate = metadata.get("baseline", ""), metadata.get("candidate", "")
        features = os.path.join(canaries.functions_dir, self.function, "compare")
        if not os.path.isdir(features):
            raise KeyError(f"no comparison contracts for function {self.function!r} ({features} is not a folder)")
        self.contracts = contracts_of([features])
        self.started_at = canaries.clock()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.doc = self._waiting("finding the baseline and the candidate in the log")
        self.thread = threading.Thread(target=self._run, name=f"watch {namespace}/{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def document(self) -> dict:
        with self.lock:
            return dict(self.doc)

    def _publish(self, doc: dict) -> None:
        with self.lock:
            self.doc = {**doc, "namespace": self.namespace, "name": self.name, "revision": self.revision}

    def _waiting(self, reason: str, fault: Exception | None = None) -> dict:
        slo = self.canaries.slo
        return {"kind": "watch", "verdict": "watching", "final": False, "reason": reason,
                "function": self.function, "baseline": self.baseline, "candidate": self.candidate,
                "namespace": self.namespace, "name": self.name, "revision": self.revision,
                "started_at": self.started_at, "deadline_at": self.started_at + slo.watch.deadline_s,
                "interval_s": slo.watch.interval_s, "confidence": self.contracts.confidence,
                "warmup_s": self.contracts.warmup_s, "decided_look": None, "decided_at": None,
                "data_fault": f"{type(fault).__name__}: {fault}" if fault else None,
                "fault_kind": getattr(fault, "kind", None) if fault else None,
                "requests": {"baseline": 0, "candidate": 0}, "contracts": [], "looks": [], "errors": []}

    def _run(self) -> None:
        slo = self.canaries.slo
        try:
            source = source_of(slo, [slo.source.log_file] if slo.source.log_file else [])
            while not (self.baseline and self.candidate):
                if self.canaries.clock() > self.started_at + slo.watch.deadline_s:
                    self._publish({**self.document(), "verdict": "broken", "final": True,
                                   "reason": "the deadline passed before two model versions served the function"})
                    return
                self._discover(source)
                if not (self.baseline and self.candidate):
                    self._sleep(slo.watch.interval_s)
            watch = Watch(self.contracts, self.baseline, self.candidate, self.started_at, slo.watch.interval_s,
                          slo.watch.deadline_s, function=self.function, source=source.describe(),
                          process_sd=slo.compare.process_sd, lines_max=slo.compare.watch_lines_max)
            reader = NewLines(source, self.function, watch.versions, since=self.started_at,
                              overlap_s=slo.watch.overlap_s)
            reports = Reports(os.path.join(self.canaries.report_dir, self.namespace, self.name))
            self._publish(watch.document())

            def on_look(w):
                reports(w)
                self._publish(w.document())
                if self.stopped.is_set():
                    raise _Stopped

            run(watch, reader, on_look=on_look, clock=self.canaries.clock, sleep=self._sleep)
        except _Stopped:
            return
        except Exception as err:  # a watch that cannot run says so; it never decides
            self._publish({**self.document(), "verdict": "broken", "final": True,
                           "reason": f"the watch could not run: {type(err).__name__}: {err}"})

    def _sleep(self, seconds: float) -> None:
        if self.stopped.wait(seconds):
            raise _Stopped

    def _discover(self, source) -> None:
        """The two versions that served the function lately: the busier one is the baseline."""
        counter = source if hasattr(source, "instant") else FileBackend(self.canaries.slo.source.log_file)
        try:
            found = by_label(counter.instant(queries.requests(self.function, DISCOVER_S, by=(queries.VERSION,)),
                                            self.canaries.clock()), queries.VERSION)
        except Exception as err:  # Loki failing: wait, and say so
            self._publish(self._waiting("cannot read which versions serve the function", err))
            return
        served = sorted((v for v in found if v), key=lambda v: -found[v])
        if len(served) == 2:
            self.baseline, self.candidate = self.baseline or served[0], self.candidate or served[1]
        else:
            self._publish(self._waiting(f"waiting for two model versions of {self.function}: the last "
                                        f"{DISCOVER_S // 60} min show {len(served)} ({', '.join(served) or 'none'})"))


class _Stopped(Exception):
    """A newer revision replaced this watch."""
