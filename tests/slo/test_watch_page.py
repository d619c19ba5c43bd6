"""The page a person watches during a rollout (logslo.watch_page), rendered in a real
headless Chromium as the other reports are (test_slo_html.py). The watch documents are
real: the committed log of identical code replayed in time order, a look every 15 s of
log time, the canary contracts decided at each look by logslo.compare's own functions
(tests/support/watch_replay.py, a test helper until the watch writes them): one still
watching, one that promotes, one that holds (the candidate's latency x1.25), one whose
last look is a data fault, one inconclusive at its deadline after the log ended."""

import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from logslo.compare.text import interval_text
from logslo.watch_page import watch_page
from support.watch_replay import RATE_LIMITED, TIMEOUT, not_started, replay
from test_slo_html import render

DOCS = {
    "watching": lambda: replay(stop_after=4),
    "promote": lambda: replay(),
    "hold": lambda: replay(latency_factor=1.25),
    "fault": lambda: replay(stop_after=5, faults={3: TIMEOUT, 5: RATE_LIMITED}),
    "inconclusive": lambda: replay(latency_bound=2, deadline_s=345),
    "broken": lambda: not_started("no such file: missing.jsonl"),
}
ALL = list(DOCS)
WITH_LOOKS = [name for name in ALL if name != "broken"]
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr", "source"}


class Dom(HTMLParser):
    """The rendered DOM as a list of elements: tag, attributes, text inside, the chart it is in."""

    def __init__(self, text: str):
        super().__init__()
        self.elements, self.stack = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        charts = [e["attrs"].get("data-chart") for e in self.stack if e["tag"] == "svg"]
        element = {"tag": tag, "attrs": attrs, "text": "", "chart": attrs.get("data-chart") or
                   next(filter(None, reversed(charts)), None), "order": len(self.elements)}
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self.stack:
            element["text"] += data

    def find(self, tag=None, klass=None, chart=None, **attrs):
        return [e for e in self.elements if (tag is None or e["tag"] == tag)
                and (klass is None or klass in e["attrs"].get("class", "").split())
                and (chart is None or e["chart"] == chart)
                and all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def one(self, **query):
        found = self.find(**query)
        assert len(found) == 1, (query, len(found))
        return found[0]


@pytest.fixture(scope="module")
def docs():
    return {name: make() for name, make in DOCS.items()}


@pytest.fixture(scope="module")
def rendered(docs, tmp_path_factory):
    """rendered(name) -> (page source, Dom of what Chromium rendered, its log, screenshot), once a doc."""
    cache = {}

    def get(name):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            page = folder / "watch.html"
            page.write_text(watch_page(docs[name]), encoding="utf-8")
            dom, log, shot = render(page, folder)
            cache[name] = (page.read_text(encoding="utf-8"), Dom(dom), log, shot)
        return cache[name]

    return get


def charts_of(doc):
    names = [j["contract"] for j in doc["contracts"]]
    return {f"contract-{i}": name for i, name in enumerate(names, 1)}


def unit_of(doc, name):
    return next(j["unit"] for j in doc["contracts"] if j["contract"] == name)


def numbers(text):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def test_the_replayed_documents_are_what_each_test_needs(docs):
    """The replay decides as the contract says a watch does; the page tests lean on it."""
    watching, promote, hold, fault, undecided = (docs[n] for n in WITH_LOOKS)
    assert (watching["verdict"], watching["final"], watching["decided_look"]) == ("watching", False, None)
    # the first look has fewer judged requests than the feature's minimum (100 a version)
    assert [look["status"] for look in watching["looks"]] == ["warm-up"] + ["ok"] * 3
    assert promote["verdict"] == "promote" and promote["final"]
    assert promote["decided_look"] == len(promote["looks"]) and promote["looks"][-1]["verdict"] == "promote"
    assert {j["verdict"] for j in promote["contracts"]} == {"promote"}
    assert hold["verdict"] == "hold" and hold["final"]
    latency = next(j for j in hold["contracts"] if j["contract"].startswith("latency"))
    assert latency["verdict"] == "hold" and latency["low"] > latency["bound"] and latency["estimate"] > 0.15
    assert [look["status"] for look in fault["looks"]] == ["warm-up", "ok", "data-fault", "ok", "data-fault"]
    assert fault["verdict"] == "watching" and not fault["final"] and "429" in fault["data_fault"]
    assert fault["looks"][-1]["contracts"] == [] and fault["fault_kind"] == "rate_limited"
    assert undecided["verdict"] == "inconclusive" and undecided["final"] and undecided["decided_look"] is None
    assert [look["status"] for look in undecided["looks"]][-3:] == ["ok", "no-new-data", "no-new-data"]
    for doc in (watching, promote, hold, fault, undecided):
        assert len(doc["contracts"]) == 5
        assert all(len(look["contracts"]) == 5 for look in doc["looks"] if look["status"] == "ok")
    width = [look["contracts"][1]["high"] - look["contracts"][1]["low"] for look in undecided["looks"]
             if look["contracts"]]
    assert width[-1] < width[0] / 4  # the latency interval narrows as requests add up


@pytest.mark.parametrize("name", ALL)
def test_the_headline_says_where_the_watch_stands(name, docs, rendered):
    doc, (_, dom, log, _) = docs[name], rendered(name)
    assert dom.one(id="verdict")["text"].strip() == doc["verdict"].upper()
    assert dom.one(id="reason")["text"].strip() == doc["reason"]
    text = " ".join(dom.one(tag="table", klass="facts")["text"].split())
    looks = doc["looks"]
    if looks:
        assert f"look {looks[-1]['index']} of {doc['planned_looks']} planned" in text
    assert f"baseline {doc['requests']['baseline']}, candidate {doc['requests']['candidate']}" in text
    assert "99% over the whole watch" in text and f"{doc['look_confidence'] * 100:.4g}%" in text
    assert "first 10 s not judged" in text
    if not doc["final"]:
        left = doc["deadline_at"] - looks[-1]["at"]
        assert f"{int(left // 60)} min {round(left % 60):02d} s to the deadline" in text
    errors = [line for line in log.splitlines() if re.search(r"CONSOLE|Uncaught|SyntaxError|TypeError", line)]
    assert not errors, errors


@pytest.mark.parametrize("name", WITH_LOOKS)
def test_one_chart_per_contract_with_its_bound_and_interval(name, docs, rendered):
    doc, (_, dom, _, _) = docs[name], rendered(name)
    charts = charts_of(doc)
    assert {e["attrs"]["data-chart"] for e in dom.find(tag="svg", klass="chart")} == set(charts)
    for chart, contract in charts.items():
        assert contract in " ".join(e["text"] for e in dom.find(tag="h3"))
        bound = dom.one(klass="bound-line", chart=chart)
        assert bound["attrs"]["y1"] == bound["attrs"]["y2"]  # horizontal
        bands = dom.find(klass="band", chart=chart)
        ok_looks = [look["index"] for look in doc["looks"] if look["status"] == "ok"]
        points = dom.find(tag="circle", klass="point", chart=chart)
        assert [int(p["attrs"]["data-look"]) for p in points] == ok_looks
        if unit_of(doc, contract) == "requests":
            assert not bands  # a count has no interval
        else:
            assert bands and all(b["tag"] in ("polygon", "rect") for b in bands)


def band_heights(dom, chart):
    """{x: height} of a chart's interval band(s)."""
    out = {}
    for band in dom.find(klass="band", chart=chart):
        if band["tag"] == "rect":
            a = band["attrs"]
            out[float(a["x"]) + float(a["width"]) / 2] = float(a["height"])
            continue
        pairs = [tuple(map(float, p.split(","))) for p in band["attrs"]["points"].split()]
        half = len(pairs) // 2
        for (x, top), (_, bottom) in zip(pairs[:half], reversed(pairs[half:])):
            out[x] = bottom - top
    return out


def test_the_band_narrows_look_by_look(docs, rendered):
    doc, (_, dom, _, _) = docs["inconclusive"], rendered("inconclusive")
    for chart, contract in charts_of(doc).items():
        if unit_of(doc, contract) == "requests":
            continue
        heights = [h for _, h in sorted(band_heights(dom, chart).items())]
        assert len(heights) == sum(look["status"] == "ok" for look in doc["looks"])
        # the first looks' wide intervals are cut at the chart's edge: narrower, not halved
        assert heights[-1] < 0.75 * heights[0] and max(heights[len(heights) // 2:]) < heights[0], (contract, heights)


def test_the_estimate_sits_on_the_right_side_of_the_bound(docs, rendered):
    """A hold's latency point is drawn above the bound line, a promote's below it (SVG y grows down)."""
    for name, above in (("hold", True), ("promote", False)):
        doc, (_, dom, _, _) = docs[name], rendered(name)
        chart = next(c for c, n in charts_of(doc).items() if n.startswith("latency of"))
        bound_y = float(dom.one(klass="bound-line", chart=chart)["attrs"]["y1"])
        last = dom.one(tag="circle", klass="point", chart=chart, data_look=str(doc["decided_look"]))
        assert (float(last["attrs"]["cy"]) < bound_y) is above, name


@pytest.mark.parametrize("name", WITH_LOOKS)
def test_the_deciding_look_is_marked_in_every_chart(name, docs, rendered):
    doc, (_, dom, _, _) = docs[name], rendered(name)
    decided = doc["decided_look"]
    marks = dom.find(klass="decided")
    if decided is None:
        assert not marks
        return
    assert len(marks) == len(charts_of(doc)) and {m["attrs"]["data-look"] for m in marks} == {str(decided)}
    for chart in charts_of(doc):
        mark = dom.one(klass="decided", chart=chart)
        assert f"{doc['verdict'].upper()} at look {decided}" in mark["text"]
        line = next(e for e in dom.find(tag="line", chart=chart) if e["order"] > mark["order"])
        point = dom.one(tag="circle", klass="point", chart=chart, data_look=str(decided))
        assert line["attrs"]["x1"] == line["attrs"]["x2"] == point["attrs"]["cx"]


@pytest.mark.parametrize("name", ["fault", "inconclusive"])
def test_looks_that_decide_nothing_are_gaps_with_their_reason(name, docs, rendered):
    doc, (_, dom, _, _) = docs[name], rendered(name)
    idle = {look["index"]: look for look in doc["looks"] if look["status"] != "ok"}
    assert idle
    for chart, contract in charts_of(doc).items():
        gaps = dom.find(tag="g", klass="gap", chart=chart)
        assert {int(g["attrs"]["data-look"]): g["attrs"]["data-status"] for g in gaps} == \
            {i: look["status"] for i, look in idle.items()}
        for gap in gaps:
            look = idle[int(gap["attrs"]["data-look"])]
            title = next(e for e in dom.find(tag="title", chart=chart) if e["order"] > gap["order"])
            said = {"data-fault": look["fault"], "no-new-data": "no new data", "warm-up": "warm-up"}[look["status"]]
            assert said in title["text"]
        drawn = {int(p["attrs"]["data-look"]) for p in dom.find(tag="circle", klass="point", chart=chart)}
        assert not drawn & set(idle)
        runs = len(re.findall(r"ok(?:,ok)*", ",".join(look["status"] for look in doc["looks"])))
        assert len(dom.find(tag="path", klass="estimate", chart=chart)) == runs  # the line breaks at a gap
        if unit_of(doc, contract) != "requests":
            assert len(dom.find(klass="band", chart=chart)) == runs


@pytest.mark.parametrize("name", ALL)
def test_a_data_fault_is_a_banner_never_a_pass(name, docs, rendered):
    doc, (_, dom, _, _) = docs[name], rendered(name)
    banners = dom.find(id="fault")
    if name != "fault":
        assert not banners
        return
    banner = banners[0]
    assert banner["text"].startswith("\u26a0 no decision at look 5") and doc["data_fault"] in banner["text"]
    assert "Loki answered HTTP 429" in doc["data_fault"]
    assert banner["order"] < dom.find(tag="table", klass="facts")[0]["order"]  # right under the verdict
    verdict = dom.one(id="verdict")
    assert "ok" not in verdict["attrs"]["class"].split() and verdict["text"].strip() == "WATCHING"
    row = [e for e in dom.find(tag="tr") if "data-fault" in e["text"]]
    assert len(row) == 2 and "429" in row[-1]["text"] and "30 s" in row[0]["text"]


@pytest.mark.parametrize("name", ALL)
def test_the_page_refreshes_itself_only_while_the_watch_runs(name, docs, rendered):
    doc, (source, dom, _, _) = docs[name], rendered(name)
    refresh = dom.find(tag="meta", http_equiv="refresh")
    if doc["final"]:
        assert not refresh and "refresh" not in source
    else:
        assert len(refresh) == 1 and refresh[0]["attrs"]["content"] == f"{doc['interval_s']:g}"


@pytest.mark.parametrize("name", ALL)
def test_the_page_is_self_contained(name, rendered):
    source, dom, _, _ = rendered(name)
    assert "<script" not in source.lower() and not dom.find(tag="script")
    assert not re.search(r"\b(src|href|action|poster|srcset)\s*=", source, re.I)
    assert not re.search(r"url\(|@import|<(link|img|iframe|object|embed|video|audio)\b", source, re.I)
    assert set(re.findall(r"https?://[^\s\"'<]+", source)) <= {"http://www.w3.org/2000/svg"}  # a namespace


def test_figures_read_like_the_comparison_report(docs, rendered):
    """The bounds, in red on each chart's axis, in compare's words: +10%, +1 point, 10%, a count."""
    doc, (source, dom, _, _) = docs["hold"], rendered("hold")
    expected = {"each version served": "100", "latency of": "+10%", "p99 latency": "+100%", "5xx ratio": "+1 point",
                "answers whose class": "10%"}
    for chart, contract in charts_of(doc).items():
        red = [e["text"] for e in dom.find(tag="text", klass="bound-value", chart=chart)]
        want = next(v for k, v in expected.items() if contract.startswith(k))
        assert [t.split("bound:")[0].strip() for t in red] == [want], (contract, red)
    assert "+1 points" not in source
    latency = next(j for j in doc["contracts"] if j["contract"].startswith("latency of"))
    assert interval_text(latency) in dom.one(id="reason")["text"]


@pytest.mark.parametrize("name", WITH_LOOKS)
def test_the_looks_table_has_one_row_a_look(name, docs, rendered):
    doc, (_, dom, _, _) = docs[name], rendered(name)
    table = dom.one(tag="table", klass="looks")
    rows = [e for e in dom.find(tag="tr") if e["order"] > table["order"]][1:]
    assert len(rows) == len(doc["looks"])
    for row, look in zip(rows, doc["looks"]):
        cells = [e["text"].strip() for e in dom.find(tag="td") if row["order"] < e["order"]][:7]
        assert int(cells[0]) == look["index"] and cells[2] == look["status"] and cells[5] == look["verdict"]
        assert numbers(cells[4]) == [look["requests"]["baseline"], look["requests"]["candidate"]]
        assert (cells[6] == (look["fault"] or "")) and re.fullmatch(r"\d\d:\d\d:\d\d", cells[1])
        if look["new_lines"]:
            assert numbers(cells[3]) == [look["new_lines"]["baseline"], look["new_lines"]["candidate"]]
        if look["index"] == doc["decided_look"]:
            assert "decided-row" in row["attrs"].get("class", "")


def png_size(path: Path) -> tuple:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("name", ALL)
def test_a_screenshot_is_made(name, rendered):
    *_, shot = rendered(name)
    assert png_size(shot) == (1100, 2200)
    assert 40_000 < shot.stat().st_size < 5_000_000  # a drawn page, not a blank one
    keep = Path("reports/test-screenshots")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / f"watch-{name}.png")
    if name == "hold":
        shutil.copy(shot, keep / "watch.png")
