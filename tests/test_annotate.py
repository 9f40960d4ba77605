"""Checkpoint metadata is fixed after the run, never re-scored: a run without tokens, then
``series --tokens-per-step N --annotate`` and ``leaderboard``, gives compute, plots and fits."""

from __future__ import annotations

import json

import pytest

from conftest import cli_in, shared_data_path
from evalsuite.store import ResultStore
from evalsuite.testing import build_tiny_series

SIZES = (("a", 8, 1), ("b", 16, 1), ("c", 24, 1), ("d", 32, 2))


def test_tokens_given_after_the_run_reach_rows_plots_and_fits(tmp_path, monkeypatch, capsys):
    data = str(shared_data_path("benchmarks"))
    root = tmp_path / "series"
    build_tiny_series(root, sizes=SIZES, steps=(100,), tokens_per_step=None)
    assert cli_in(tmp_path, "run", str(root), "--tasks", "copa", "--limit", "4", "--data-dir",
                  data) == 0
    err = capsys.readouterr().err
    assert "have no tokens seen" in err and "--tokens-per-step N --annotate" in err
    store = ResultStore(tmp_path / "results")
    assert all(r.compute_flops is None for r in store.read_rows())
    # without compute the plot falls back to parameters (one step per size) and says why
    from evalsuite.leaderboard import prepare_leaderboard

    spec = prepare_leaderboard(store.read_rows(), scaling=False).plots["copa"]
    assert spec.x_label.startswith("parameters (no compute") and "--annotate" in spec.x_label
    assert len(spec.lines) == 1 and len(spec.lines[0].x) == 4 and spec.n_without_compute == 0
    prepared = prepare_leaderboard(store.read_rows())
    # fits fall back to parameters when compute is unknown, and say so
    pred = prepared.predictions
    assert "against parameters, compute unknown" in pred.note and "--annotate" in pred.note
    assert pred.rows and all(r[pred.columns.index("form")].endswith("in params")
                             for r in pred.rows)
    keys = {r.cell_key for r in store.read_rows()}

    # from here on no model may load
    import evalsuite.run.evaluate as evaluate

    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(evaluate, "load_lm", no_load)
    assert cli_in(tmp_path, "series", str(root), "--tokens-per-step", "1024", "--annotate",
                  "--json") == 0
    out = json.loads(capsys.readouterr().out)[0]
    assert out["annotated"] == 4 and out["checkpoints_given_compute"] == 4
    rows = store.read_rows()
    assert {r.cell_key for r in rows} == keys  # nothing re-scored, no cell changed identity
    for r in rows:
        assert r.tokens_seen == 102_400 and r.compute_flops == pytest.approx(6 * r.n_params * 102_400)
    assert cli_in(tmp_path, "leaderboard", "--out", "lb") == 0
    assert (tmp_path / "lb" / "plots" / "copa.png").is_file()
    predictions = (tmp_path / "lb" / "predictions.md").read_text()
    assert "no rows with compute_flops" not in predictions
    # a rerun of the same grid still skips every cell
    monkeypatch.undo()
    assert cli_in(tmp_path, "run", str(root), "--tasks", "copa", "--limit", "4", "--data-dir",
                  data, "--tokens-per-step", "1024") == 0
    assert "skipping 4 of 4 cells" in capsys.readouterr().err


def test_annotate_needs_a_results_folder(tmp_path, capsys):
    root = tmp_path / "series"
    build_tiny_series(root, sizes=SIZES[:1], steps=(100,), tokens_per_step=None)
    assert cli_in(tmp_path, "series", str(root), "--tokens-per-step", "8", "--annotate") == 2
    assert "no results in results" in capsys.readouterr().err


def test_plots_fall_back_to_steps_when_sizes_have_several():
    import dataclasses

    from evalsuite.leaderboard import prepare_leaderboard
    from evalsuite.testing import synthetic_rows

    rows = [dataclasses.replace(r, compute_flops=None, tokens_seen=None) for r in synthetic_rows()]
    spec = next(iter(prepare_leaderboard(rows, scaling=False).plots.values()))
    assert spec.x_label.startswith("training step (no compute")
    assert spec.lines and all(len(line.x) > 1 for line in spec.lines)
