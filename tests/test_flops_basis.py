"""The FLOPs basis is stated: compute = 6·N·D with N total (default) or non-embedding
parameters, recorded in each row, chosen again at read time, and named on every plot axis."""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT, cli_in, shared_data_path
from evalsuite.records import ResultRow, flops_for, rebase_flops, rebase_flops_frame
from evalsuite.testing import build_tiny_series


def _row(**kw):
    base = dict(checkpoint_id="s-1m@1:fp32", series="s", size="1m", step=1, n_params=1000,
                n_params_nonembedding=300, tokens_seen=10, compute_flops=60_000.0,
                weight_hash=None, precision="fp32", task="t", task_version="1", metric="acc",
                is_primary=True, value=0.5, stderr=0.1, n_samples=10, num_fewshot=0, chance=0.25)
    return ResultRow(**{**base, **kw})


def test_both_bases_from_one_row():
    assert flops_for(1000, 300, 10, "total") == 60_000.0
    assert flops_for(1000, 300, 10, "non-embedding") == 18_000.0
    with pytest.raises(ValueError, match="non-embedding"):
        flops_for(1000, 300, 10, "kaplan")
    r = rebase_flops(_row(), "non-embedding")
    assert r.compute_flops == 18_000.0 and r.flops_basis == "non-embedding"
    assert rebase_flops(r, "total").compute_flops == 60_000.0


def test_frames_rebase_and_unknown_counts_stay_unknown():
    import pandas as pd

    frame = pd.DataFrame([_row().to_dict(), _row(n_params_nonembedding=None).to_dict()])
    out = rebase_flops_frame(frame, "non-embedding")
    assert out["compute_flops"].tolist() == [18_000.0, None]
    assert set(out["flops_basis"]) == {"non-embedding"}
    assert frame["compute_flops"].tolist() == [60_000.0, 60_000.0]  # a copy


def test_run_records_the_basis_and_the_leaderboard_names_it(tmp_path):
    from evalsuite.leaderboard import prepare_leaderboard
    from evalsuite.store import ResultStore

    root = tmp_path / "series"
    build_tiny_series(root, sizes=(("s", 16, 1),), steps=(100,), tokens_per_step=1024)
    data = str(shared_data_path("benchmarks"))
    for basis, out in (("total", "a"), ("non-embedding", "b")):
        assert cli_in(tmp_path, "run", str(root), "--tasks", "copa", "--limit", "2", "--data-dir",
                      data, "--flops-params", basis, "--results", out) == 0
    a, b = (ResultStore(tmp_path / d).read_rows() for d in "ab")
    assert {r.flops_basis for r in a} == {"total"} and {r.flops_basis for r in b} == {"non-embedding"}
    assert a[0].compute_flops == 6 * a[0].n_params * a[0].tokens_seen
    assert b[0].compute_flops == 6 * b[0].n_params_nonembedding * b[0].tokens_seen
    assert a[0].cell_key == b[0].cell_key  # the basis is not a score: the same cell
    data_ne = prepare_leaderboard(a, scaling=False, flops_basis="non-embedding")
    assert data_ne.cells[0].compute_flops == b[0].compute_flops
    assert "N = non-embedding parameters" in data_ne.plots["copa"].x_label
    assert "N = total parameters" in prepare_leaderboard(b, scaling=False).plots["copa"].x_label


def test_scaling_commands_take_the_basis(capsys):
    results = REPO_ROOT / "results"
    fits = {}
    for basis in ("total", "non-embedding"):
        assert cli_in(REPO_ROOT, "fit", "--series", "ladder", "--tasks", "arithmetic_2da",
                      "--n-boot", "0", "--flops-params", basis, "--json",
                      "--results", str(results)) == 0
        fits[basis] = json.loads(capsys.readouterr().out)
    assert fits["total"] != fits["non-embedding"]
