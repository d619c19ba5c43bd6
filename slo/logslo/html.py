"""Self-contained HTML reports: inline SVG charts drawn here, no script, no network.

    compare_page(doc)  the comparison (report.json of `torchfaas-slo compare`)
    slo_page(doc)      the SLO check (the JSON report of `torchfaas-slo check`)

Charts: latency percentiles over time per model version with the SLO line, the
server-error ratio per version, the class mix side by side, the PSI, the verdict table.
Every chart is an <svg class="chart" data-chart="..."> so a test can find it.
"""

from __future__ import annotations

import html
import math
import time

from .compare.text import interval_text, path_text, power_text, value_text, what_would_decide
from .contracts import fmt

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222;
  padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:8px 0}
.ok{background:#e3f4e3;color:#17661b} .bad{background:#fde2e1;color:#9b1c1c} .unknown{background:#fff3cd;color:#7a5a00}
table{border-collapse:collapse;margin:8px 0;width:100%}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#666;font-size:12px} svg.chart{display:block;margin:8px 0;background:#fff;border:1px solid #eee}
code{font-size:12px;word-break:break-all} details{margin:6px 0}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _tick(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.3g}%"
    return f"{value:.4g}"


def line_chart(name: str, title: str, series: dict, unit: str = "ms", hlines=(), width=920, height=300) -> str:
    """series: {label: [(unix_seconds, value), ...]}; hlines: [(value, label)]."""
    points = [(t, v) for values in series.values() for t, v in values if v is not None and math.isfinite(v)]
    left, right, top, bottom = 60, 150, 30, 40
    w, h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" data-chart="{_e(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
             f'<text x="{left}" y="18" font-size="13" font-weight="600">{_e(title)}</text>']
    if not points:
        parts.append(f'<text x="{left + w / 2}" y="{top + h / 2}" text-anchor="middle" fill="#888">'
                     'no data</text></svg>')
        return "".join(parts)
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    if t1 == t0:
        t0, t1 = t0 - 1, t1 + 1
    ymax = _nice_max(max([v for _, v in points] + [v for v, _ in hlines]) * 1.05)

    def x(t):
        return left + (t - t0) / (t1 - t0) * w

    def y(v):
        return top + h - min(v, ymax) / ymax * h

    for i in range(5):  # grid and y ticks
        v = ymax * i / 4
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + w}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{_e(_tick(v, unit))}</text>')
    for i in range(5):  # time ticks
        t = t0 + (t1 - t0) * i / 4
        parts.append(f'<text x="{x(t):.1f}" y="{top + h + 16}" font-size="11" text-anchor="middle">'
                     f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    parts.append(f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#999"/>')
    for value, label in hlines:
        parts.append(f'<line class="slo-line" x1="{left}" y1="{y(value):.1f}" x2="{left + w}" y2="{y(value):.1f}" '
                     f'stroke="#d62728" stroke-dasharray="6 4"/><text x="{left + 6}" y="{y(value) - 5:.1f}" '
                     f'font-size="11" fill="#d62728">{_e(label)}</text>')
    legend_y = top + 10
    for i, (label, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        good = [(t, v) for t, v in values if v is not None and math.isfinite(v)]
        if len(good) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for j, (t, v) in enumerate(good))
            parts.append(f'<path class="series" d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for t, v in good:
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
                         f'<title>{_e(label)} {_e(fmt(v, unit) if unit != "" else v)}</title></circle>')
        parts.append(f'<rect x="{left + w + 6}" y="{legend_y + 20 * i + 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{left + w + 20}" y="{legend_y + 20 * i + 23}" font-size="11">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(name: str, title: str, categories: list, groups: dict, unit: str = "%", width=920, bound=None) -> str:
    """Horizontal grouped bars: for each category one bar per group ({group: {category: value}})."""
    row = 14 * max(1, len(groups)) + 10
    left, right, top = 170, 90, 30
    height = top + row * max(1, len(categories)) + 30
    w = width - left - right
    values = [v for g in groups.values() for v in g.values() if v is not None] + ([bound] if bound else [])
    vmax = _nice_max(max(values, default=0) * 1.05)
    parts = [f'<svg class="chart" data-chart="{_e(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
             f'<text x="10" y="18" font-size="13" font-weight="600">{_e(title)}</text>']
    if not categories:
        parts.append(f'<text x="{width / 2}" y="{top + 20}" text-anchor="middle" fill="#888">no data</text></svg>')
        return "".join(parts)
    for c, category in enumerate(categories):
        y0 = top + c * row
        parts.append(f'<text x="{left - 6}" y="{y0 + row / 2 + 2}" font-size="11" text-anchor="end">'
                     f'{_e(category)}</text>')
        for g, (group, data) in enumerate(groups.items()):
            value = data.get(category) or 0.0
            colour = COLOURS[g % len(COLOURS)]
            bw = value / vmax * w
            parts.append(f'<rect class="bar" x="{left}" y="{y0 + 4 + g * 14}" width="{bw:.1f}" height="12" '
                         f'fill="{colour}"><title>{_e(group)}: {_e(fmt(value, unit))}</title></rect>'
                         f'<text x="{left + bw + 4:.1f}" y="{y0 + 14 + g * 14}" font-size="10">'
                         f'{_e(fmt(value, unit))}</text>')
    if bound:
        bx = left + bound / vmax * w
        parts.append(f'<line class="slo-line" x1="{bx:.1f}" y1="{top}" x2="{bx:.1f}" y2="{height - 26}" '
                     f'stroke="#d62728" stroke-dasharray="6 4"/>'
                     f'<text x="{bx:.1f}" y="{height - 12}" font-size="11" fill="#d62728" text-anchor="middle">'
                     f'bound {_e(fmt(bound, unit))}</text>')
    for g, group in enumerate(groups):
        parts.append(f'<rect x="{left + 160 * g}" y="{height - 20}" width="10" height="10" '
                     f'fill="{COLOURS[g % len(COLOURS)]}"/>'
                     f'<text x="{left + 14 + 160 * g}" y="{height - 11}" font-size="11">{_e(group)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def psi_gauge(value, bound) -> str:
    width, height, left, w = 920, 70, 20, 760
    scale = max(0.5, (value or 0) * 1.2, (bound or 0) * 2)
    parts = [f'<svg class="chart" data-chart="psi" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="PSI">',
             f'<text x="{left}" y="16" font-size="13" font-weight="600">class mix shift (PSI): '
             f'{"no data" if value is None else f"{value:.4g}"}'
             f'{"" if bound is None else f" (bound {bound:g})"}</text>']
    for lo, hi, colour in ((0, 0.1, "#e3f4e3"), (0.1, 0.25, "#fff3cd"), (0.25, scale, "#fde2e1")):
        if lo < scale:
            parts.append(f'<rect x="{left + lo / scale * w:.1f}" y="26" '
                         f'width="{(min(hi, scale) - lo) / scale * w:.1f}" height="18" fill="{colour}"/>')
    if bound is not None:
        bx = left + bound / scale * w
        parts.append(f'<line class="slo-line" x1="{bx:.1f}" y1="22" x2="{bx:.1f}" '
                     f'y2="48" stroke="#d62728" stroke-dasharray="4 3"/>')
    if value is not None:
        px = left + min(value, scale) / scale * w
        parts.append(f'<rect class="bar" x="{px - 2:.1f}" y="22" width="4" height="26" fill="#222"/>')
    parts.append(f'<text x="{left}" y="62" font-size="10" fill="#666">0</text>'
                 f'<text x="{left + w}" y="62" font-size="10" fill="#666" text-anchor="end">{scale:.2g}</text>'
                 f'<text x="{left + w + 10}" y="40" font-size="10" fill="#666">'
                 '&lt;0.1 stable, &gt;0.25 changed</text></svg>')
    return "".join(parts)


def verdict_table(contracts: list) -> str:
    rows = ["<table class=\"verdicts\"><tr><th>contract</th><th>measured</th><th>bound</th><th>verdict</th></tr>"]
    for r in contracts:
        word = "at most" if r["comparison"] == "<=" else "at least"
        measured = "no data" if r["measured"] is None else fmt(float(r["measured"]), r["unit"])
        if r["passed"]:
            cell = '<td class="ok">pass</td>'
        elif r.get("cannot_judge") or r["measured"] is None:
            cell = f'<td class="unknown">cannot judge: {_e(r["miss"])}</td>'
        else:
            cell = f'<td class="bad">FAIL: {_e(r["miss"])}</td>'
        note = f'<br><span class="muted">{_e(r["note"])}</span>' if r.get("note") else ""
        logql = "".join(f"<code>{_e(q)}</code><br>" for q in r.get("logql", []))
        rows.append(f"<tr><td>{_e(r['contract'])}{note}<details><summary class=\"muted\">LogQL</summary>{logql}"
                    f"</details></td><td class=\"num\">{_e(measured)}</td><td class=\"num\">{_e(word)} "
                    f"{_e(fmt(r['bound'], r['unit']))}</td>{cell}</tr>")
    rows.append("</table>")
    return "".join(rows)


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{STYLE}</style></head><body>{body}"
            f'<p class="muted">torchfaas-slo; a self-contained page (no script, no network).</p></body></html>\n')


def _series(timeline: dict, key: str) -> dict:
    return {version: [(t, v) for t, v in points] for version, points in (timeline or {}).get(key, {}).items()}


def interval_chart(contracts: list, width=920) -> str:
    """Each judged contract as a row: its interval (bar), its estimate (dot) and its bound
    (red line), each row on its own scale: what decided the verdict, at a glance."""
    rows = [j for j in contracts if j["unit"] != "requests" and j.get("estimate") is not None]
    if not rows:
        return ""
    row_h, left, right = 44, 330, 20
    height = row_h * len(rows) + 20
    parts = [f'<svg class="chart" data-chart="intervals" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img"><title>each contract: interval, estimate, bound</title>']
    colour = {"hold": "#d62728", "promote": "#2ca02c"}
    for i, j in enumerate(rows):
        top = 10 + i * row_h
        low = j["low"] if j["low"] is not None else min(j["estimate"], 0) - abs(j["bound"])
        high = j["high"] if j["high"] is not None else max(j["estimate"], j["bound"]) + 2 * abs(j["bound"])
        lo_x, hi_x = min(low, j["bound"], 0.0), max(high, j["bound"] * 1.2, j["estimate"])
        span = (hi_x - lo_x) or 1.0

        def x(v, lo_x=lo_x, hi_x=hi_x, span=span):  # this row's scale
            return left + (width - left - right) * (min(max(v, lo_x), hi_x) - lo_x) / span

        c = colour.get(j["verdict"], "#b58900")
        parts.append(f'<text x="4" y="{top + 18}" font-size="12">{_e(j["contract"][:48])}</text>')
        estimate, bound = value_text(j["estimate"], j["unit"]), value_text(j["bound"], j["unit"])
        parts.append(f'<text x="4" y="{top + 33}" font-size="11" fill="#666">{_e(j["verdict"])}: '
                     f'{_e(estimate)}, bound {_e(bound)}</text>')
        parts.append(f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{top + 20}" y2="{top + 20}" '
                     f'stroke="{c}" stroke-width="6" stroke-linecap="round" opacity="0.55"/>')
        parts.append(f'<circle cx="{x(j["estimate"]):.1f}" cy="{top + 20}" r="5" fill="{c}"/>')
        parts.append(f'<line x1="{x(j["bound"]):.1f}" x2="{x(j["bound"]):.1f}" y1="{top + 4}" y2="{top + 36}" '
                     f'class="slo-line" stroke="#d62728" stroke-dasharray="4 3"/>')
        if lo_x <= 0 <= hi_x:
            parts.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top + 8}" y2="{top + 32}" stroke="#999"/>')
    parts.append("</svg>")
    return "".join(parts)


def judgement_table(doc: dict) -> str:
    rows = ["<table class=\"verdicts\"><tr><th>contract</th><th>estimate [interval]</th><th>bound</th>"
            "<th>verdict</th></tr>"]
    for j in doc["contracts"]:
        klass = {"promote": "ok", "hold": "bad"}.get(j["verdict"], "unknown")
        word = "at least" if j["unit"] == "requests" else "at most"
        why = f": {what_would_decide(j, doc)}" if j["verdict"] == "inconclusive" else ""
        note = f'<br><span class="muted">{_e(j["note"])}</span>' if j.get("note") else ""
        power = f'<br><span class="muted">{_e(power_text(j))}</span>' if power_text(j) else ""
        logql = "".join(f"<code>{_e(q)}</code><br>" for q in j.get("logql", []))
        rows.append(f"<tr><td>{_e(j['contract'])}{note}<details><summary class=\"muted\">LogQL</summary>{logql}"
                    f"</details></td><td class=\"num\">{_e(interval_text(j))}{power}</td><td class=\"num\">"
                    f"{_e(word)} {_e(value_text(j['bound'], j['unit']))}</td>"
                    f"<td class=\"{klass}\">{_e(j['verdict'])}{_e(why)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def compare_page(doc: dict) -> str:
    base, cand = doc["baseline"], doc["candidate"]
    klass = {"promote": "ok", "hold": "bad"}.get(doc["verdict"], "unknown")
    figures, deltas = doc.get("figures") or {}, doc.get("deltas") or {}
    confidence = next((j["confidence"] for j in doc["contracts"] if j.get("confidence")), None)
    body = [f"<h1>Candidate {_e(cand)} vs baseline {_e(base)}</h1>",
            f'<div class="verdict {klass}" id="verdict">{_e(doc["verdict"].upper())}</div>',
            f'<p class="muted">evaluated at {_e(_stamp(doc["evaluated_at"]))}, window {_e(doc.get("window_s"))} s, '
            f'from {_e(doc["source"])}</p>']
    if doc.get("path"):
        body.append(f'<p id="path">Read as {_e(path_text(doc))}.</p>')
    if doc.get("traffic"):
        body.append(f'<p>Traffic: {_e(doc["traffic"])}.</p>')
    body += [f"<h2>Verdicts{f' ({confidence:.0%} intervals)' if confidence else ''}</h2>",
             judgement_table(doc), interval_chart(doc["contracts"])]
    for error in doc.get("errors", []):
        body.append(f'<p class="bad">error (not judged): {_e(error)}</p>')
    if figures:
        body.append("<h2>Figures</h2><table><tr><th>figure</th><th>baseline</th><th>candidate</th><th>change</th></tr>")
        for label, key, unit in (("requests", "requests", "requests"), ("p50 latency", "p50_ms", "ms"),
                                 ("p95 latency", "p95_ms", "ms"), ("p99 latency", "p99_ms", "ms"),
                                 ("5xx ratio", "ratio_5xx", "%"), ("4xx ratio", "ratio_4xx", "%")):
            b, c, d = figures.get(base, {}).get(key), figures.get(cand, {}).get(key), deltas.get(key)
            dtext = "-" if d is None else (fmt(d, "points") if unit == "%" else f"{d:+.4g}")
            body.append(f"<tr><td>{label}</td><td class=\"num\">{'-' if b is None else _e(fmt(b, unit))}</td>"
                        f"<td class=\"num\">{'-' if c is None else _e(fmt(c, unit))}</td>"
                        f"<td class=\"num\">{_e(dtext)}</td></tr>")
        body.append("</table>")
    timeline = doc.get("timeline") or {}
    slo_ms = timeline.get("slo_p99_ms")
    body.append("<h2>Latency over time</h2>")
    body.append(line_chart("latency", "p99 latency per model version (server-side, from the log)",
                           _series(timeline, "p99_ms"), "ms",
                           [(slo_ms, f"SLO p99 {slo_ms:g} ms")] if slo_ms else []))
    body.append(line_chart("latency-p50", "p50 latency per model version", _series(timeline, "p50_ms"), "ms"))
    body.append("<h2>Server errors</h2>")
    ratio = {v: {"5xx ratio": figures.get(v, {}).get("ratio_5xx"), "4xx ratio": figures.get(v, {}).get("ratio_4xx")}
             for v in (base, cand)}
    body.append(bar_chart("errors", "error ratios per model version", ["5xx ratio", "4xx ratio"], ratio, "%"))
    body.append("<h2>Class mix</h2>")
    shares = {v: figures.get(v, {}).get("class_shares", {}) for v in (base, cand)}
    classes = list(dict.fromkeys(list(shares[base])[:10] + list(shares[cand])[:10]))
    body.append(bar_chart("class-mix", "share of successful predictions, baseline vs candidate", classes, shares, "%"))
    if doc.get("logql"):
        body.append("<h2>LogQL</h2><table>" + "".join(
            f"<tr><td>{_e(k)}</td><td><code>{_e(q)}</code></td></tr>" for k, q in doc["logql"].items()) + "</table>")
    return page(f"compare {cand} vs {base}: {doc['verdict']}", "".join(body))


def slo_page(doc: dict) -> str:
    passed = doc["passed"]
    body = ["<h1>SLO report</h1>",
            f'<div class="verdict {"ok" if passed else "bad"}" id="verdict">'
            + ("ALL SLO CONTRACTS HOLD" if passed else f"{doc['violations']} SLO CHECK(S) VIOLATED") + "</div>",
            f'<p class="muted">evaluated at {_e(_stamp(doc["evaluated_at"]))} from {_e(doc["source"])}</p>',
            "<h2>Verdicts</h2>", verdict_table(doc["contracts"])]
    for error in doc.get("errors", []):
        body.append(f'<p class="bad">error (contract not judged): {_e(error)}</p>')
    timeline = doc.get("timeline") or {}
    figures = timeline.get("figures") or {}
    slo_ms = timeline.get("slo_p99_ms")
    body.append("<h2>Latency over time</h2>")
    body.append(line_chart("latency", "p99 latency per model version (server-side, from the log)",
                           _series(timeline, "p99_ms"), "ms",
                           [(slo_ms, f"SLO p99 {slo_ms:g} ms")] if slo_ms else []))
    body.append("<h2>Server errors</h2>")
    versions = sorted(figures)
    bound5 = timeline.get("slo_5xx_ratio")
    body.append(bar_chart("errors", "5xx ratio per model version", versions,
                          {"5xx ratio": {v: figures[v].get("ratio_5xx") for v in versions}}, "%", bound=bound5))
    body.append("<h2>Class mix</h2>")
    shares = {v: figures[v].get("class_shares", {}) for v in versions}
    classes = list(dict.fromkeys(c for v in versions for c in list(shares[v])[:10]))
    body.append(bar_chart("class-mix", "share of successful predictions per model version", classes, shares, "%"))
    psi_value = timeline.get("psi")
    body.append(psi_gauge(psi_value, timeline.get("psi_bound")))
    return page("SLO report: " + ("pass" if passed else "violated"), "".join(body))
