"""The HTML reports of `torchfaas-slo check --html` and `compare`, rendered in a real
headless Chromium (Debian package `chromium`; .ci/install-system-tools installs it): the page renders,
the charts are there, no JavaScript error, no network request, a screenshot is made."""

import re
import shutil
import subprocess
from pathlib import Path

from support.system_tools import require
from test_slo_compare import bad_canary, baseline, compare_file
from test_slo_runner import run_slo

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
CHARTS = {"latency", "errors", "class-mix"}  # and: compare "intervals", slo "psi"


def chromium():
    """Skips without Chromium (fails under CI, which installs it), as the other tool suites do."""
    return require("chromium|chromium-browser", suite="tests/slo/test_slo_html.py")["chromium|chromium-browser"]


def render(page: Path, tmp_path: Path):
    """(DOM after rendering, console/stderr log, screenshot path) from a fresh profile."""
    url = page.resolve().as_uri()
    profile = tmp_path / "profile"
    dom = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}-dom", "--enable-logging=stderr", "--v=0",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120)
    shot = tmp_path / "screenshot.png"
    done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}-shot", "--window-size=1100,2200",
                           "--hide-scrollbars", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and done.returncode == 0, dom.stderr[-2000:] + done.stderr[-2000:]
    return dom.stdout, dom.stderr, shot


def check_page(page: Path, tmp_path: Path, verdict: str, chart: str):
    text = page.read_text()
    assert "<script" not in text and not re.search(r'(src|href)="(https?:)?//', text)  # self-contained
    dom, log, shot = render(page, tmp_path)
    charts = set(re.findall(r'<svg class="chart" data-chart="([a-z0-9-]+)"', dom))
    assert CHARTS | {chart} <= charts, charts
    assert verdict in dom
    assert dom.count('class="series"') + dom.count('class="bar"') >= 4  # lines and bars are drawn, not "no data"
    assert 'class="slo-line"' in dom
    errors = [line for line in log.splitlines() if re.search(r"CONSOLE|Uncaught|SyntaxError|TypeError", line)]
    assert not errors, errors
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    return shot


def test_compare_report_renders_in_chromium(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + bad_canary())
    assert code == 1, out
    shot = check_page(reports / "report.html", tmp_path, "HOLD", "intervals")
    keep = Path("reports/test-screenshots")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "compare.png")


def test_slo_report_renders_in_chromium(fixture_log, answers, tmp_path):
    page = tmp_path / "slo.html"
    code, out = run_slo({"LOG_FILE": fixture_log, "SLO_AT": str(answers["instant_time"]), "SLO_HTML": str(page)})
    assert code == 1 and "HTML report written to" in out, out
    shot = check_page(page, tmp_path, "VIOLATED", "psi")
    dom = page.read_text()
    assert "v1.2.1" in dom and "v1.3.0" in dom and "SLO p99 250 ms" in dom
    keep = Path("reports/test-screenshots")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "slo.png")
