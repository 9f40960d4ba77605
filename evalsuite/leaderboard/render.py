"""Rendering of leaderboard tables: markdown, CSV and one self-contained HTML page.

Every name that reaches a file came from a user's results (task, series, size, precision,
metric) and is escaped for the format it lands in: ``html.escape`` in HTML (text and attribute
values), backslash escapes and HTML entities in markdown (``|`` would end a table cell, ``<`` open
raw HTML), and a leading ``'`` in CSV cells that a spreadsheet would run as a formula.

Numbers have fixed formats so the bytes depend on the values alone:
``num`` 4 decimals on pages, 6 in CSV; ``sci`` 3 (7) significant digits in exponent form;
``int`` plain digits; ``step`` plain digits, ``final`` on pages (empty in CSV) for a released
model without steps. Missing numbers are ``-`` on pages and empty in CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import html
import io
import math
import re
from typing import Any, Mapping

from ..records import latest_by
from .parallel import parallel_map
from .tables import LeaderboardData, Table

__all__ = ["escape_markdown", "escape_html", "csv_escape", "csv_unescape", "format_cell",
           "render_files"]

_MD_SPECIAL = set("\\`*_[]|~#$!{}")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


#: Control characters and line separators: none of them belongs inside a table cell.
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MD_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: "\\" + c for c in _MD_SPECIAL}}
_MD_PATTERN = re.compile("[" + re.escape("&<>" + "".join(sorted(_MD_SPECIAL))) + "]")


@functools.lru_cache(maxsize=65536)
def _escape_markdown(text: str) -> str:
    return _MD_PATTERN.sub(lambda m: _MD_ESCAPES[m.group(0)], _BREAKS.sub(" ", text))


def escape_markdown(text: Any) -> str:
    """Text safe inside a markdown table cell or heading: no raw HTML (``& < >`` as entities),
    no markup (backslash before each of ``\\ ` * _ [ ] | ~ # $ ! { }``), no cell or line break
    (control characters and line separators become spaces)."""
    return _escape_markdown(str(text))


@functools.lru_cache(maxsize=65536)
def _escape_html(text: str) -> str:
    return html.escape(_BREAKS.sub(" ", text), quote=True)


def escape_html(text: Any) -> str:
    """``html.escape`` (quotes too), control characters and line separators shown as spaces."""
    return _escape_html(str(text))


def csv_escape(text: str) -> str:
    """Prefix ``'`` to a name a spreadsheet would evaluate as a formula (OWASP CSV injection)."""
    if text.startswith(_CSV_FORMULA) or text.startswith("'"):
        return "'" + text
    return text


def csv_unescape(text: str) -> str:
    if text.startswith("'") and (text[1:].startswith(_CSV_FORMULA) or text[1:].startswith("'")):
        return text[1:]
    return text


def _fixed(v: float, spec: str) -> str:
    s = format(v, spec)
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]  # never print -0.0000
    return s


def format_cell(v: Any, kind: str | None, *, for_csv: bool = False) -> str:
    """A value as fixed text (unescaped); ``kind`` is one of num, sci, int, step or None (text)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "" if for_csv else "-"
    if kind == "step":
        return str(int(v))
    if kind == "int":
        return str(int(v))
    if kind == "num":
        return _fixed(float(v), ".6f" if for_csv else ".4f")
    if kind == "sci":
        return _fixed(float(v), ".6e" if for_csv else ".3e")
    if isinstance(v, float):
        return _fixed(v, ".6g")
    return str(v)


def _display(v: Any, kind: str | None) -> str:
    if v is None and kind == "step":
        return "final"
    return format_cell(v, kind)


def _sort_value(v: Any, kind: str | None) -> str | None:
    """Machine value for the HTML sorter (numbers only); None sorts text."""
    if kind in ("num", "sci", "int", "step"):
        if v is None:
            return "" if kind != "step" else "1e308"  # missing sorts first; "final" sorts last
        return format_cell(v, "sci", for_csv=True) if kind in ("num", "sci") else str(int(v))
    return None


def provenance(version: str, table_or_n: Any, digest: str | None = None) -> str:
    if isinstance(table_or_n, Table):
        n, digest = table_or_n.n_source, table_or_n.digest
    else:
        n = table_or_n
    return f"evalsuite {version}; built from {n} result rows (rows sha256 {digest})"


# ---- markdown -------------------------------------------------------------------------------
def markdown_table(table: Table) -> str:
    kinds = [table.formats.get(c) for c in table.columns]
    head = "| " + " | ".join(escape_markdown(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if k else "---" for k in kinds) + "|"
    lines = [head, rule]
    for row in table.rows:
        lines.append("| " + " | ".join(escape_markdown(_display(v, k))
                                         for v, k in zip(row, kinds)) + " |")
    if not table.rows:
        lines.append("| " + " | ".join("" for _ in table.columns) + " |")
    return "\n".join(lines) + "\n"


def markdown_page(table: Table, version: str, extra: str = "") -> str:
    parts = [f"# {escape_markdown(table.title)}\n", f"_{provenance(version, table)}_\n"]
    if table.note:
        parts.append(escape_markdown(table.note) + "\n")
    if extra:
        parts.append(extra)
    parts.append(markdown_table(table))
    return "\n".join(parts)


# ---- CSV ------------------------------------------------------------------------------------
def csv_text(table: Table, version: str) -> str:
    """``#`` provenance line, then a header and the rows (read with ``skiprows=1``)."""
    buf = io.StringIO()
    buf.write(f"# {provenance(version, table)}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.columns)
    kinds = [table.formats.get(c) for c in table.columns]
    for row in table.rows:
        w.writerow([csv_escape(format_cell(v, k, for_csv=True)) if k is None
                    else format_cell(v, k, for_csv=True) for v, k in zip(row, kinds)])
    return buf.getvalue()


# ---- HTML -----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:1200px;padding:0 1em;color:#1b1b1b;background:#fff}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
.prov,.note{color:#555;font-size:.9em}
nav ul{columns:3;font-size:.9em}
.scroll{overflow-x:auto}
td.t{white-space:normal;min-width:18em;max-width:40em}
.charts{display:flex;flex-wrap:wrap;gap:1.2em 2em}
.chart{min-height:300px}.chart.wide{flex-basis:100%}
details>summary{cursor:pointer;font-size:1.1em;margin:1em 0 .3em}
form.vega-bindings,.vega-bindings{font-size:.85em;color:#333}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:2px 6px;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
img{max-width:100%;height:auto;border:1px solid #eee}
"""

# Sort a table by the clicked column: numbers by their data-v value, text otherwise. Stable.
_JS = """
(function(){
  function key(td){
    if(!td){return [1,""];}
    var v=td.getAttribute("data-v");
    if(v!==null){return v===""?[0,-Infinity]:[0,parseFloat(v)];}
    return [1,td.textContent];
  }
  function sortBy(th){
    var table=th.closest("table"),tbody=table.tBodies[0],idx=th.cellIndex;
    var dir=th.getAttribute("aria-sort")==="ascending"?-1:1;
    Array.prototype.forEach.call(th.parentNode.cells,function(c){c.removeAttribute("aria-sort");});
    th.setAttribute("aria-sort",dir===1?"ascending":"descending");
    var rows=Array.prototype.map.call(tbody.rows,function(r,i){return [r,i];});
    rows.sort(function(a,b){
      var ka=key(a[0].cells[idx]),kb=key(b[0].cells[idx]);
      if(ka[0]!==kb[0]){return ka[0]-kb[0];}
      var c=ka[0]===0?(ka[1]<kb[1]?-1:ka[1]>kb[1]?1:0):ka[1].localeCompare(kb[1]);
      return c!==0?c*dir:a[1]-b[1];
    });
    rows.forEach(function(p){tbody.appendChild(p[0]);});
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable th"),function(th){
    th.tabIndex=0;
    th.addEventListener("click",function(){sortBy(th);});
    th.addEventListener("keydown",function(e){if(e.key==="Enter"){sortBy(th);}});
  });
})();
"""


def html_table(table: Table, table_id: str) -> str:
    kinds = [table.formats.get(c) for c in table.columns]
    out = [f'<div class="scroll"><table class="sortable" id="{escape_html(table_id)}">'
           "<thead><tr>"]
    out.extend(f'<th scope="col">{escape_html(c)}</th>' for c in table.columns)
    out.append("</tr></thead><tbody>\n")
    for row in table.rows:
        out.append("<tr>")
        for v, k in zip(row, kinds):
            text = escape_html(_display(v, k))
            sv = _sort_value(v, k)
            if sv is None:
                out.append(f'<td class="t">{text}</td>' if len(text) > 60 else f"<td>{text}</td>")
            else:
                out.append(f'<td class="n" data-v="{escape_html(sv)}">{text}</td>')
        out.append("</tr>\n")
    out.append("</tbody></table></div>\n")
    return "".join(out)


def _links(stem: str) -> str:
    return (f'<p class="prov">Files: <a href="{escape_html(stem)}.md">markdown</a> · '
            f'<a href="{escape_html(stem)}.csv">CSV</a></p>\n')


#: Rows of one table inlined in index.html; longer tables are cut there (the page stays a few
#: MB) and are whole in their markdown and CSV files, which the page links.
HTML_MAX_ROWS = 600


def _page_rows(table: Table) -> tuple[Table, str]:
    """The rows index.html shows: all, or for a long task table each series x size x precision
    x shots at its latest step, or the first HTML_MAX_ROWS."""
    n = len(table.rows)
    if n <= HTML_MAX_ROWS:
        return table, ""
    rows = table.rows
    kept = "the first rows"
    if table.name.startswith("tasks/"):
        c = {name: i for i, name in enumerate(table.columns)}
        def key(r):
            return (r[c["series"]], r[c["size"]], r[c["precision"]], r[c["shots"]])

        latest = latest_by(rows, key=key, step=lambda r: r[c["step"]])
        rows = tuple(r for r in rows if r[c["step"]] == latest[key(r)][c["step"]])
        kept = "the latest step of each series x size x precision x shots"
    if len(rows) > HTML_MAX_ROWS:
        rows, kept = rows[:HTML_MAX_ROWS], "the first rows"
    note = (f"This page shows {kept} ({len(rows)} of the {n} rows); every row is in "
            f"{table.name}.md and {table.name}.csv.")
    return dataclasses.replace(table, rows=rows), note


def _section(sec_id: str, title: str, table: Table | None, note: str, version: str,
             before: str = "") -> str:
    out = [f'<section id="{escape_html(sec_id)}"><h2>{escape_html(title)}</h2>\n']
    if table is None:
        out.append(f'<p class="note">{escape_html(note)}</p>\n')
    else:
        out.append(f'<p class="prov">{escape_html(provenance(version, table))}</p>\n')
        if table.note:
            out.append(f'<p class="note">{escape_html(table.note)}</p>\n')
        if note:
            out.append(f'<p class="note">{escape_html(note)}</p>\n')
        shown, cut = _page_rows(table)
        if cut:
            out.append(f'<p class="note cut">{escape_html(cut)}</p>\n')
        out.append(before)
        out.append(_links(table.name))
        out.append(html_table(shown, "table-" + table.name.replace("/", "-")))
    out.append("</section>\n")
    return "".join(out)


#: Tables longer than this start collapsed on the page (click the title to open).
OPEN_ROWS = 20

# Draw every chart whose specification the page holds (vega-embed from assets/vega.js).
_CHART_JS = """
(function(){
  if(typeof vegaEmbed!=="function"){console.error("assets/vega.js did not load: charts are off");return;}
  Array.prototype.forEach.call(document.querySelectorAll("div.chart[data-spec]"),function(div){
    var spec=JSON.parse(document.getElementById(div.getAttribute("data-spec")).textContent);
    vegaEmbed(div,spec,{renderer:"svg",actions:false}).then(function(r){div.__view=r.view;})
      .catch(function(e){console.error("chart "+div.id+": "+e);});
  });
})();
"""


def _chart_specs(data: LeaderboardData, flops_basis: str) -> list[tuple[str, str, dict]]:
    """(element id, css class, Vega-Lite spec) of every chart, in page order."""
    from . import charts

    out = []
    overview = charts.overview_spec(data.cells)
    if overview is not None:
        out.append(("chart-overview", "chart wide", overview))
    onsets: dict[str, list] = {}
    if data.emergence is not None:
        col = {c: i for i, c in enumerate(data.emergence.columns)}
        for r in data.emergence.rows:
            if r[col["across"]] == "sizes" and r[col["onset_x"]] is not None:
                onsets.setdefault(r[col["task"]], []).append(
                    {"s": r[col["series"]], "shots": r[col["shots"]],
                     "verdict": r[col["verdict"]], "x": r[col["onset_x"]],
                     "lo": r[col["onset_lower"]], "hi": r[col["onset_upper"]]})
    by_task: dict[str, list] = {}
    for c in data.cells:
        by_task.setdefault(c.task, []).append(c)
    for name, tasks in charts.task_groups(sorted(by_task)):
        cells = [c for t in tasks for c in by_task[t]]
        plot = data.plots.get(tasks[0]) if len(tasks) == 1 else None
        spec = charts.task_spec(name, tasks, cells, plot.curves if plot else (),
                                plot.predicted if plot else (), onsets.get(tasks[0], ()),
                                flops_basis=flops_basis)
        if spec is not None:
            out.append((f"chart-task-{_slug(name)}", "chart task", spec))
    for sec, spec in (("precision", charts.precision_spec(data.precision)),
                      ("emergence", charts.emergence_spec(data.emergence))):
        if spec is not None:
            out.append((f"chart-{sec}", "chart", spec))
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "task"


def html_page(data: LeaderboardData, version: str, plots: Mapping[str, bytes],
              flops_basis: str = "total") -> str:
    from .charts import VEGA_ASSET, spec_json

    sections = [("summary", "Summary across tasks", data.summary, data.notes.get("summary", "")),
                ("predictions", "Predictions", data.predictions, data.notes.get("predictions", "")),
                ("emergence", "Emergence", data.emergence, data.notes.get("emergence", "")),
                ("precision", "Precision frontier", data.precision,
                 data.notes.get("precision", ""))]
    if data.forecasts is not None:
        sections.insert(2, ("forecasts", "Forecast of the final score", data.forecasts, ""))
    specs = _chart_specs(data, flops_basis)
    nav = ['<nav><ul><li><a href="#charts">Charts</a></li>']
    nav.extend(f'<li><a href="#{s[0]}">{escape_html(s[1])}</a></li>' for s in sections)
    nav.append('<li><a href="#tasks">Task tables</a></li></ul></nav>\n')
    body = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f'<meta name="generator" content="evalsuite {escape_html(version)}">\n',
            '<link rel="icon" href="data:,">\n',
            "<title>evalsuite leaderboard</title>\n<style>", _CSS, "</style>\n",
            f'<script src="{VEGA_ASSET}"></script></head><body>\n',
            "<h1>evalsuite leaderboard</h1>\n",
            f'<p class="prov">evalsuite {escape_html(version)}; built from {data.n_rows} result '
            f"rows (rows sha256 {data.digest}); {len(data.cells)} primary-metric cells"
            + (f", {data.superseded} superseded re-run rows ignored" if data.superseded else "")
            + ". Generated by <code>evalsuite leaderboard</code>; do not edit by hand. Hover a "
            "point for its checkpoint; each chart has a series picker.</p>\n"]
    limited = sorted({c.series for c in data.cells if c.limit})
    if limited:
        body.append('<p class="note">Scored on the first items only (<code>--limit</code>): '
                    f"{escape_html(', '.join(limited))}; not comparable with full runs.</p>\n")
    body.append('<section id="charts"><h2>Charts</h2><div class="charts">\n')
    for i, (el_id, css, spec) in enumerate(specs):
        body.append(f'<div class="{css}" id="{escape_html(el_id)}" data-spec="spec-{i}"></div>\n')
    body.append("</div>\n")
    for i, (_, _, spec) in enumerate(specs):
        body.append(f'<script type="application/json" id="spec-{i}">{spec_json(spec)}</script>\n')
    body.append("</section>\n" + "".join(nav))
    for sec_id, title, table, note in sections:
        body.append(_collapsible(_section(sec_id, title, table, note, version), table))
    body.append('<section id="tasks"><h2>Task tables</h2>\n')
    for t in data.task_tables:
        slug = data.task_slugs[t.task]
        link = (f'<p class="prov"><a href="plots/{escape_html(slug)}.png">plot PNG</a></p>\n'
                if t.task in plots else "")
        body.append(_collapsible(_section(t.name.replace("/", "-"), t.title, t, "", version,
                                          before=link), t, force=True))
    body.append("</section>\n")
    body.append("<script>" + _JS + _CHART_JS + "</script>\n</body></html>\n")
    return "".join(body)


def _collapsible(section_html: str, table: Table | None, force: bool = False) -> str:
    """A section whose table is long (or a task table) starts collapsed: its h2 becomes the
    summary of a <details> element."""
    if table is None or (len(table.rows) <= OPEN_ROWS and not force):
        return section_html
    head, rest = section_html.split("</h2>\n", 1)
    sec_open, title = head.split("<h2>", 1)
    n = len(table.rows)
    return (f"{sec_open}<details><summary><h2 style=\"display:inline\">{title}</h2> "
            f'<span class="note">({n} rows)</span></summary>\n'
            + rest.replace("</section>\n", "</details></section>\n"))


# ---- the entry markdown page ----------------------------------------------------------------
def readme_page(data: LeaderboardData, version: str) -> str:
    parts = ["# evalsuite leaderboard\n",
             f"_evalsuite {version}; built from {data.n_rows} result rows (rows sha256 "
             f"{data.digest}); {len(data.cells)} primary-metric cells. Generated by "
             "`evalsuite leaderboard`; do not edit by hand. The same tables with plots and "
             "sortable columns: [index.html](index.html)._\n"]
    parts.append("## Summary across tasks\n")
    if data.summary.rows:
        parts.append(escape_markdown(data.summary.note) + " CSV: [summary.csv](summary.csv).\n")
        parts.append(markdown_table(data.summary))
    else:
        parts.append(escape_markdown(data.notes.get("summary", "no rows")) + "\n")
    stems = [("predictions", "Predictions"), ("emergence", "Emergence"),
             ("precision", "Precision frontier")]
    if data.forecasts is not None:
        stems.insert(1, ("forecasts", "Forecast of the final score"))
    for stem, title in stems:
        table = getattr(data, stem)
        parts.append(f"## {title}\n")
        if table is None:
            parts.append(escape_markdown(data.notes.get(stem, "not available")) + "\n")
        else:
            parts.append(f"{len(table.rows)} rows: [{stem}.md]({stem}.md), "
                         f"[{stem}.csv]({stem}.csv).\n")
    parts.append("## Tasks\n")
    if not data.task_tables:
        parts.append("No tasks yet.\n")
    for t in data.task_tables:
        task = t.task
        slug = data.task_slugs[task]
        parts.append(f"- {escape_markdown(task)}: [table]({t.name}.md), [CSV]({t.name}.csv), "
                     f"[plot](plots/{slug}.png)")
    return "\n".join(parts) + "\n"


def _plot_job(job: tuple) -> bytes:
    from .plots import render_plot_png

    spec, version, prov = job
    return render_plot_png(spec, version=version, provenance=prov)


def render_files(data: LeaderboardData, *, version: str, jobs: int = 1) -> dict[str, bytes]:
    """All leaderboard files except the manifest, as {relative path: bytes}."""

    files: dict[str, str | bytes] = {}
    plots: dict[str, bytes] = {}
    tasks = [t.task for t in data.task_tables]
    pngs = parallel_map(_plot_job, [(data.plots[task], version, provenance(version, t))
                                    for task, t in zip(tasks, data.task_tables)], jobs)
    for t, task, png in zip(data.task_tables, tasks, pngs):
        slug = data.task_slugs[task]
        plots[task] = png
        files[f"plots/{slug}.png"] = png
        img = f"![score against compute](../plots/{slug}.png)\n"
        files[f"{t.name}.md"] = markdown_page(t, version, extra=img)
        files[f"{t.name}.csv"] = csv_text(t, version)
    for table in (data.summary, data.predictions, data.forecasts, data.emergence, data.precision):
        if table is not None:
            files[f"{table.name}.md"] = markdown_page(table, version)
            files[f"{table.name}.csv"] = csv_text(table, version)
    files["README.md"] = readme_page(data, version)
    from .charts import VEGA_ASSET, vega_bundle

    basis = ("non-embedding" if any("non-embedding" in p.x_label for p in data.plots.values())
             else "total")
    files["index.html"] = html_page(data, version, plots, flops_basis=basis)
    files[VEGA_ASSET] = vega_bundle()
    return {p: (b if isinstance(b, bytes) else b.encode("utf-8")) for p, b in files.items()}
