"""The comparison's report document (report.json) and the three files written from it."""

from __future__ import annotations

import os

from .. import html, report
from .judgements import verdict
from .sampling import Comparison
from .text import markdown


def document(comparison: Comparison | None, judgements: list, errors: list, source: str, at: float,
             baseline: str, candidate: str, window_s: int | None, context_note: str = "") -> dict:
    c = comparison
    doc = {
        "verdict": verdict(judgements, errors),
        "baseline": baseline,
        "candidate": candidate,
        "evaluated_at": at,
        "window_s": window_s,
        "source": source,
        "path": c.path if c else None,  # lines or aggregates (paths.py)
        "path_why": c.path_why if c else None,
        "traffic": context_note,
        "requests_per_second": c.rate() if c else None,
        "figures": c.figures if c else {},
        "deltas": c.deltas() if c else {},
        "contracts": [j.as_json() for j in judgements],
        "logql": c.logql if c else {},
        "timeline": c.timeline if c else {},
        "errors": errors,
    }
    return report.finite(doc)


def write_reports(directory: str, doc: dict) -> list:
    os.makedirs(directory, exist_ok=True)
    paths = []
    md = os.path.join(directory, "report.md")
    with open(md, "w", encoding="utf-8") as handle:
        handle.write(markdown(doc) + "\n")
    paths.append(md)
    js = os.path.join(directory, "report.json")
    report.write_json(js, doc)
    paths.append(js)
    page = os.path.join(directory, "report.html")
    with open(page, "w", encoding="utf-8") as handle:
        handle.write(html.compare_page(doc))
    paths.append(page)
    return paths
