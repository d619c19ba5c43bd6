"""A comparison's verdict in words: the headline, each contract's interval and what would
decide it, the pull-request comment (markdown) and the console text. Pure functions of
the report document (reports.py); html.py draws the same words.
"""

from __future__ import annotations

import math

from .. import report
from ..contracts import fmt, window_name
from ..verdicts import BROKEN, HOLD, INCONCLUSIVE, POWER, PROMOTE

HEADLINE = {
    PROMOTE: "PROMOTE: the candidate is confidently within every contract",
    HOLD: "HOLD: the candidate is confidently worse than a contract allows",
    INCONCLUSIVE: "INCONCLUSIVE: the data cannot tell yet",
    BROKEN: "BROKEN: the comparison could not run",
}
ICONS = {PROMOTE: "✅", HOLD: "❌", INCONCLUSIVE: "⚠️", BROKEN: "💥"}


def value_text(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "share":
        return f"{value * 100:.3g}%"
    return fmt(value, unit)


def interval_text(j: dict) -> str:
    """`+3.1% [-2.0%, +8.4%]` (the interval's bounds; an open side is ±inf)."""
    if j["unit"] == "requests":
        return value_text(j["estimate"], "requests")
    low = "-inf" if j["low"] is None else value_text(j["low"], j["unit"])
    high = "+inf" if j["high"] is None else value_text(j["high"], j["unit"])
    return f"{value_text(j['estimate'], j['unit'])} [{low}, {high}]"


def path_text(doc: dict) -> str:
    """Which path read the versions, and why (`lines (auto: 4,000 requests a version ...)`)."""
    words = {"lines": "lines: every request", "aggregates": "aggregates: counts in bins"}
    return f"{words.get(doc['path'], doc['path'])} ({doc.get('path_why') or 'as set'})"


def what_would_decide(j: dict, doc: dict) -> str:
    """For an inconclusive contract: how many requests a version would decide it, and how
    long that takes at this window's rate (make review: the REVIEW_SECONDS to set)."""
    needed = j.get("needed_requests")
    if not needed:
        return "the estimate sits on the bound: no amount of traffic decides it"
    text = f"about {needed} requests a version would decide it"
    rate = doc.get("requests_per_second")
    if rate:
        seconds = needed / rate
        text += f" (~{seconds:.0f} s of traffic at this run's {rate:.1f} req/s a version"
        review_s = doc.get("review_seconds")
        if review_s:
            text += f"; make review REVIEW_SECONDS={math.ceil(max(seconds, review_s) / 10) * 10}"
        text += ")"
    return text


def verdict_words(j: dict, doc: dict) -> str:
    if j["verdict"] == PROMOTE:
        return "promote"
    if j["verdict"] == HOLD:
        return "**HOLD**: the whole interval is above the bound"
    return "**inconclusive**: " + what_would_decide(j, doc)


def power_text(j: dict) -> str:
    if j["unit"] == "requests" or j.get("detectable") is None:
        return ""
    return f"held {POWER:.0%} of the time at this size: {value_text(j['detectable'], j['unit'])}"


def markdown(doc: dict) -> str:
    base, cand = doc["baseline"], doc["candidate"]
    window = window_name(doc["window_s"]) if doc.get("window_s") else "-"
    lines = [f"### {ICONS[doc['verdict']]} {HEADLINE[doc['verdict']]}", "",
             f"Candidate `{cand}` vs baseline `{base}`, {window} up to {report.evaluation_time(doc['evaluated_at'])}, "
             f"from {doc['source']}."]
    if doc.get("path"):
        lines.append(f"Read as {path_text(doc)}.")
    if doc.get("traffic"):
        lines.append(f"Traffic: {doc['traffic']}.")
    lines.append("")
    if doc["contracts"]:
        confidence = next((j["confidence"] for j in doc["contracts"] if j.get("confidence")), None)
        level = f" ({confidence:.0%} interval)" if confidence else ""
        lines += [f"| contract | estimate{level} | bound | verdict | detectable change |", "|---|---|---:|---|---|"]
        for j in doc["contracts"]:
            note = f" ({j['note']})" if j.get("note") else ""
            word = "at least" if j["unit"] == "requests" else "at most"
            lines.append(f"| {j['contract']}{note} | {interval_text(j)} | {word} {value_text(j['bound'], j['unit'])} | "
                         f"{verdict_words(j, doc)} | {power_text(j)} |")
        lines.append("")
    figures, deltas = doc["figures"], doc["deltas"]
    if figures:
        lines += ["<details><summary>figures (LogQL, as the SLO contracts measure them)</summary>", "",
                  "| figure | baseline | candidate | change |", "|---|---:|---:|---:|"]
        rows = [("requests", "requests", "requests"), ("p50 latency", "p50_ms", "ms"), ("p95 latency", "p95_ms", "ms"),
                ("p99 latency", "p99_ms", "ms"), ("5xx ratio", "ratio_5xx", "%"), ("4xx ratio", "ratio_4xx", "%")]
        for label, key, unit in rows:
            b, c, d = figures[base].get(key), figures[cand].get(key), deltas.get(key)
            change = "-" if d is None else (fmt(d, "points") if unit == "%" else
                                            (f"{d:+.0f}" if unit == "requests" else f"{d:+.1f} ms"))
            if unit == "ms" and d is not None and b:
                change += f" ({d / b:+.0%})"
            lines.append(f"| {label} | {_num(b, unit)} | {_num(c, unit)} | {change} |")
        psi_value = deltas.get("class_mix_psi")
        if psi_value is not None:  # a function without classes has no mix to compare
            lines.append(f"| class mix PSI | | | {psi_value:.4g} |")
        lines += ["", "</details>", ""]
    for error in doc["errors"]:
        lines.append(f"- error (not judged): {error}")
    if doc["errors"]:
        lines.append("")
    return "\n".join(lines)


def _num(value, unit):
    return "-" if value is None else fmt(value, unit)


def human(doc: dict) -> str:
    lines = [HEADLINE[doc["verdict"]]]
    if doc.get("path"):
        lines.append(f"read as {path_text(doc)}")
    if doc.get("traffic"):
        lines.append(f"traffic: {doc['traffic']}")
    for j in doc["contracts"]:
        note = f" [{j['note']}]" if j.get("note") else ""
        word = "at least" if j["unit"] == "requests" else "at most"
        lines.append(f"{j['verdict'].upper():12s} {j['contract']}: {interval_text(j)} "
                     f"(bound: {word} {value_text(j['bound'], j['unit'])}){note}")
        if j["verdict"] == INCONCLUSIVE:
            lines.append(f"             -> {what_would_decide(j, doc)}")
        if power_text(j):
            lines.append(f"             {power_text(j)}")
    lines += [f"ERROR (not judged): {e}" for e in doc["errors"]]
    return "\n".join(lines)
