"""``evalsuite obs``: the CLI reads the ObsScaling folder in place and prints tables or JSON."""

from __future__ import annotations

import json

import pytest

from evalsuite.cli import main
from tests.conftest import shared_data_path


@pytest.fixture(scope="module")
def obs_dir():
    return str(shared_data_path("obsscaling"))


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_pca_json_and_env_default(capsys, monkeypatch, obs_dir):
    monkeypatch.setenv("EVALSUITE_OBS_DATA", obs_dir)
    out = _json(capsys, ["obs", "pca", "--json"])  # --data defaults to $EVALSUITE_OBS_DATA
    assert out["n_models"] == 77
    assert out["explained_variance_ratio"] == pytest.approx([0.799, 0.123, 0.045], abs=1.5e-3)
    assert set(out["loadings"]["PC1"]) == {"MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA",
                                           "GSM8K", "XWinograd", "HumanEval"}
    assert main(["obs", "pca", "--data", obs_dir]) == 0
    text = capsys.readouterr().out
    assert "explained variance ratio" in text and "0.799" in text


def test_families_json(capsys, obs_dir):
    out = _json(capsys, ["obs", "families", "--data", obs_dir, "--json"])
    assert out["flops_check"] == {"compared": 75, "mismatches": []}
    pc1 = {ln["family"]: ln for ln in out["lines"] if ln["component"] == "PC1"}
    assert pc1["Llama-2"]["slope"] == pytest.approx(0.521, abs=2e-3)
    assert pc1["Pythia"]["r2"] > 0.98


def test_predict_preregistered_json(capsys, obs_dir):
    out = _json(capsys, ["obs", "predict", "--data", obs_dir, "--target",
                         "base_llm_emergent_capability_eval.csv:word_unscrambling_2_exact_match",
                         "--split", "preregistered", "--bootstrap", "20", "--method", "pc",
                         "--json"])
    test = [p for p in out["predictions"] if p["role"] == "test"]
    assert len(test) == 19
    for p in test:
        assert p["pc_obs_lower"] <= p["pred_pc"] <= p["pc_obs_upper"]
        assert isinstance(p["pc_extrapolated"], bool)
        assert p["equivalent_log10_flops"] is not None
    assert out["metrics"][0]["method"] == "pc" and "coverage_obs" in out["metrics"][0]


def test_backtest_agent_table(capsys, obs_dir):
    assert main(["obs", "backtest", "--data", obs_dir, "--suite", "agent"]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("agent  ABench-OA"))
    assert "closed (no public FLOPs)" in row and "0.0075" in row  # PC test MSE on 5 closed models
    assert "beats log-FLOPs on 0 of 0" in text  # baselines cannot place closed models


def test_select_json(capsys, obs_dir):
    out = _json(capsys, ["obs", "select", "--data", obs_dir, "--budget", "8", "--json"])
    assert out["method"] == "exhaustive"
    assert out["ranking"][0]["n_models"] <= 8


def test_place_our_results(capsys, tmp_path, obs_dir):
    from evalsuite.records import ResultRow
    from evalsuite.store import ResultStore

    scores = {"mmlu": 0.44, "arc_challenge": 0.53, "hellaswag": 0.78, "winogrande": 0.74,
              "truthfulqa_mc2": 0.39, "gsm8k": 0.14}
    rows = [ResultRow(checkpoint_id="ours-7b@final:fp32", series="ours", size="7b", step=None,
                      n_params=7_000_000_000, n_params_nonembedding=None,
                      tokens_seen=2_000_000_000_000, compute_flops=8.4e22, weight_hash=None,
                      precision="fp32", task=t, task_version="1", metric="acc", is_primary=True,
                      value=v, stderr=None, n_samples=100, num_fewshot=0, chance=0.25)
            for t, v in scores.items()]
    ResultStore(tmp_path).append(rows)
    out = _json(capsys, ["obs", "place", "--data", obs_dir, "--results", str(tmp_path), "--json"])
    assert out[0]["model"] == "ours-7b@final:fp32" and out[0]["n_observed"] == 6
    assert 22.5 < out[0]["pc1_equivalent_log10_flops"] < 23.5
    out = _json(capsys, ["obs", "place", "--data", obs_dir, "--results", str(tmp_path), "--json",
                         "--target", "base_llm_emergent_capability_eval.csv:arithmetic_2dm_2_acc",
                         "--bootstrap", "20"])
    row = out[0]
    assert row["obs_lower"] <= row["pred_arithmetic_2dm_2_acc"] <= row["obs_upper"]
    assert isinstance(row["pred_extrapolated"], bool)
    assert 22.5 < row["equivalent_log10_flops"] < 23.5
    png = tmp_path / "map.png"
    assert main(["obs", "place", "--data", obs_dir, "--results", str(tmp_path), "--plot",
                 str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backtest_rank_split_is_per_target(capsys, obs_dir):
    out = _json(capsys, ["obs", "backtest", "--data", obs_dir, "--suite", "v2", "--split",
                         "rank:0.2", "--json"])
    tests = {}
    for res in out["suites"][0]["results"]:
        t = [p for p in res["predictions"] if p["role"] == "test"]
        top = sorted(p["y"] for p in res["predictions"])[-len(t):]
        assert sorted(p["y"] for p in t) == top  # the test set is the top fifth of this target
        tests[res["target"]] = {p["model"] for p in t}
    assert tests["leaderboard_bbh"] != tests["leaderboard_ifeval"]


def test_missing_data_is_a_clear_error(capsys, tmp_path):
    assert main(["obs", "pca", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "EVALSUITE_OBS_DATA" in err


def test_unknown_benchmark_is_a_clear_error(capsys, obs_dir):
    assert main(["obs", "pca", "--data", obs_dir, "--benchmarks", "MMLU,Foo"]) == 2
    err = capsys.readouterr().err
    assert "['Foo']" in err and "available: " in err and "GSM8K" in err
