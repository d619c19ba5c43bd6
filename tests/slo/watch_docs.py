"""Watch documents shaped exactly as the canary watch's contract writes them, one per
state the gate must tell apart, and a stand-in for the watches the gate asks."""

import copy

STARTED = 1796531040.0
CONTRACT = {
    "contract": "latency of the candidate vs the baseline (all requests, Hodges-Lehmann)",
    "unit": "x%", "bound": 0.10, "verdict": "inconclusive",
    "estimate": 0.031, "low": -0.02, "high": 0.084,
    "confidence": 0.99967, "detectable": 0.12, "needed_requests": 2400,
    "note": "median 61 ms vs 60 ms", "logql": ['{app="classifier"} | json'],
}
COUNT_CONTRACT = {
    "contract": "requests served by each version", "unit": "requests", "bound": 100, "verdict": "promote",
    "estimate": 1200, "low": 1200, "high": None, "confidence": 0.99967, "detectable": None,
    "needed_requests": None, "note": "", "logql": [],
}


def document(verdict, *, final=False, reason="", fault=None, fault_kind=None, decided_look=None,
             contracts=None, looks=3):
    """A watch document (the contract's every field) at its `looks`-th look."""
    contracts = [CONTRACT, COUNT_CONTRACT] if contracts is None else contracts
    return {
        "kind": "watch",
        "verdict": verdict,
        "final": final,
        "reason": reason or f"the watch says {verdict}",
        "function": "classifier",
        "baseline": "v1", "candidate": "v2",
        "source": "Loki at http://loki-gateway.loki.svc.cluster.local",
        "started_at": STARTED,
        "deadline_at": STARTED + 1800,
        "interval_s": 60.0,
        "planned_looks": 30,
        "confidence": 0.99,
        "look_confidence": 0.99967,
        "warmup_s": 60.0,
        "decided_look": decided_look,
        "decided_at": None if decided_look is None else STARTED + 60 * decided_look,
        "data_fault": fault,
        "fault_kind": fault_kind,
        "requests": {"baseline": 1234, "candidate": 1200},
        "contracts": copy.deepcopy(contracts),
        "looks": [
            {"index": i, "at": STARTED + 60 * i,
             "status": "data-fault" if fault and i == looks else "ok",
             "fault": fault if i == looks else None,
             "new_lines": {"baseline": 1100, "candidate": 1080},
             "requests": {"baseline": 1100 * i, "candidate": 1080 * i},
             "verdict": "watching" if i < looks or verdict not in ("promote", "hold") else verdict,
             "contracts": []}
            for i in range(1, looks + 1)
        ],
        "errors": [],
    }


def with_verdicts(contracts, verdict):
    return [{**c, "verdict": verdict} for c in contracts]


# every state the gate answers; the names are the canaries' names in the tests
DOCS = {
    "watching": document("watching", reason="waiting for more requests"),
    "promote": document("promote", final=True, decided_look=7,
                        contracts=with_verdicts([CONTRACT, COUNT_CONTRACT], "promote"),
                        reason="every contract is confidently within its bound"),
    "hold": document("hold", final=True, decided_look=4,
                     contracts=[{**CONTRACT, "verdict": "hold", "estimate": 0.4, "low": 0.3, "high": 0.5},
                                COUNT_CONTRACT],
                     reason="latency is confidently beyond its bound"),
    "inconclusive": document("inconclusive", final=True, looks=30,
                             reason="deadline reached: 2400 requests per version would decide"),
    "broken": document("broken", final=True, looks=30, fault="Loki unreachable: connection refused",
                       fault_kind="unreachable", reason="data was failing at the deadline"),
    # a look whose data could not be read decides nothing: still watching, fault said
    "loki-429": document("watching", fault="Loki answered HTTP 429 (too many outstanding requests)",
                         fault_kind="rate_limited", reason="the last look could not read Loki"),
    "loki-down": document("watching", fault="Loki unreachable: connection refused", fault_kind="unreachable",
                          contracts=[], looks=1, reason="no look could read Loki yet"),
}
# what the gate must do for each: which ones a controller may act on
HOLDS = {"hold"}
PROMOTES = {"promote"}
WAITS = set(DOCS) - HOLDS - PROMOTES


class StubWatches:
    """`document(namespace, name, metadata)`: DOCS[name] (KeyError for any other name);
    `by_name` maps other canary names onto DOCS keys. Remembers every call."""

    def __init__(self, by_name=None, docs=None):
        self.by_name = by_name or {}
        self.docs = DOCS if docs is None else docs
        self.calls = []

    def document(self, namespace, name, metadata):
        self.calls.append((namespace, name, dict(metadata)))
        return copy.deepcopy(self.docs[self.by_name.get(name, name)])
