"""Hugging Face cache folders as checkpoint sources: revisions are steps, the repo name is the
series and size, and a manifest ``hub:`` entry runs offline from the cache with either engine.
Both layouts are built here by hand, as ``snapshot_download`` leaves them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from evalsuite.series import discover_series
from evalsuite.testing import build_tiny_model, perturb_model

HASH_A, HASH_B = "a" * 40, "b" * 40


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf") / "hub"
    repo = root / "models--org--tiny-1k"
    model = build_tiny_model(tmp_path_factory.mktemp("m") / "model", hidden_size=16, num_layers=1)
    later = perturb_model(model, tmp_path_factory.mktemp("m2") / "model", scale=0.1, seed=1)
    for commit, src in ((HASH_A, model), (HASH_B, later)):
        shutil.copytree(src, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "step100").write_text(HASH_A)
    (repo / "refs" / "step200").write_text(HASH_B)
    (repo / "refs" / "main").write_text(HASH_B)  # main is the last step: one checkpoint
    (repo / "blobs").mkdir()
    return root


def test_cache_revisions_are_steps_of_one_series(cache):
    for where in (cache, cache / "models--org--tiny-1k"):
        scan = discover_series(where)
        assert not scan.problems
        assert [(c.series, c.size, c.step, c.revision) for c in scan.checkpoints] == [
            ("tiny", "1k", 100, "step100"), ("tiny", "1k", 200, "step200")]
        assert len({c.weight_hash for c in scan.checkpoints}) == 2


def test_a_snapshot_without_a_ref_is_reported_not_guessed(cache, tmp_path):
    copy = tmp_path / "hub"
    shutil.copytree(cache, copy)
    (copy / "models--org--tiny-1k" / "refs" / "step100").unlink()
    scan = discover_series(copy)
    assert [c.step for c in scan.checkpoints] == [200]
    assert len(scan.problems) == 1 and "step is unknown" in scan.problems[0][1]


@pytest.mark.parametrize("engine", ["evalsuite", "hf"])
def test_manifest_hub_entry_runs_offline_from_the_cache(cache, tmp_path, engine):
    from conftest import shared_data_path

    manifest = tmp_path / "series.yaml"
    manifest.write_text("series: tiny\ncheckpoints:\n"
                        "  - {hub: org/tiny-1k, revision: step100, size: 1k, step: 100}\n")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "evalsuite", "run", str(manifest), "--tasks",
                          "copa", "--limit", "2", "--engine", engine, "--data-dir",
                          str(shared_data_path("benchmarks")), "--results", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "r" / "rows.jsonl").read_text().splitlines()]
    assert rows and {r["checkpoint_source"] for r in rows} == {"hub:org/tiny-1k@step100"}
    assert rows[0]["n_params"] and rows[0]["weight_hash"]  # read from the cached snapshot
