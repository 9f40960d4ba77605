"""Leaderboards: deterministic bytes, provenance, escaping, cells, diff, CI check (issue 8)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import random
import shutil
import subprocess
import sys

import pytest
from conftest import cli_in

from evalsuite.leaderboard import (MANIFEST_FILE, build_leaderboard, normalise_score,
                                   prepare_leaderboard, primary_cells, render_leaderboard,
                                   rows_digest)
from evalsuite.leaderboard.diff import compare_folders, diff_cells
from evalsuite.leaderboard.render import (csv_escape, csv_unescape, escape_markdown,
                                          format_cell)
from evalsuite.testing.rows import synthetic_rows
from evalsuite.store import ResultStore

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def rows():
    return synthetic_rows(series=("ladder", EVIL), tasks=("arc_easy", "a|b *c*"),
                          precisions=("fp32", "int8"), model_bits=True)


@pytest.fixture(scope="module")
def files(rows):
    return render_leaderboard(rows, scaling=False)


# ---- determinism ------------------------------------------------------------------------
def test_two_builds_give_identical_bytes(rows, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_leaderboard(rows, a, scaling=False)
    shuffled = list(rows)
    random.Random(7).shuffle(shuffled)
    build_leaderboard(shuffled, b, scaling=False)
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert names_a == names_b
    assert {"index.html", "README.md", "summary.md", "summary.csv", "precision.csv",
            MANIFEST_FILE, "plots/arc_easy.png", "tasks/arc_easy.md"} <= set(names_a)
    for name in names_a:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert compare_folders(a, b) == []


def test_scaling_sections_are_deterministic_too():
    rows = synthetic_rows(tasks=("arc_easy",))
    one, two = render_leaderboard(rows), render_leaderboard(list(reversed(rows)))
    assert one == two
    assert "predictions.md" in one and "predictions.csv" in one
    pred = one["predictions.md"].decode()
    assert "next +1 (\\~3.17e+08)" in pred and "Predictions, not measurements" in pred
    assert "emergence.md" in one and "Tally: " in one["emergence.md"].decode()


def test_predict_given_sizes():
    rows = synthetic_rows(tasks=("t",))
    files = render_leaderboard(rows, predict_sizes=("300m", "1b", "10m"))
    recs = list(csv.DictReader(files["predictions.csv"].decode().splitlines()[1:]))
    assert [(r["size"], r["n_params_source"], r["extrapolated"]) for r in recs] == [
        ("300m", "label", "yes"), ("1b", "label", "yes")]  # 10m is evaluated: not predicted
    assert float(recs[0]["lower"]) <= float(recs[0]["predicted"]) <= float(recs[0]["upper"])


def test_dataframe_input_matches_rows(rows, files, tmp_path):
    store = ResultStore(tmp_path / "results")
    store.append(rows)
    assert render_leaderboard(store.to_frame(), scaling=False) == files


def test_no_timestamps_or_paths_in_bodies(files, rows):
    stamps = {r.timestamp for r in rows}
    for name, blob in files.items():
        text = blob.decode("latin-1")
        assert not any(s in text for s in stamps), name
        assert "/work/" not in text and "/tmp/" not in text, name


# ---- provenance -------------------------------------------------------------------------
def test_every_file_names_version_rows_and_hash(files, rows):
    from evalsuite import __version__

    data = prepare_leaderboard(rows, scaling=False)
    manifest = json.loads(files[MANIFEST_FILE])
    assert manifest["rows"] == len(rows) and manifest["rows_sha256"] == rows_digest(rows)
    assert set(manifest["files"]) == set(files) - {MANIFEST_FILE}
    for name, blob in files.items():
        if name.endswith(".png"):
            assert f"evalsuite {__version__}".encode() in blob  # PNG tEXt Software
            assert b"result rows (rows sha256 " in blob  # PNG tEXt Description
        elif name.startswith("assets/"):  # not built from the rows: names its source instead
            assert blob.startswith(b"/* evalsuite leaderboard asset: ") and b"vl-convert-python" in blob
        elif name != MANIFEST_FILE:
            text = blob.decode()
            assert f"evalsuite {__version__}" in text, name
            assert "result rows (rows sha256 " in text, name
    task = next(t for t in data.task_tables if t.name == "tasks/arc_easy")
    assert f"built from {task.n_source} result rows (rows sha256 {task.digest})" in \
        files["tasks/arc_easy.md"].decode()
    assert f"{len(rows)} result rows (rows sha256 {rows_digest(rows)})" in \
        files["index.html"].decode()


def test_fast_row_dict_matches_to_dict(rows):
    from evalsuite.leaderboard.cells import _row_dict

    odd = dataclasses.replace(rows[0], value=float("nan"), versions={"b": "2", "a": "1"})
    for r in list(rows[:5]) + [odd]:
        assert _row_dict(r) == r.to_dict()


def test_worker_processes_give_the_same_bytes():
    from evalsuite import __version__
    from evalsuite.leaderboard.parallel import parallel_map
    from evalsuite.leaderboard.render import _plot_job

    assert parallel_map(abs, range(-8, 8), jobs=2) == [abs(i) for i in range(-8, 8)]
    rows = synthetic_rows(tasks=("t0", "t1"), sizes=(("1m", 10**6),), steps=(1000, 2000))
    data = prepare_leaderboard(rows, scaling=False)
    jobs = [(data.plots[t], __version__, "p") for t in ("t0", "t1")]
    assert parallel_map(_plot_job, jobs, jobs=2, min_items=1) == [_plot_job(j) for j in jobs]


def test_rows_digest_is_order_independent_and_content_sensitive(rows):
    assert rows_digest(rows) == rows_digest(list(reversed(rows)))
    changed = [dataclasses.replace(rows[0], value=0.123456)] + list(rows[1:])
    assert rows_digest(changed) != rows_digest(rows)


# ---- cells and tables -------------------------------------------------------------------
def test_normalised_score():
    assert normalise_score(0.25, 0.25) == 0.0
    assert normalise_score(1.0, 0.25) == 1.0
    assert normalise_score(0.625, 0.25) == pytest.approx(0.5)
    assert normalise_score(0.1, 0.25) < 0  # below chance stays below zero
    assert normalise_score(0.5, None) is None
    assert normalise_score(3.2, 0.0, higher_is_better=False) is None


def test_primary_cells_dedupe_reruns(rows):
    base = next(r for r in rows if r.is_primary)
    older = dataclasses.replace(base, value=0.1, timestamp="2025-01-01T00:00:00Z")
    newer = dataclasses.replace(base, value=0.7, timestamp="2027-01-01T00:00:00Z")
    limited = dataclasses.replace(base, value=0.9, limit=10, timestamp="2028-01-01T00:00:00Z")
    for order in ([older, newer, limited], [limited, newer, older]):
        cells, superseded = primary_cells(order)
        assert len(cells) == 1 and superseded == 2
        assert cells[0].value == 0.7  # full-data run beats a limited one, then the latest
    secondary = dataclasses.replace(base, is_primary=False, metric="acc_norm")
    assert primary_cells([secondary]) == ([], 0)


def test_task_table_golden():
    rows = synthetic_rows(sizes=(("1m", 1_000_000),), steps=(1000, None), tasks=("t",))
    rows = [dataclasses.replace(r, value=v, stderr=0.0125) for r, v in zip(rows, (
        0.4, 0.39, 0.55, 0.54))]
    md = render_leaderboard(rows, scaling=False)["tasks/t.md"].decode()
    table = md[md.index("| task"):]
    assert table == (
        "| task | series | size | n\\_params | step | tokens\\_seen | compute\\_flops | precision "
        "| shots | metric | value | stderr | score | score\\_stderr | chance | n |\n"
        "|---|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|\n"
        "| t | ladder | 1m | 1000000 | 1000 | 1000000000 | 6.000e+15 | fp32 | 0 | acc | 0.4000 "
        "| 0.0125 | 0.2000 | 0.0167 | 0.2500 | 1000 |\n"
        "| t | ladder | 1m | 1000000 | final | - | - | fp32 | 0 | acc | 0.5500 | 0.0125 "
        "| 0.4000 | 0.0167 | 0.2500 | 1000 |\n")


def test_summary_uses_latest_step_and_means(files):
    text = files["summary.csv"].decode().splitlines()
    assert text[0].startswith("# evalsuite ")
    recs = list(csv.DictReader(text[1:]))
    assert {r["step"] for r in recs} == {"4000"}
    assert len(recs) == 2 * 5 * 2  # series x sizes x precisions
    r = recs[0]
    tasks = [float(r["arc_easy"]), float(r["a|b *c*"])]
    assert float(r["mean_score"]) == pytest.approx(sum(tasks) / 2, abs=2e-6)


def test_precision_frontier_from_model_bits(files):
    recs = list(csv.DictReader(files["precision.csv"].decode().splitlines()[1:]))
    assert recs and {r["frontier"] for r in recs} == {"yes", "no"}
    by_task: dict[str, list] = {}
    for r in recs:
        by_task.setdefault(r["task"], []).append(r)
    for group in by_task.values():
        best = -1.0
        for r in sorted(group, key=lambda r: (float(r["model_bits"]), -float(r["score"]))):
            assert (r["frontier"] == "yes") == (float(r["score"]) > best)
            best = max(best, float(r["score"]))


def test_no_precision_data_says_so():
    files = render_leaderboard(synthetic_rows(tasks=("t",)), scaling=False)
    assert "precision.md" not in files
    assert "no precision data" in files["README.md"].decode()
    assert "no precision data" in files["index.html"].decode()


def test_empty_results_build():
    files = render_leaderboard([], scaling=False)
    assert "no primary-metric result rows yet" in files["README.md"].decode()
    assert "<table" in files["index.html"].decode()


def test_missing_scaling_module_degrades(monkeypatch):
    monkeypatch.setitem(sys.modules, "evalsuite.scaling.fit", None)
    monkeypatch.setitem(sys.modules, "evalsuite.scaling.emergence", None)
    files = render_leaderboard(synthetic_rows(tasks=("t",)))
    readme = files["README.md"].decode()
    assert "not available: evalsuite.scaling (fit, predict) is missing" in readme
    assert "not available: evalsuite.scaling.emergence is missing" in readme
    assert "predictions.md" not in files


def test_changed_scaling_api_degrades(monkeypatch):
    import evalsuite.scaling.emergence as emergence
    import evalsuite.scaling.fit as fit

    class Renamed:
        def __init__(self, *, form, x, n_bootstrap):  # an argument the leaderboard does not pass
            pass

    monkeypatch.setattr(fit, "ScalingLaw", Renamed)
    monkeypatch.delattr(emergence, "classify_curve")
    files = render_leaderboard(synthetic_rows(tasks=("t",)))
    readme = files["README.md"].decode()
    assert "not available: the fit/predict API of evalsuite.scaling differs" in readme
    assert "not available: the emergence API of evalsuite.scaling differs" in readme
    assert "tasks/t.md" in files and "plots/t.png" in files


# ---- escaping ---------------------------------------------------------------------------
def test_markdown_escaping():
    assert escape_markdown(EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape_markdown("a|b") == "a\\|b"
    assert escape_markdown("*x* _y_ `z` [l](u) #h ~s~ $m$ \\") == \
        "\\*x\\* \\_y\\_ \\`z\\` \\[l\\](u) \\#h \\~s\\~ \\$m\\$ \\\\"
    assert escape_markdown("two\nlines") == "two lines"


def test_user_names_escaped_in_every_format(files):
    for name, blob in files.items():
        if name.endswith(".png"):
            continue
        text = blob.decode()
        if name.endswith(".csv") or name == MANIFEST_FILE:
            continue
        assert EVIL not in text, name  # never raw, in markdown or HTML
    html = files["index.html"].decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the page's own sorter
    assert html.count("<script") == 2 + html.count('<script type="application/json"')
    assert "<" not in "".join(re.findall(r'<script type="application/json"[^>]*>(.*?)</script>',
                                         html, re.S))  # chart data: every < escaped
    md = files["summary.md"].decode()
    assert "| a\\|b \\*c\\* |" in md or "a\\|b \\*c\\*" in md
    # each markdown table row has as many cells as the header
    for name in ("summary.md", "precision.md"):
        lines = [ln for ln in files[name].decode().splitlines() if ln.startswith("| ")]
        counts = {ln.replace("\\|", "").count("|") for ln in lines}
        assert len(counts) == 1, name
    # CSV keeps the name exactly (quoted where needed)
    recs = list(csv.DictReader(io.StringIO(files["summary.csv"].decode().split("\n", 1)[1])))
    assert EVIL in {r["series"] for r in recs}


def test_csv_formula_names_are_neutralised():
    assert csv_escape("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_escape("@x") == "'@x" and csv_escape("ok") == "ok"
    for s in ("=1+1", "'quoted", "-x", "plain"):
        assert csv_unescape(csv_escape(s)) == s


def test_task_names_become_safe_unique_file_names():
    rows = synthetic_rows(tasks=("../../etc/passwd", "a b", "A_B", "ok"), sizes=(("1m", 10**6),),
                          steps=(1,))
    files = render_leaderboard(rows, scaling=False)
    for name in files:
        assert ".." not in name.split("/") and " " not in name and not name.startswith("/")
    assert len([n for n in files if n.startswith("tasks/") and n.endswith(".md")]) == 4
    assert "tasks/ok.md" in files


def test_fixed_float_formats():
    assert format_cell(-0.00001, "num") == "0.0000"
    assert format_cell(0.123456789, "num", for_csv=True) == "0.123457"
    assert format_cell(6e21, "sci") == "6.000e+21"
    assert format_cell(None, "num") == "-" and format_cell(None, "num", for_csv=True) == ""
    assert format_cell(float("nan"), "num") == "-"


# ---- build folder, check, diff ----------------------------------------------------------
def test_build_removes_stale_files_only(tmp_path):
    out = tmp_path / "lb"
    two = synthetic_rows(tasks=("keep", "gone"), sizes=(("1m", 10**6),), steps=(1,))
    build_leaderboard(two, out, scaling=False)
    (out / "NOTES.txt").write_text("a person's file")
    assert (out / "tasks" / "gone.md").exists()
    build_leaderboard([r for r in two if r.task == "keep"], out, scaling=False)
    assert not (out / "tasks" / "gone.md").exists() and not (out / "plots" / "gone.png").exists()
    assert (out / "tasks" / "keep.md").exists() and (out / "NOTES.txt").exists()


def test_diff_cells_beyond_stderr(rows):
    old, _ = primary_cells(rows)
    by_key = {c.key: c for c in old}
    k1, k2, k3 = list(by_key)[:3]
    moved = []
    for r in rows:
        key = (r.task, r.series, r.size, r.step, r.precision, r.num_fewshot)
        if r.is_primary and key == k1:
            r = dataclasses.replace(r, value=r.value + 10 * r.stderr)  # beyond
        elif r.is_primary and key == k2:
            r = dataclasses.replace(r, value=r.value + 0.5 * r.stderr)  # within
        elif r.is_primary and key == k3:
            continue  # removed
        moved.append(r)
    moved.append(dataclasses.replace(rows[0], size="huge", is_primary=True))
    new, _ = primary_cells(moved)
    changes, within = diff_cells(old, new)
    assert within == 1
    status = {(c.status, c.size) for c in changes}
    assert ("changed", k1[2]) in status and ("removed", k3[2]) in status
    assert ("added", "huge") in status and len(changes) == 3
    z = next(c.z for c in changes if c.status == "changed")
    assert z == pytest.approx(10 / 2 ** 0.5, rel=1e-3)


def _cli(*args, cwd):
    return cli_in(cwd, *args)


def test_cli_check_fails_on_planted_change_with_command(tmp_path, capsys):
    rows = synthetic_rows(series=("ladder", EVIL), tasks=("arc_easy",),
                          sizes=(("1m", 10**6), ("3m", 3 * 10**6)))
    ResultStore(tmp_path / "results").append(rows)
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 0
    assert _cli("leaderboard", "--no-scaling", "--check", cwd=tmp_path) == 0
    assert "up to date" in capsys.readouterr().out
    # plant a change in results/
    path = tmp_path / "results" / "rows.jsonl"
    lines = path.read_text().splitlines()
    d = json.loads(lines[0])
    d["value"] = 0.999
    lines[0] = json.dumps(d)
    path.write_text("\n".join(lines) + "\n")
    assert _cli("leaderboard", "--no-scaling", "--check", cwd=tmp_path) == 1
    err = capsys.readouterr().err
    assert "does not match the results in results" in err
    assert "evalsuite leaderboard --results results --out leaderboards --no-scaling" in err
    assert "changed  leaderboards/tasks/arc_easy.md" in err
    # a hand edit in leaderboards/ is caught as well
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 0
    with open(tmp_path / "leaderboards" / "tasks" / "arc_easy.md", "a") as fh:
        fh.write("edited by hand\n")
    assert _cli("leaderboard", "--no-scaling", "--check", cwd=tmp_path) == 1
    shutil.rmtree(tmp_path / "leaderboards" / "plots")
    assert _cli("leaderboard", "--no-scaling", "--check", cwd=tmp_path) == 1
    assert "missing  leaderboards/plots/" in capsys.readouterr().err
    # built elsewhere with another matplotlib: the message says so
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 0
    manifest = tmp_path / "leaderboards" / MANIFEST_FILE
    m = json.loads(manifest.read_text())
    m["environment"]["matplotlib"] = "0.0"
    manifest.write_text(json.dumps(m))
    assert _cli("leaderboard", "--no-scaling", "--check", cwd=tmp_path) == 1
    assert "built with other package versions (matplotlib 0.0 -> " in capsys.readouterr().err


def test_cli_check_with_nothing_passes(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    assert _cli("leaderboard", "--check", cwd=tmp_path) == 0
    assert "nothing to check" in capsys.readouterr().out


def test_cli_missing_results_folder_is_a_clear_error(tmp_path, capsys):
    assert _cli("leaderboard", "--results", "nope", cwd=tmp_path) == 2
    assert "results folder nope does not exist" in capsys.readouterr().err


def test_cli_diff_against_folder_and_git_ref(tmp_path, rows, capsys):
    if shutil.which("git") is None:
        pytest.skip("git is not on PATH")
    ResultStore(tmp_path / "results").append(rows)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "results"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "r"], cwd=tmp_path, check=True)
    shutil.copytree(tmp_path / "results", tmp_path / "old")
    assert _cli("leaderboard", "--no-scaling", "--out", "old_lb", "--results", "old",
                cwd=tmp_path) == 0
    path = tmp_path / "results" / "rows.jsonl"
    lines = path.read_text().splitlines()
    d = json.loads(lines[0])
    d["value"] = 0.999
    lines[0] = json.dumps(d)
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    for ref in ("HEAD", "old", "old_lb"):
        assert _cli("leaderboard", "--diff", ref, "--json", cwd=tmp_path) == 0
        out = json.loads(capsys.readouterr().out)
        assert [c["status"] for c in out] == ["changed"], ref
        assert out[0]["new"] == 0.999 and out[0]["series"] == d["series"]
    assert _cli("leaderboard", "--diff", "no-such-ref", cwd=tmp_path) == 2
    assert "cannot read results/rows.jsonl at that ref" in capsys.readouterr().err


def test_long_tables_are_cut_on_the_page_only(monkeypatch):
    import evalsuite.leaderboard.render as render

    monkeypatch.setattr(render, "HTML_MAX_ROWS", 10)
    rows = synthetic_rows(tasks=("t",), sizes=(("1m", 10**6), ("3m", 3 * 10**6)),
                          steps=(1, 2, 3, 4, 5, 6))
    files = render_leaderboard(rows, scaling=False)
    page = files["index.html"].decode()
    assert "This page shows the latest step of each series x size x precision x shots (2 of the " \
           "12 rows); every row is in tasks/t.md and tasks/t.csv." in page
    section = page[page.index('id="table-tasks-t"'):]
    section = section[:section.index("</table>")]
    assert section.count("<tr>") == 1 + 2
    assert files["tasks/t.md"].decode().count("| t | ladder |") == 12


def test_any_name_keeps_tables_whole_and_inert():
    """Property: whatever a name holds, a markdown row keeps its cells, HTML gets no markup."""
    import html
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from evalsuite.leaderboard import Table
    from evalsuite.leaderboard.render import html_table, markdown_table

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=3))
    def check(names):
        cols = tuple(f"c{i}" for i in range(len(names)))
        table = Table(name="x", title="x", columns=cols, rows=(tuple(names),), n_source=0,
                      digest="0")
        md_row = markdown_table(table).splitlines()[2]
        assert md_row.replace("\\\\", "").replace("\\|", "").count("|") == len(names) + 1
        assert "<" not in md_row and ">" not in md_row and "\n" not in md_row
        body = html_table(table, "t")
        tds = re.findall(r"<td>(.*?)</td>", body[body.index("<tbody>"):], re.S)
        assert len(tds) == len(names)
        for td, n in zip(tds, names):
            assert "<" not in td and ">" not in td
            assert html.unescape(td) == "".join(" " if ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F
                                                or ch in "\u2028\u2029" else ch for ch in n)

    check()


def test_lower_is_better_metric_is_shown_raw_and_kept_out_of_means():
    rows = synthetic_rows(tasks=("acc_task", "ppl_task"), sizes=(("1m", 10**6), ("2m", 2 * 10**6),
                                                                ("4m", 4 * 10**6), ("8m", 8 * 10**6)))
    rows = [dataclasses.replace(r, higher_is_better=False, chance=None, metric="ppl",
                                value=30.0 - 10 * r.value) if r.task == "ppl_task" else r
            for r in rows]
    files = render_leaderboard(rows)
    recs = list(csv.DictReader(files["summary.csv"].decode().splitlines()[1:]))
    for r in recs:
        assert float(r["ppl_task"]) > 1  # the raw perplexity, not a normalised score
        assert r["tasks"] == "1" and float(r["mean_score"]) == float(r["acc_task"])
    task_recs = list(csv.DictReader(files["tasks/ppl_task.csv"].decode().splitlines()[1:]))
    assert {r["score"] for r in task_recs} == {""}
    emergence = files["emergence.md"].decode()
    assert "1 task x series with a lower-is-better metric not classified" in emergence
    assert "| ppl\\_task |" not in emergence


def test_page_is_self_contained(files):
    import re

    page = files["index.html"].decode()
    assert "http://" not in page and "https://" not in page  # no network URL anywhere
    # the one script file is written beside the page (charts: evalsuite.leaderboard.charts)
    assert re.findall(r'src="([^"]*)"', page) == ["assets/vega.js"] and "assets/vega.js" in files
    assert all(h.startswith("data:") for h in re.findall(r'<link[^>]*href="([^"]*)"', page))
    for href in re.findall(r'<a href="([^"#][^"]*)"', page):  # links stay inside the folder
        assert ":" not in href and not href.startswith("/") and ".." not in href, href
        assert href in files, href


def test_chart_specs_mark_limited_runs_and_fold_subject_families():
    from evalsuite.leaderboard import prepare_leaderboard
    from evalsuite.leaderboard.charts import task_groups, task_spec
    from evalsuite.testing.rows import synthetic_rows

    assert task_groups(["arc_easy", "mmlu_a", "mmlu_b", "mmlu_c", "hendrycksTest-x", "bbh_x"]) == [
        ("arc_easy", ["arc_easy"]), ("bbh_x", ["bbh_x"]),
        ("mmlu", ["hendrycksTest-x", "mmlu_a", "mmlu_b", "mmlu_c"])]
    rows = [dataclasses.replace(r, limit=5) if r.size == "1m" else r
            for r in synthetic_rows(tasks=("arc_easy",))]
    data = prepare_leaderboard(rows, scaling=False)
    spec = task_spec("arc_easy", ["arc_easy"], data.cells)
    limited = {p["z"] for p in spec["data"]["values"] if "l" in p}
    assert limited == {"1m"}
    assert json.loads(json.dumps(spec)) == spec  # plain JSON


def test_precision_frontier_follows_lower_is_better_metrics():
    """Found by review: for perplexity the frontier marked the worst point (failed before)."""
    from evalsuite.leaderboard import prepare_leaderboard
    from evalsuite.testing.rows import synthetic_rows

    rows = [dataclasses.replace(r, metric="word_perplexity", higher_is_better=False, chance=None,
                                value=20.0 - 10 * r.value)
            for r in synthetic_rows(tasks=("wikitext",), precisions=("fp32", "int8", "int4"),
                                    model_bits=True, sizes=(("1m", 10**6),), steps=(1000,))
            if r.is_primary]
    table = prepare_leaderboard(rows, scaling=False).precision
    col = {c: i for i, c in enumerate(table.columns)}
    on = [r for r in table.rows if r[col["frontier"]] == "yes"]
    best = min(r[col["score"]] for r in table.rows)
    assert any(r[col["score"]] == best for r in on)
    fewest_bits = min(table.rows, key=lambda r: r[col["model_bits"]])
    assert fewest_bits[col["frontier"]] == "yes"


def test_chart_specs_review_fixes():
    """Found by review (each failed before): onsets carry the shots label the series picker
    uses; without compute the chart draws each size over steps and counts what it leaves out;
    the overview averages the same tasks for every series."""
    from evalsuite.leaderboard import prepare_leaderboard
    from evalsuite.leaderboard.charts import overview_spec, task_spec
    from evalsuite.testing.rows import synthetic_rows

    rows = synthetic_rows(tasks=("arc_easy",))
    rows += [dataclasses.replace(r, num_fewshot=5, cell_key=r.cell_key + "/5") for r in rows]
    cells = prepare_leaderboard(rows, scaling=False).cells
    onset = [{"s": "ladder", "shots": 5, "verdict": "emergent", "x": 1e16, "lo": 5e15, "hi": 2e16}]
    spec = task_spec("arc_easy", ["arc_easy"], cells, onsets=onset)
    picker = spec["params"][0]["bind"]["options"]
    drawn = [layer for layer in spec["layer"] if layer.get("mark", {}).get("type") == "rule"
             and "data" in layer and layer["data"]["values"][0].get("verdict")]
    assert drawn and drawn[0]["data"]["values"][0]["s"] == "ladder 5-shot" in picker

    no_compute = [dataclasses.replace(r, tokens_seen=None, compute_flops=None)
                  for r in synthetic_rows(tasks=("arc_easy",))]
    cells = prepare_leaderboard(no_compute, scaling=False).cells
    spec = task_spec("arc_easy", ["arc_easy"], cells)
    steps = next(p for p in spec["params"] if p["name"] == "steps")
    assert steps["value"] is True and "step" in spec["encoding"]["x"]["title"]

    mixed = synthetic_rows(series=("a",), tasks=("arc_easy", "piqa")) + \
        synthetic_rows(series=("b",), tasks=("arc_easy",))
    ov = overview_spec(prepare_leaderboard(mixed, scaling=False).cells)
    assert {v["n"] for v in ov["data"]["values"]} == {1}
    assert "arc_easy" in ov["title"]["subtitle"]
