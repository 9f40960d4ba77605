"""Precision through the runner and the CLI: rows say what was applied, models are never reused
across a quantized load, fp16 overflow is flagged, compare and frontier read the results."""

from __future__ import annotations

import json

import pytest

from evalsuite.cli import main
from evalsuite.records import SCHEMA_VERSION
from evalsuite.store import ResultStore
from evalsuite.testing import build_tiny_model, build_tiny_series

TASK = "arc_easy"


@pytest.fixture(scope="module")
def data_dir():
    from conftest import shared_data_path

    return shared_data_path("benchmarks")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("prec") / "tiny"
    build_tiny_series(root, sizes=(("s", 32, 1),), steps=(0, 100), tokens_per_step=1024)
    return root


def _run(path, results, data_dir, *extra):
    return main(["run", str(path), "--tasks", TASK, "--limit", "5", "--results", str(results),
                 "--data-dir", str(data_dir), *extra])


@pytest.fixture(scope="module")
def run_two(series, data_dir, tmp_path_factory):
    """Two checkpoints x (fp32, int4) with the engine that reuses model objects across loads."""
    results = tmp_path_factory.mktemp("res")
    code = _run(series, results, data_dir, "--precisions", "fp32,int4-b16", "--engine", "evalsuite")
    return results, code


def test_rows_record_the_precision_and_its_proof(run_two):
    results, code = run_two
    assert code == 0
    rows = ResultStore(results).to_frame()
    rows = rows[rows.is_primary]
    assert sorted(set(rows.precision)) == ["fp32", "int4-b16"]
    q = rows[rows.precision == "int4-b16"]
    f = rows[rows.precision == "fp32"]
    assert len(q) == len(f) == 2
    assert (q.bits_per_param == 5.0).all() and (f.bits_per_param == 32.0).all()
    assert q.precision_library.str.startswith("torchao").all()
    assert (q.weights_changed_frac > 0.9).all() and (q.weights_max_abs_change > 0).all()
    assert (q.model_bits < 0.5 * f.model_bits.to_numpy()).all()  # embeddings stay fp32
    assert (rows.n_nonfinite == 0).all() and (rows.schema_version == SCHEMA_VERSION).all()
    assert all(cid.endswith(":int4-b16") for cid in q.checkpoint_id)


def _lls(results, precision, step):
    store = ResultStore(results)
    rows = store.to_frame()
    r = rows[(rows.precision == precision) & (rows.step == step) & rows.is_primary].iloc[0]
    return [float(v) for x in store.read_samples(r.cell_key).loglikelihoods for v in x]


def test_int4_changes_the_loglikelihoods(run_two):
    results, _ = run_two
    for step in (0, 100):
        a, b = _lls(results, "fp32", step), _lls(results, "int4-b16", step)
        assert max(abs(x - y) for x, y in zip(a, b)) > 1e-4


def test_no_model_object_reused_across_a_quantized_load(run_two, series, data_dir, tmp_path):
    """step100 at fp32 is loaded right after step0 at int4: its numbers must equal a fresh load."""
    results, _ = run_two
    fresh = tmp_path / "fresh"
    assert _run(series / "tiny-s" / "step100", fresh, data_dir, "--engine", "evalsuite") == 0
    assert _lls(results, "fp32", 100) == pytest.approx(_lls(fresh, "fp32", 100), abs=1e-6)


def test_hf_engine_gives_the_same_int4_numbers(run_two, series, data_dir, tmp_path):
    results, _ = run_two
    hf = tmp_path / "hf"
    assert _run(series / "tiny-s" / "step0", hf, data_dir, "--precisions", "int4-b16") == 0
    a, b = _lls(results, "int4-b16", 0), _lls(hf, "int4-b16", 0)
    assert a == pytest.approx(b, abs=1e-4)


def test_compare_and_frontier_cli(run_two, capsys):
    results, _ = run_two
    capsys.readouterr()
    assert main(["compare", "--precision", "int4-b16", "--against", "fp32", "--results",
                 str(results), "--json", "--iters", "200"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 2 and {r["step"] for r in recs} == {0, 100}
    for r in recs:
        assert r["lower"] <= r["delta"] <= r["upper"] and r["n"] == 5
        assert r["delta"] == pytest.approx(r["value"] - r["reference"])
        assert r["verdict"] in ("within", "worse", "better")
    assert main(["compare", "--precision", "int4-b16", "--results", str(results),
                 "--measure", "loglik", "--iters", "200"]) == 0
    out = capsys.readouterr().out
    assert "loglik" in out and "paired bootstrap" in out
    assert main(["frontier", "--results", str(results), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all(r["step"] == 100 for r in front)
    bits = [r["model_bits"] for r in front]
    assert bits == sorted(bits) and front[0]["precision"] == "int4-b16"
    # asking for a precision that was not run names what is there
    assert main(["compare", "--precision", "int8", "--results", str(results)]) == 2
    assert "int4-b16" in capsys.readouterr().err


def test_unsupported_precision_fails_before_loading(series, data_dir, tmp_path, capsys):
    for bad in ("int2", "fp8", "int4-b0"):
        assert _run(series, tmp_path, data_dir, "--precisions", f"fp32,{bad}") == 2
        assert "never silently falls back" in capsys.readouterr().err or bad == "int4-b0"
    assert not (tmp_path / "rows.jsonl").exists()


def test_precision_that_cannot_apply_is_a_loud_failure(series, data_dir, tmp_path, capsys):
    """int4 (block 64) does not divide this model's width 32: no rows, exit 1, the fix named."""
    assert _run(series / "tiny-s" / "step0", tmp_path, data_dir, "--precisions", "int4") == 1
    err = capsys.readouterr().err
    assert "block size 64 does not divide" in err and "int4-b32" in err
    assert not (tmp_path / "rows.jsonl").exists() or not any(
        "int4" in line for line in (tmp_path / "rows.jsonl").read_text().splitlines())


def test_fp16_overflow_is_counted_and_never_averaged(data_dir, tmp_path):
    """Output weights scaled so fp16 logits overflow: every item is flagged, no value stored."""
    import torch
    from safetensors.torch import load_file, save_file

    path = build_tiny_model(tmp_path / "hot", hidden_size=16, num_layers=1, num_heads=1)
    w = load_file(path / "model.safetensors")
    w["embed_out.weight"] = (w["embed_out.weight"] * 1e6).contiguous()
    save_file(w, path / "model.safetensors", metadata={"format": "pt"})
    results = tmp_path / "res"
    assert _run(path, results, data_dir, "--precisions", "fp16") == 0
    rows = ResultStore(results).to_frame()
    rows = rows[rows.is_primary].set_index("precision")
    assert rows.loc["fp16", "n_nonfinite"] == 5
    assert rows.loc["fp16", "value"] is None or rows.loc["fp16", "value"] != rows.loc["fp16", "value"]
    assert rows.loc["fp16", "n_samples"] == 0
    samples = ResultStore(results).read_samples(rows.loc["fp16", "cell_key"])
    assert samples.nonfinite.all()
    # the same weights in fp32 score finitely: the overflow is fp16's
    model = _load_fp32(path)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(torch.log_softmax(logits, -1)).all()


def _load_fp32(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_partial_overflow_is_left_out_of_the_mean():
    import math

    import pandas as pd

    from evalsuite.run.keys import TaskFingerprint
    from evalsuite.records import Checkpoint, RunConfig, TaskSpec
    from evalsuite.run.plan import Cell
    from evalsuite.run.rows import cell_statistics, rows_for_cell

    class _Task:  # what cell_statistics reads of an lm-eval task
        config = type("C", (), {"filter_list": None})()

        @staticmethod
        def aggregation():
            from lm_eval.api.metrics import mean
            return {"acc": mean}

    ck = Checkpoint(series="t", size="s", step=1, source="x", n_params=100, precision="fp16")
    spec = TaskSpec(name="t1", lm_eval_task="t1", primary_metric="acc", chance=0.25)
    lls = [[-1.0, -2.0], [math.nan, -1.0], [-1.0, -3.0], [-2.0, -1.0], [math.inf, -1.0]]
    samples = [{"doc_id": i, "filter": "none", "resps": [[(ll, False)] for ll in pair],
                "acc": acc} for i, (pair, acc) in enumerate(zip(lls, [1, 1, 1, 0, 1]))]
    config = RunConfig(tasks=("t1",))
    scores = cell_statistics(_Task(), samples, {"acc,none": 0.8, "acc_stderr,none": "N/A"},
                             config)
    rows = rows_for_cell(Cell(ck, spec, "k", TaskFingerprint("c", "d", 5)), scores, config,
                         wall_time_s=1.0, batch_size="1", versions={})
    (row,) = rows
    assert row.n_nonfinite == 2 and row.n_samples == 3
    assert row.value == pytest.approx(2 / 3)
    assert row.bits_per_param == 16.0 and row.model_bits == 1600.0


def test_each_metric_direction_is_lm_evals():
    """A secondary metric's higher_is_better is what the lm-eval task says, never a guess from
    its name: before, any metric containing "ter" (``letter_acc``) was marked lower-is-better."""
    from lm_eval.api.metrics import mean

    from evalsuite.records import Checkpoint, RunConfig, TaskSpec
    from evalsuite.run.keys import TaskFingerprint
    from evalsuite.run.plan import Cell
    from evalsuite.run.rows import cell_statistics, rows_for_cell

    class _Task:
        config = type("C", (), {"filter_list": None})()

        @staticmethod
        def aggregation():
            return {"acc": mean, "letter_acc": mean, "word_perplexity": mean}

        @staticmethod
        def higher_is_better():
            return {"acc": True, "letter_acc": True, "word_perplexity": False}

    ck = Checkpoint(series="t", size="s", step=1, source="x", n_params=100, precision="fp32")
    spec = TaskSpec(name="t1", lm_eval_task="t1", primary_metric="acc", chance=0.25)
    samples = [{"doc_id": i, "filter": "none", "resps": [[(-1.0, False)]], "acc": a,
                "letter_acc": a, "word_perplexity": 2.0} for i, a in enumerate([1, 0, 1])]
    config = RunConfig(tasks=("t1",))
    scores = cell_statistics(_Task(), samples, {"acc,none": 2 / 3, "letter_acc,none": 2 / 3,
                                                "word_perplexity,none": 2.0}, config)
    rows = rows_for_cell(Cell(ck, spec, "k", TaskFingerprint("c", "d", 5)), scores, config,
                         wall_time_s=1.0, batch_size="1", versions={})
    assert {r.metric: r.higher_is_better for r in rows} == {
        "acc": True, "letter_acc": True, "word_perplexity": False}
