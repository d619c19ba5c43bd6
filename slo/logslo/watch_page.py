"""The page a person watches during a rollout: the watch document (watch.json of
`torchfaas-slo watch`) as one self-contained HTML file (inline SVG, no script, no network).

    watch_page(doc)  the whole page

At the top, where the watch stands: the verdict and its reason, a banner when the last
look could not read the data (a look that decides nothing must never look like a pass),
the look out of the planned ones, the time left, the requests judged, the confidence.
Then one chart per contract, look by look: the estimate, its interval narrowing as the
requests add up, the bound, the look that decided, and the looks that decided nothing
(a data fault, no new data) as gaps with the reason in their tooltip. Last, the looks
as a table. While the watch runs the page asks the browser to re-read it every interval
(the watch rewrites the file); once final it does not.
"""

from __future__ import annotations

import math
import re

from .compare.text import value_text, what_would_decide
from .html import STYLE, _e, _nice_max, _stamp

VERDICT_CLASS = {"promote": "ok", "hold": "bad", "broken": "bad", "inconclusive": "unknown", "watching": "running"}
COLOUR = {"promote": "#2ca02c", "hold": "#d62728", "inconclusive": "#b58900", "watching": "#1f77b4"}
GAP = {"data-fault": ("data fault", "#fbe3c8", "\u26a0"), "no-new-data": ("no new data", "#ececec", "\u2205"),
       "warm-up": ("warm-up: too few judged requests", "#e4eef8", "\u2026")}
BLUE = "#1f77b4"
# a contract's own verdict, in the charts' words (the whole watch's verdict is the headline's)
STANDING = {"promote": "within the bound", "hold": "beyond the bound", "inconclusive": "undecided"}
WATCH_STYLE = """
.verdict.big{font-size:26px;padding:8px 18px;margin:6px 12px 6px 0;letter-spacing:.5px}
.running{background:#e3eefb;color:#174a7c}
.headline{display:flex;align-items:center;flex-wrap:wrap} .reason{font-size:15px;flex:1 1 400px}
.fault-banner{background:#fde2e1;color:#7f1414;border:2px solid #d62728;border-radius:6px;padding:10px 14px;
  font-size:16px;font-weight:600;margin:10px 0}
table.facts{width:auto} table.facts th{background:none;font-weight:600;white-space:nowrap}
h3{font-size:15px;margin:22px 0 2px} .pill{font-size:12px;padding:2px 8px;border-radius:10px;margin-left:6px}
p.figure{margin:2px 0}
tr.decided-row td{font-weight:600;background:#f3f8ff}
"""


def _value(value, unit: str) -> str:
    """A figure as compare's text writes it (+10%, +1 point, 10%), a request count as a count."""
    if value is None:
        return "-"
    if unit == "requests":
        return f"{value:.0f}"
    return re.sub(r"^([+-]?1) points$", r"\1 point", value_text(value, unit))


def _interval(j: dict) -> str:
    if j["unit"] == "requests":
        return f"{_value(j['estimate'], 'requests')} requests (the fewer version)"
    low = "-inf" if j.get("low") is None else _value(j["low"], j["unit"])
    high = "+inf" if j.get("high") is None else _value(j["high"], j["unit"])
    return f"{_value(j['estimate'], j['unit'])} [{low}, {high}]"


def _bound(j: dict) -> str:
    if j["unit"] == "requests":
        return f"at least {_value(j['bound'], 'requests')} requests a version"
    return f"at most {_value(j['bound'], j['unit'])}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _clock(at) -> str:
    return "-" if at is None else _stamp(at).split(" ")[1]


def _pair(counts) -> str:
    if not counts:
        return "-"
    return f"{counts.get('baseline', '-')} / {counts.get('candidate', '-')}"


def _names(doc: dict) -> list:
    """Every contract judged, in the order of the latest judgement, then of the looks."""
    names = [j["contract"] for j in doc.get("contracts") or []]
    for look in doc.get("looks") or []:
        names += [j["contract"] for j in look.get("contracts") or [] if j["contract"] not in names]
    return names


def _latest(doc: dict, name: str) -> dict | None:
    latest = [j for j in doc.get("contracts") or [] if j["contract"] == name]
    if latest:
        return latest[0]
    for look in reversed(doc.get("looks") or []):
        for j in look.get("contracts") or []:
            if j["contract"] == name:
                return j
    return None


# -- the top of the page ------------------------------------------------------------

def _headline(doc: dict) -> str:
    verdict = doc["verdict"]
    return (f"<h1>Canary watch: candidate <code>{_e(doc['candidate'])}</code> vs baseline "
            f"<code>{_e(doc['baseline'])}</code></h1>"
            f'<div class="headline"><span class="verdict big {VERDICT_CLASS.get(verdict, "unknown")}" id="verdict">'
            f'{_e(verdict.upper())}</span><span class="reason" id="reason">{_e(doc.get("reason", ""))}</span></div>')


def _fault_banner(doc: dict) -> str:
    looks = doc.get("looks") or []
    last = looks[-1] if looks else None
    fault = doc.get("data_fault") or (last and last.get("status") == "data-fault" and (last.get("fault") or
                                                                                       "the data could not be read"))
    if not fault:
        return ""
    at = f" at look {last['index']} ({_clock(last.get('at'))})" if last else ""
    kind = f" [{doc['fault_kind']}]" if doc.get("fault_kind") else ""
    return (f'<div class="fault-banner" id="fault" role="alert">\u26a0 no decision{_e(at)}: {_e(fault)}{_e(kind)}. '
            f'This look neither promotes nor rolls back; the verdict stays {_e(doc["verdict"].upper())}.</div>')


def _facts(doc: dict) -> str:
    looks = doc.get("looks") or []
    last = looks[-1] if looks else None
    planned, interval = doc.get("planned_looks"), doc.get("interval_s")
    made = f"look {last['index']} of {planned} planned" if last else f"no look yet, {planned} planned"
    deadline = doc.get("deadline_at")
    if doc.get("final"):
        ended = doc.get("decided_at") or (last and last.get("at"))
        time_left = (f"ended at {_clock(ended)} UTC; the deadline was {_clock(deadline)} UTC" if ended else
                     f"ended; the deadline was {_clock(deadline)} UTC")
    else:
        now = last["at"] if last else doc.get("started_at")
        time_left = (f"{_duration(deadline - now)} to the deadline ({_clock(deadline)} UTC), as of "
                     f"{'look ' + str(last['index']) if last else 'the start'} at {_clock(now)} UTC")
    requests = doc.get("requests") or {}
    rows = [("look", f"{made}, every {interval:g} s" if interval else made),
            ("time left", time_left),
            ("requests judged", f"baseline {requests.get('baseline', 0)}, candidate {requests.get('candidate', 0)}"),
            ("confidence", f"{doc['confidence'] * 100:.4g}% over the whole watch; the last look's intervals at "
                           f"{doc['look_confidence'] * 100:.4g}%" if doc.get("confidence") and
             doc.get("look_confidence") else "-"),
            ("warm-up", f"each version's first {doc.get('warmup_s', 0):g} s not judged"),
            ("decided", f"at look {doc['decided_look']} ({_clock(doc.get('decided_at'))} UTC)"
             if doc.get("decided_look") else "not yet" if not doc.get("final") else "no"),
            ("source", f"{doc.get('source', '-')}; function {doc.get('function', '-')}; started "
                       f"{_stamp(doc['started_at']) if doc.get('started_at') else '-'}")]
    return '<table class="facts">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


# -- the charts -----------------------------------------------------------------------

def _ticks(lo: float, hi: float) -> list:
    step = _nice_max((hi - lo) / 4)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def _frame(doc: dict, index: int, name: str, unit: str, bound, lo: float, hi: float, draw) -> str:
    """What every contract chart has: axes (x = look, with each look's requests), the looks
    that decided nothing as gaps, the bound, the deciding look; `draw(x, y, points)` adds
    the figure itself."""
    width, height, left, right, top, bottom = 920, 230, 92, 24, 22, 40
    w, h = width - left - right, height - top - bottom
    looks = doc.get("looks") or []
    n = max(doc.get("planned_looks") or 1, looks[-1]["index"] if looks else 1)

    def x(look):
        return left + (look - 0.5) / n * w

    def y(v):
        return top + h - (min(max(v, lo), hi) - lo) / (hi - lo) * h

    points = [(look, next((j for j in look.get("contracts") or [] if j["contract"] == name), None))
              for look in looks]
    parts = [f'<svg class="chart" data-chart="contract-{index}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(name)}, look by look">']
    for v in _ticks(lo, hi):
        if bound is not None and abs(y(v) - y(bound)) < 16:
            continue  # the bound's own label goes there
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{_e(_value(v, unit))}</text>')
    if unit != "requests" and lo < 0 < hi:
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>')
    parts.append(_look_axis(looks, n, x, left, top, w, h))
    parts.append(_gaps(looks, x, top, h, w / n))
    parts.append(draw(x, y, points))
    if bound is not None:
        parts.append(f'<line class="bound-line" x1="{left}" x2="{left + w}" y1="{y(bound):.1f}" y2="{y(bound):.1f}" '
                     f'stroke="#d62728" stroke-width="1.5" stroke-dasharray="7 4"/>'
                     f'<text class="bound-value" x="{left - 6}" y="{y(bound) + 4:.1f}" font-size="11" '
                     f'font-weight="600" fill="#d62728" text-anchor="end">{_e(_value(bound, unit))}<title>bound: '
                     f'{_e(_bound({"unit": unit, "bound": bound}))}</title></text>')
    if doc.get("decided_look"):
        parts.append(_decided(doc, points, x, y, left, top, w, h))
    parts.append("</svg>")
    return "".join(parts)


def _look_axis(looks: list, n: int, x, left: float, top: float, w: float, h: float) -> str:
    """The x axis: look numbers, each look's requests (the fewer of the two sides), and
    the looks still to come up to the deadline."""
    parts = []
    every = max(1, math.ceil(n / 30))
    parts.append(f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" stroke="#999"/>'
                 f'<text x="{left - 6}" y="{top + h + 15}" font-size="11" text-anchor="end" fill="#666">look</text>'
                 f'<text x="{left - 6}" y="{top + h + 29}" font-size="10" text-anchor="end" fill="#666">'
                 'requests</text>')
    for k in range(1, n + 1):
        if k % every and k != 1:
            continue
        parts.append(f'<text x="{x(k):.1f}" y="{top + h + 15}" font-size="11" text-anchor="middle">{k}</text>')
    for look in looks:
        if look["index"] % every == 0 or look["index"] == 1:
            fewer = min((look.get("requests") or {}).values(), default=None)
            parts.append(f'<text x="{x(look["index"]):.1f}" y="{top + h + 29}" font-size="9" fill="#666" '
                         f'text-anchor="middle">{"-" if fewer is None else fewer}</text>')
    if n > len(looks):
        parts.append(f'<text x="{left + w}" y="{top + h + 29}" font-size="10" fill="#888" text-anchor="end">'
                     f'deadline \u2192</text>')
    return "".join(parts)


def _gaps(looks: list, x, top: float, h: float, slot: float) -> str:
    """The looks that decided nothing, each a shaded slot with its reason."""
    parts = []
    for look in looks:
        if look.get("status") in GAP:
            label, fill, mark = GAP[look["status"]]
            why = look.get("fault") or label
            parts.append(f'<g class="gap" data-look="{look["index"]}" data-status="{_e(look["status"])}">'
                         f'<title>look {look["index"]} ({_clock(look.get("at"))}): {_e(label)}, decides nothing: '
                         f'{_e(why)}</title><rect x="{x(look["index"]) - slot * 0.4:.1f}" y="{top}" '
                         f'width="{slot * 0.8:.1f}" height="{h}" fill="{fill}"/>'
                         f'<text x="{x(look["index"]):.1f}" y="{top + h - 6}" font-size="14" text-anchor="middle" '
                         f'fill="#8a4b00">{mark}</text></g>')
    return "".join(parts)


def _decided(doc: dict, points: list, x, y, left: float, top: float, w: float, h: float) -> str:
    """The look that decided the watch: a line across the chart, this contract's estimate
    ringed there."""
    decided = doc["decided_look"]
    j = next((j for look, j in points if look["index"] == decided), None)
    colour = COLOUR.get(doc["verdict"], "#333")
    ring = (f'<circle cx="{x(decided):.1f}" cy="{y(j["estimate"]):.1f}" r="8" fill="none" stroke="{colour}" '
            f'stroke-width="2.5"/>' if j and j.get("estimate") is not None else "")
    late = x(decided) > left + 0.75 * w  # its label goes to the left of the line
    here = f"; this contract {STANDING.get(j['verdict'], j['verdict'])}" if j else ""
    return (f'<g class="decided" data-look="{decided}"><title>look {decided} decided the watch: '
            f'{_e(doc["verdict"].upper())}{_e(here)}</title>'
            f'<line x1="{x(decided):.1f}" x2="{x(decided):.1f}" y1="{top}" y2="{top + h}" stroke="{colour}" '
            f'stroke-width="2"/>{ring}<text x="{x(decided) + (-6 if late else 6):.1f}" y="{top - 6}" '
            f'font-size="12" text-anchor="{"end" if late else "start"}" '
            f'font-weight="700" fill="{colour}">{_e(doc["verdict"].upper())} at look {decided}</text></g>')


def legend(level) -> str:
    """How to read the charts, once above them all."""
    rows = [[("line", BLUE, "estimate"),
             ("band", BLUE, "interval at each look's level"
              + (f" (last: {level * 100:.4g}% each side)" if level else "")),
             ("mark", BLUE, "interval goes beyond the chart"), ("dash", "#d62728", "bound (its value in red)")],
            [("dot", COLOUR["promote"], "within the bound"), ("dot", COLOUR["inconclusive"], "undecided"),
             ("dot", COLOUR["hold"], "beyond the bound")],
            [("gap", GAP["data-fault"][1], "data fault: decides nothing"),
             ("gap", GAP["no-new-data"][1], "no new data: decides nothing"),
             ("gap", GAP["warm-up"][1], "warm-up: decides nothing")]]
    parts = ['<svg class="legend" xmlns="http://www.w3.org/2000/svg" width="920" height="64" viewBox="0 0 920 64" '
             'role="img" aria-label="how to read the charts">']
    for r, items in enumerate(rows):
        at, mid = 10, 14 + 20 * r
        for kind, colour, label in items:
            if kind in ("line", "dash"):
                dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
                parts.append(f'<line x1="{at}" x2="{at + 16}" y1="{mid}" y2="{mid}" stroke="{colour}" '
                             f'stroke-width="2"{dash}/>')
            elif kind == "dot":
                parts.append(f'<circle cx="{at + 8}" cy="{mid}" r="4" fill="{colour}"/>')
            elif kind == "mark":
                parts.append(f'<text x="{at + 8}" y="{mid + 4}" font-size="10" fill="{colour}" '
                             'text-anchor="middle">\u25b2\u25bc</text>')
            else:
                opacity = ' fill-opacity="0.2"' if kind == "band" else ""
                parts.append(f'<rect x="{at}" y="{mid - 6}" width="16" height="12" fill="{colour}"{opacity}/>')
            parts.append(f'<text x="{at + 20}" y="{mid + 4}" font-size="11" fill="#444">{_e(label)}</text>')
            at += 34 + 6.3 * len(label)
    return "".join(parts) + "</svg>"


def _point(x, y, look, j, text) -> str:
    return (f'<circle class="point" data-look="{look["index"]}" cx="{x(look["index"]):.1f}" '
            f'cy="{y(j["estimate"]):.1f}" '
            f'r="4" fill="{COLOUR.get(j["verdict"], "#666")}" stroke="#fff"><title>look {look["index"]} '
            f'({_clock(look.get("at"))}), {_e(_pair(look.get("requests")))} requests: {_e(text)}, '
            f'{_e(STANDING.get(j["verdict"], j["verdict"]))}</title></circle>')


def _segments(points) -> list:
    """Runs of consecutive looks that judged the contract: a look that did not breaks the line."""
    runs, run = [], []
    for look, j in points:
        if j is not None and j.get("estimate") is not None:
            run.append((look, j))
        elif run:
            runs.append(run)
            run = []
    return runs + ([run] if run else [])


def interval_chart(doc: dict, index: int, name: str) -> str:
    """A contract with an interval (x%, points, share): estimate, interval band, bound."""
    latest = _latest(doc, name)
    unit, bound = latest["unit"], latest["bound"]
    judged = [j for look in doc.get("looks") or [] for j in look.get("contracts") or [] if j["contract"] == name]
    estimates = [j["estimate"] for j in judged if j.get("estimate") is not None]
    # the scale follows the later half of the looks: the first looks' wide intervals are cut
    # at the chart's edge (marked), so that where the watch stands now stays readable
    recent = judged[-max(3, len(judged) // 2):]
    edges = [v for j in recent for v in (j.get("low"), j.get("high")) if v is not None and math.isfinite(v)]
    lo, hi = min([0.0, bound] + estimates + edges), max([0.0, bound] + estimates + edges)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = (max(lo - pad, 0.0) if unit == "share" else lo - pad), hi + pad

    def draw(x, y, points):
        parts = []
        for run in _segments(points):
            tops = [(x(look["index"]), y(hi if j.get("high") is None else j["high"])) for look, j in run]
            bottoms = [(x(look["index"]), y(lo if j.get("low") is None else j["low"])) for look, j in run]
            if len(run) == 1:
                (cx, top), (_, low) = tops[0], bottoms[0]
                parts.append(f'<rect class="band" x="{cx - 5:.1f}" y="{top:.1f}" width="10" height="{low - top:.1f}" '
                             f'fill="{BLUE}" fill-opacity="0.2"/>')
            else:
                outline = " ".join(f"{px:.1f},{py:.1f}" for px, py in tops + bottoms[::-1])
                parts.append(f'<polygon class="band" points="{outline}" fill="{BLUE}" fill-opacity="0.2" '
                             f'stroke="{BLUE}" stroke-opacity="0.35"/>')
            line = " ".join(f"{'M' if k == 0 else 'L'}{x(look['index']):.1f},{y(j['estimate']):.1f}"
                            for k, (look, j) in enumerate(run))
            parts.append(f'<path class="estimate" d="{line}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
            parts += [_point(x, y, look, j, _interval(j)) for look, j in run]
        for look, j in (p for run in _segments(points) for p in run):
            cut = [(y(hi) + 9, "\u25b2")] if j.get("high") is None or j["high"] > hi else []
            cut += [(y(lo) - 2, "\u25bc")] if j.get("low") is None or j["low"] < lo else []
            parts += [f'<text class="cut" x="{x(look["index"]):.1f}" y="{at:.1f}" font-size="9" fill="{BLUE}" '
                      f'text-anchor="middle">{mark}<title>look {look["index"]}: the interval goes beyond the chart: '
                      f'{_e(_interval(j))}</title></text>' for at, mark in cut]
        return "".join(parts)

    return _frame(doc, index, name, unit, bound, lo, hi, draw)


def count_chart(doc: dict, index: int, name: str) -> str:
    """The "each version served at least N requests" contract: the fewer version's count
    against its bound (a count has no interval)."""
    latest = _latest(doc, name)
    judged = [j["estimate"] for look in doc.get("looks") or [] for j in look.get("contracts") or []
              if j["contract"] == name and j.get("estimate") is not None]
    hi = _nice_max(max(judged + [latest["bound"]]) * 1.08)

    def draw(x, y, points):
        parts = []
        for run in _segments(points):
            line = " ".join(f"{'M' if k == 0 else 'L'}{x(look['index']):.1f},{y(j['estimate']):.1f}"
                            for k, (look, j) in enumerate(run))
            parts.append(f'<path class="estimate" d="{line}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
            parts += [_point(x, y, look, j, f"{_value(j['estimate'], 'requests')} requests") for look, j in run]
        return "".join(parts)

    return _frame(doc, index, name, "requests", latest["bound"], 0.0, hi, draw)


def _contract_section(doc: dict, index: int, name: str) -> str:
    j = _latest(doc, name)
    verdict = j["verdict"]
    klass = {"promote": "ok", "hold": "bad"}.get(verdict, "unknown")
    why = f"; {what_would_decide(j, doc)}" if verdict == "inconclusive" and j["unit"] != "requests" else ""
    note = f'<p class="muted">{_e(j["note"])}</p>' if j.get("note") else ""
    chart = count_chart(doc, index, name) if j["unit"] == "requests" else interval_chart(doc, index, name)
    return (f'<h3>{_e(name)}<span class="pill {klass}">{_e(STANDING.get(verdict, verdict))}</span></h3>'
            f'<p class="figure">{_e(_interval(j))}; bound {_e(_bound(j))}{_e(why)}</p>{note}{chart}')


# -- the looks --------------------------------------------------------------------------

def _looks_table(doc: dict) -> str:
    rows = ['<table class="looks"><tr><th>look</th><th>time (UTC)</th><th>status</th>'
            '<th>new lines<br><span class="muted">baseline / candidate</span></th>'
            '<th>requests judged<br><span class="muted">baseline / candidate</span></th>'
            '<th>verdict</th><th>fault</th></tr>']
    for look in doc.get("looks") or []:
        status = look.get("status", "ok")
        decided = ' class="decided-row"' if look["index"] == doc.get("decided_look") else ""
        klass = {"data-fault": "bad", "no-new-data": "unknown"}.get(status, "")
        rows.append(f'<tr{decided}><td class="num">{look["index"]}</td><td>{_e(_clock(look.get("at")))}</td>'
                    f'<td class="{klass}">{_e(status)}</td>'
                    f'<td class="num">{_e(_pair(look.get("new_lines")))}</td>'
                    f'<td class="num">{_e(_pair(look.get("requests")))}</td>'
                    f'<td class="{VERDICT_CLASS.get(look.get("verdict"), "")}">{_e(look.get("verdict", "-"))}</td>'
                    f'<td>{_e(look.get("fault") or "")}</td></tr>')
    if not doc.get("looks"):
        rows.append('<tr><td colspan="7" class="muted">no look yet</td></tr>')
    rows.append("</table>")
    return "".join(rows)


def watch_page(doc: dict) -> str:
    """The watch document as a self-contained HTML page (see the module's docstring)."""
    names = _names(doc)
    body = [_headline(doc), _fault_banner(doc), _facts(doc)]
    body += [f'<p class="bad">error: {_e(error)}</p>' for error in doc.get("errors") or []]
    body.append("<h2>Contracts, look by look</h2>")
    if names:
        body.append(legend(doc.get("look_confidence")))
    body += [_contract_section(doc, i, name) for i, name in enumerate(names, 1)] or \
        ['<p class="muted">no contract judged yet</p>']
    body += ["<h2>Looks</h2>", _looks_table(doc)]
    refresh = "" if doc.get("final") else \
        f'<meta http-equiv="refresh" content="{max(1, round(doc.get("interval_s") or 60))}">'
    title = f"{doc['verdict'].upper()}: watch of {doc['candidate']} vs {doc['baseline']}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{STYLE}{WATCH_STYLE}</style></head><body>{''.join(body)}"
            f'<p class="muted">torchfaas-slo watch; a self-contained page (no script, no network)'
            f'{"" if doc.get("final") else ", re-read every look"}.</p></body></html>\n')
