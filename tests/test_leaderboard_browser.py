"""The static leaderboard page in headless Chromium (Debian's ``chromium``): no console errors,
every table and plot present, sortable columns, user names rendered as text (issue 8).

Skips, with the reason, where /usr/bin/chromium is absent (CI installs it with
``apt-get install -y chromium``). The screenshot is left in pytest's tmp folder for a person to
look at (its path is printed with ``-s``).
"""

from __future__ import annotations

import html
import json
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


def test_page_opens_without_console_errors_and_shows_everything(site):
    tmp, out, data = site
    dom, console = _chromium(tmp, "--dump-dom", (out / "index.html").as_uri())
    assert console == [], console
    assert "<h1>evalsuite leaderboard</h1>" in dom
    n_tables = 1 + len(data.task_tables) + 3  # summary, tasks, predictions/emergence/precision
    assert dom.count('<table class="sortable"') == n_tables
    assert dom.count('<img class="plot"') == len(data.task_tables) == 2
    # the user's name is text: escaped in the serialised DOM, never an element
    assert html.escape(EVIL, quote=False) in dom
    assert dom.count("<script") == 1 and EVIL not in dom


def test_sorting_images_and_no_script_injection_in_the_browser(site):
    """Runs the page with a probe: counts alerts, decodes images, clicks a header to sort."""
    tmp, out, data = site
    page = (out / "index.html").read_text(encoding="utf-8")
    guard = "<script>window.__alerts=0;window.alert=function(){window.__alerts++;};</script>"
    probe = """<script>
window.addEventListener("load", function(){
  var r = {alerts: window.__alerts};
  var imgs = document.querySelectorAll("img.plot");
  r.images = imgs.length;
  r.decoded = Array.prototype.filter.call(imgs, function(i){return i.naturalWidth > 0;}).length;
  r.tables = document.querySelectorAll("table.sortable").length;
  r.evilText = document.body.textContent.indexOf("<scr" + "ipt>alert(1)</scr" + "ipt>") >= 0;
  var t = document.getElementById("table-summary");
  var ths = t.tHead.rows[0].cells, col = -1;
  for (var i = 0; i < ths.length; i++) { if (ths[i].textContent === "mean_score") col = i; }
  function column(){ return Array.prototype.map.call(t.tBodies[0].rows, function(row){
      return parseFloat(row.cells[col].getAttribute("data-v")); }); }
  ths[col].click(); r.asc = column(); r.ariaAsc = ths[col].getAttribute("aria-sort");
  ths[col].click(); r.desc = column(); r.ariaDesc = ths[col].getAttribute("aria-sort");
  document.body.setAttribute("data-probe", JSON.stringify(r));
});
</script>"""
    page = page.replace("<head>", "<head>" + guard, 1).replace("</body>", probe + "</body>", 1)
    (out / "probe.html").write_text(page, encoding="utf-8")
    try:
        dom, console = _chromium(tmp, "--dump-dom", (out / "probe.html").as_uri())
    finally:
        (out / "probe.html").unlink()
    assert console == [], console
    m = re.search(r'data-probe="([^"]*)"', dom)
    assert m, "the probe did not run"
    r = json.loads(html.unescape(m.group(1)))
    assert r["alerts"] == 0  # no injected script ran
    assert r["evilText"] is True  # the name is shown, as text
    assert r["images"] == r["decoded"] == len(data.task_tables)
    assert r["tables"] == 1 + len(data.task_tables) + 3
    assert r["ariaAsc"] == "ascending" and r["ariaDesc"] == "descending"
    assert r["asc"] == sorted(r["asc"]) and r["desc"] == sorted(r["desc"], reverse=True)
    assert len(r["asc"]) == len(data.summary.rows) > 1


def test_screenshot(site):
    tmp, out, _ = site
    shot = tmp / "leaderboard.png"
    _, console = _chromium(tmp, f"--screenshot={shot}", "--window-size=1280,2200",
                           "--hide-scrollbars", (out / "index.html").as_uri())
    assert console == [], console
    assert shot.exists() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")
