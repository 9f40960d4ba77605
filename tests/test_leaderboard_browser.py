"""The static leaderboard page in headless Chromium (Debian's ``chromium``, driven by
Playwright): offline with the network blocked, no console errors, charts above the tables,
tooltips, the series filter, sortable columns, user names rendered as text (issues 8, 24).

Skips, with the reason, where /usr/bin/chromium is absent (CI installs it with
``apt-get install -y chromium``). The screenshot is left in pytest's tmp folder for a person to
look at (its path is printed with ``-s``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evalsuite.leaderboard import build_leaderboard, prepare_leaderboard
from evalsuite.testing.rows import synthetic_rows

EVIL = "<script>alert(1)</script>"
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and
                 Path(p).exists()), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless browser test needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y chromium); it is not installed here")

# Console output of the page: Chromium logs every console message and uncaught exception as
# "...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)".
_CONSOLE = re.compile(r":CONSOLE[:(\]]")


def _chromium(tmp: Path, *args: str, timeout: int = 90) -> tuple[str, list[str]]:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    console = [ln for ln in proc.stderr.splitlines() if _CONSOLE.search(ln)]
    return proc.stdout, console


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    rows = synthetic_rows(series=("ladder", EVIL), tasks=("arc_easy", EVIL),
                          sizes=(("1m", 10**6), ("3m", 3 * 10**6), ("10m", 10**7),
                                 ("30m", 3 * 10**7)),
                          steps=(1000, 4000), precisions=("fp32", "int8"), model_bits=True)
    out = tmp / "leaderboards"
    build_leaderboard(rows, out)
    return tmp, out, prepare_leaderboard(rows, scaling=False)


def test_console_detector_catches_planted_errors(tmp_path):
    """Negative control: the way errors are read from Chromium does see them."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head>'
                    "<body><script>console.error('planted'); no_such_function();</script>"
                    "</body></html>")
    _, console = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("planted" in ln for ln in console), console
    assert any("no_such_function" in ln for ln in console), console


def _open(tmp: Path, out: Path, page: str = "index.html", *, width=1400, height=900,
          before_load: str = ""):
    """The page in headless Chromium (Playwright driving Debian's chromium) with the network
    blocked: every request that is not a file under ``out`` is aborted and recorded."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    ctx = browser.new_context(viewport={"width": width, "height": height})
    errors, outside = [], []
    root = out.resolve().as_uri()

    def route(r):
        if r.request.url.startswith(root + "/"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    ctx.route("**/*", route)
    pg = ctx.new_page()
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    if before_load:
        pg.add_init_script(before_load)
    pg.goto((out / page).as_uri())
    pg.wait_for_function("document.querySelectorAll('div.chart').length === "
                         "document.querySelectorAll('div.chart svg.marks').length", timeout=30000)

    def close():
        browser.close()
        pw.stop()

    return pg, errors, outside, close


def test_page_opens_offline_with_charts_first_and_no_errors(site):
    tmp, out, data = site
    pg, errors, outside, close = _open(tmp, out, before_load=(
        "window.__alerts=0;window.alert=function(){window.__alerts++;};"))
    try:
        assert errors == [] and outside == [], (errors, outside)
        ids = pg.eval_on_selector_all("div.chart", "els => els.map(e => e.id)")
        tasks = sorted({c.task for c in data.cells})
        assert len([i for i in ids if i.startswith("chart-task-")]) == len(tasks) == 2
        assert "chart-overview" in ids and "chart-precision" in ids and "chart-emergence" in ids
        # every chart sits above the first table
        assert pg.evaluate("""() => { const t = document.querySelector('table');
            return Array.from(document.querySelectorAll('div.chart')).every(c =>
              c.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING); }""")
        assert pg.evaluate("window.__alerts") == 0  # no injected script ran
        assert EVIL in pg.inner_text("body")  # the name is shown, as text
        assert pg.evaluate("document.querySelectorAll('table.sortable').length") == (
            1 + len(data.task_tables) + 3)
    finally:
        close()


def _drawn_series(pg, chart: str) -> int:
    return pg.evaluate(f"""() => new Set(Array.from(document.querySelectorAll(
        '#{chart} g.mark-symbol.role-mark path')).map(p => p.getAttribute('fill'))
        .filter(f => f && f !== 'transparent' && f !== 'none')).size""")


def test_hover_tooltip_and_series_filter(site):
    tmp, out, _ = site
    pg, errors, outside, close = _open(tmp, out)
    try:
        chart = "chart-task-arc_easy"
        point = pg.locator(f"#{chart} g.mark-symbol.role-mark path").first
        point.hover(force=True)
        tip = pg.locator("#vg-tooltip-element")
        tip.wait_for(state="visible", timeout=5000)
        text = tip.inner_text()
        assert "checkpoint" in text and "value" in text and "stderr" in text, text
        before = _drawn_series(pg, chart)
        pg.select_option(f"#{chart} select[name=pick]", "ladder")
        pg.wait_for_timeout(300)
        after = _drawn_series(pg, chart)
        assert before == 2 and after == 1, (before, after)
        assert errors == [] and outside == [], (errors, outside)
    finally:
        close()


def test_sorting_in_the_browser(site):
    tmp, out, data = site
    pg, errors, _, close = _open(tmp, out)
    try:
        col = data.summary.columns.index("mean_score")
        th = pg.locator("#table-summary thead th").nth(col)

        def column():
            return pg.eval_on_selector_all(
                "#table-summary tbody tr", f"rs => rs.map(r => parseFloat(r.cells[{col}]"
                ".getAttribute('data-v')))")

        th.click()
        asc, aria_asc = column(), th.get_attribute("aria-sort")
        th.click()
        desc, aria_desc = column(), th.get_attribute("aria-sort")
        assert aria_asc == "ascending" and aria_desc == "descending"
        assert asc == sorted(asc) and desc == sorted(desc, reverse=True)
        assert len(asc) == len(data.summary.rows) > 1
        assert errors == []
    finally:
        close()


def test_screenshot_first_screen(site):
    tmp, out, _ = site
    pg, errors, _, close = _open(tmp, out)
    try:
        shot = tmp / "leaderboard.png"
        pg.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        # the first screen (1400 x 900) shows a chart
        top = pg.evaluate("document.querySelector('div.chart svg').getBoundingClientRect().top")
        assert top < 900
        print(f"screenshot: {shot}")
    finally:
        close()
