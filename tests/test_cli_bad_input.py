"""The CLI on bad input and bad conditions: a leaderboard build that fails midway or meets a
read-only or full disk, a prediction with too few sizes, a series whose checkpoints are all
broken, a run stopped with SIGTERM. Each ends with a clear message and a non-zero exit code,
never a traceback or a half-written folder."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import cli_in

from evalsuite.cli import build_parser, main
from evalsuite.leaderboard import MANIFEST_FILE
from evalsuite.testing.rows import synthetic_rows
from evalsuite.store import ResultStore

SMALL = (("1m", 10**6), ("3m", 3 * 10**6))


def _cli(*args, cwd):
    return cli_in(cwd, *args)


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under folder: file bytes, or ``->target`` for a symlink."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "->" + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def _leftovers(parent: Path) -> list[str]:
    """Temporary entries a build left beside or inside its output."""
    return sorted(p.name for p in parent.rglob("*")
                  if ".building-" in p.name or ".replaced-" in p.name or p.name.startswith(".tmp-"))


@pytest.fixture
def built(tmp_path):
    """A results folder, a leaderboards/ built from it with a person's NOTES.txt inside, then a
    changed result, so that a rebuild would change files."""
    store = ResultStore(tmp_path / "results")
    rows = synthetic_rows(tasks=("arc_easy", "piqa"), sizes=SMALL, steps=(1000,))
    store.append(rows)
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 0
    (tmp_path / "leaderboards" / "NOTES.txt").write_text("a person's file\n")
    changed = synthetic_rows(tasks=("arc_easy", "piqa"), sizes=SMALL, steps=(2000,))
    store.append(changed)
    return tmp_path, _tree(tmp_path / "leaderboards")


# ---- 1. leaderboard: a build that fails leaves the old folder as it was -----------------------
def test_leaderboard_write_failing_midway_leaves_the_old_folder(built, monkeypatch, capsys):
    """The disk fills after two files: before, MANIFEST.json (written first) already listed the
    new files while the old ones stayed, and the OSError came out as a traceback."""
    tmp_path, before = built
    real_chmod, calls = os.chmod, []

    def chmod(path, mode, *a, **kw):
        if Path(path).is_relative_to(tmp_path):
            calls.append(path)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_chmod(path, mode, *a, **kw)

    monkeypatch.setattr(os, "chmod", chmod)
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 2
    err = capsys.readouterr().err
    assert "cannot write the leaderboards to leaderboards/: No space left on device" in err
    assert "leaderboards/ is left as it was" in err and "free space" in err
    assert _tree(tmp_path / "leaderboards") == before
    assert _leftovers(tmp_path) == []


def test_leaderboard_failed_swap_puts_the_old_folder_back(built, monkeypatch, capsys):
    """The rename that moves the new folder in fails: the old folder is renamed back."""
    tmp_path, before = built
    out = tmp_path / "leaderboards"
    real_replace, failed = os.replace, []

    def replace(src, dst, *a, **kw):
        if Path(dst) == out and not failed:  # the first rename onto out/: the new folder's
            failed.append(src)
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 2
    assert "cannot write the leaderboards to leaderboards/: Input/output error" in \
        capsys.readouterr().err
    assert failed and _tree(out) == before
    assert _leftovers(tmp_path) == []


def test_leaderboard_render_failure_leaves_the_old_folder(built, monkeypatch):
    """A bug in a plot (the second of two) propagates as itself, with nothing written. (Rendering
    always ran before writing; this pins that it stays so.)"""
    import evalsuite.leaderboard.plots as plots

    tmp_path, before = built
    real, calls = plots.render_plot_png, []

    def render(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("plot bug")
        return real(*a, **kw)

    monkeypatch.setattr(plots, "render_plot_png", render)
    with pytest.raises(RuntimeError, match="plot bug"):
        _cli("leaderboard", "--no-scaling", "--jobs", "1", cwd=tmp_path)
    assert _tree(tmp_path / "leaderboards") == before
    assert _leftovers(tmp_path) == []


def _read_only(folder: Path):
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        folder.chmod(0o755)
        pytest.skip("running as root: chmod does not stop writes here (the ENOSPC and failed-"
                    "rename tests cover the same error path)")


def test_leaderboard_read_only_out_is_a_clear_error(built, capsys):
    tmp_path, before = built
    out = tmp_path / "leaderboards"
    _read_only(out)
    try:
        assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert "cannot write the leaderboards to leaderboards/" in err
    assert "writable" in err and "--out DIR" in err
    assert _tree(out) == before
    assert _leftovers(tmp_path) == []


def test_leaderboard_read_only_parent_is_a_clear_error(tmp_path, capsys):
    """The new folder is written beside the old one, so the folder above --out must be
    writable; the message names it."""
    ResultStore(tmp_path / "results").append(synthetic_rows(sizes=SMALL, steps=(1000,)))
    assert _cli("leaderboard", "--no-scaling", "--out", "site/lb", cwd=tmp_path) == 0
    before = _tree(tmp_path / "site" / "lb")
    _read_only(tmp_path / "site")
    try:
        assert _cli("leaderboard", "--no-scaling", "--out", "site/lb", cwd=tmp_path) == 2
    finally:
        (tmp_path / "site").chmod(0o755)
    err = capsys.readouterr().err
    assert f"{tmp_path / 'site'}/, writable" in err
    assert _tree(tmp_path / "site" / "lb") == before


def test_leaderboard_refuses_an_out_that_holds_the_working_folder(tmp_path, capsys):
    """Swapping --out . would move the working folder (and everything in it) away."""
    ResultStore(tmp_path / "results").append(synthetic_rows(sizes=SMALL, steps=(1000,)))
    assert _cli("leaderboard", "--no-scaling", "--out", ".", cwd=tmp_path) == 2
    assert "holds the current folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_leaderboard_rebuild_keeps_foreign_files_and_drops_stale_temp_files(built):
    tmp_path, _ = built
    out = tmp_path / "leaderboards"
    (out / "tasks" / "mine.txt").write_text("mine\n")
    (out / "drafts").mkdir()
    (out / "link").symlink_to("NOTES.txt")
    (out / "tasks" / ".tmp-1234").write_bytes(b"left by an interrupted build")
    assert _cli("leaderboard", "--no-scaling", cwd=tmp_path) == 0
    assert (out / "NOTES.txt").read_text() == "a person's file\n"
    assert (out / "tasks" / "mine.txt").read_text() == "mine\n"
    assert (out / "drafts").is_dir() and os.readlink(out / "link") == "NOTES.txt"
    assert _leftovers(tmp_path) == []
    # the folder agrees with its manifest
    import hashlib

    listed = json.loads((out / MANIFEST_FILE).read_text())["files"]
    for rel, sha in listed.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha, rel


# ---- 2. predict with too few sizes ----------------------------------------------------------
def _predict_options() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {o for a in sub.choices["predict"]._actions for o in a.option_strings}


def test_predict_with_too_few_sizes_fails_with_the_reason(tmp_path, capsys):
    ResultStore(tmp_path / "results").append(
        synthetic_rows(sizes=SMALL + (("10m", 10**7),), steps=(1000,)))
    args = ("predict", "--series", "ladder", "--sizes", "10m", "--n-boot", "5")
    assert _cli(*args, cwd=tmp_path) == 1
    out, err = capsys.readouterr()
    assert "-" not in out.split()  # no table of dashes
    assert "error: no prediction for ladder arc_easy: the power law has 3 parameters" in err
    assert "form=" not in err
    named = set(re.findall(r"--[a-z][a-z-]*", err))
    assert named and named <= _predict_options(), named - _predict_options()
    assert _cli(*args, "--json", cwd=tmp_path) == 1
    records = json.loads(capsys.readouterr().out)
    assert records and all("form=" not in r["error"] for r in records)


def test_predict_names_the_tasks_it_could_not_fit_and_keeps_the_others(tmp_path, capsys):
    sizes = SMALL + (("10m", 10**7), ("30m", 3 * 10**7))
    rows = [r for r in synthetic_rows(sizes=sizes, steps=(1000,))
            if r.task == "arc_easy" or r.size in ("1m", "3m")]
    ResultStore(tmp_path / "results").append(rows)
    assert _cli("predict", "--series", "ladder", "--sizes", "100m", "--n-boot", "5",
                cwd=tmp_path) == 0
    out, err = capsys.readouterr()
    assert "arc_easy" in out and "piqa" not in out
    assert "warning: no prediction for ladder piqa: " in err


# ---- 3. series whose checkpoints are broken -------------------------------------------------
def _checkpoint(folder: Path, *, broken: bool) -> None:
    from safetensors.numpy import save_file

    import numpy as np

    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{" if broken else '{"model_type": "gpt_neox"}')
    save_file({"w": np.zeros((4, 4), np.float32)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text("{}")


def test_series_with_every_checkpoint_broken_exits_non_zero(tmp_path, capsys):
    for step in (0, 100):
        _checkpoint(tmp_path / "s" / "tiny-1k" / f"step{step}", broken=True)
    assert main(["series", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("warning: skipped ") == 2
    assert "error: none of the 2 checkpoint(s) in" in err


def test_series_with_some_checkpoints_broken_names_them(tmp_path, capsys):
    _checkpoint(tmp_path / "s" / "tiny-1k" / "step0", broken=False)
    _checkpoint(tmp_path / "s" / "tiny-1k" / "step100", broken=True)
    assert main(["series", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    assert "tiny-1k@0" in out and "tiny-1k@100" not in out
    assert f"warning: skipped {tmp_path / 's' / 'tiny-1k' / 'step100'}: " in err
    assert "1 of 2 checkpoint(s) skipped" in err


def test_empty_manifest_is_an_error(tmp_path, capsys):
    (tmp_path / "m.yaml").write_text("checkpoints: []\n")
    assert main(["series", str(tmp_path / "m.yaml")]) == 2
    assert "lists no checkpoints" in capsys.readouterr().err


# ---- 4. SIGTERM ends a command like Ctrl-C --------------------------------------------------
_SELF_SIGNAL = textwrap.dedent("""
    import os, signal, sys, time
    import evalsuite.cli.series as series
    from evalsuite.cli import main

    def run(args):
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(30)
        return 0

    series.run = run
    before = signal.getsignal(signal.SIGTERM)
    code = main(["series", "."])
    assert signal.getsignal(signal.SIGTERM) is before, "SIGTERM handler not restored"
    sys.exit(code)
""")


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_prints_interrupted_and_exits_128_plus_signal(tmp_path, sig, code):
    out = subprocess.run([sys.executable, "-c", _SELF_SIGNAL, sig], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == code, out.stderr[-2000:]
    assert "interrupted: finished cells are saved; rerun the same command to resume." in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_sigterm_during_a_run_keeps_finished_cells(tmp_path):
    from conftest import shared_data_path

    from evalsuite.testing import build_tiny_series

    data_dir = shared_data_path("benchmarks")
    series = build_tiny_series(tmp_path / "tiny", sizes=(("14k", 16, 1),), steps=(0, 100, 200),
                               tokens_per_step=1024)
    results = tmp_path / "res"
    rows_file = results / "rows.jsonl"
    cmd = [sys.executable, "-m", "evalsuite", "run", str(series), "--tasks",
           "arc_easy,lambada_openai,copa", "--limit", "20", "--results", str(results),
           "--data-dir", str(data_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (
            rows_file.exists() and rows_file.stat().st_size):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # as soon as the first cell has landed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted: finished cells are saved; rerun the same command to resume." in err
    rows = ResultStore(results).read_rows()
    cells = {r.cell_key for r in rows}
    assert 1 <= len(cells) < 9, "the run should have been stopped midway"
