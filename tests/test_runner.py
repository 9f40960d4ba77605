"""Runner end to end on tiny real models: rows, resume, kill, broken checkpoints, lm-eval equality."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalsuite.cli import main
from evalsuite.records import RESULT_COLUMNS
from evalsuite.store import ResultStore
from evalsuite.testing import build_tiny_series

GOLDEN = Path(__file__).parent / "golden" / "result_row_schema.json"
# One task of each lm-eval request type.
TASKS = ["arc_easy", "lambada_openai", "triviaqa", "lambada_rolling"]
LIMITS = "4"


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("run") / "tiny"
    build_tiny_series(root, sizes=(("14k", 16, 1),), steps=(0, 100, 200), tokens_per_step=1024)
    return root


@pytest.fixture(scope="module")
def data_dir():
    from conftest import shared_data_path

    return shared_data_path("benchmarks")


@pytest.fixture(scope="module")
def first_run(series, data_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    t0 = time.perf_counter()
    code = main(["run", str(series), "--tasks", ",".join(TASKS), "--limit", LIMITS,
                 "--results", str(results), "--data-dir", str(data_dir)])
    return results, code, time.perf_counter() - t0


def test_rows_written_for_every_cell(first_run):
    results, code, _ = first_run
    assert code == 0
    frame = ResultStore(results).to_frame()
    primary = frame[frame.is_primary]
    assert len(primary) == 3 * len(TASKS)
    assert set(primary.task) == set(TASKS)
    assert set(primary.metric) == {"acc", "exact_match/remove_whitespace", "bits_per_byte"}
    assert primary.cell_key.is_unique
    row = primary.iloc[0]
    assert row["series"] == "tiny" and row["size"] == "14k" and row["n_params"] > 0
    assert row.compute_flops == pytest.approx(6 * row.n_params * row.tokens_seen)
    for col in ("versions",):
        assert {"lm_eval", "transformers", "torch", "evalsuite"} <= set(row[col])
    # per-sample Parquet beside the rows
    store = ResultStore(results)
    for key in primary.cell_key:
        samples = store.read_samples(key)
        assert len(samples) == int(LIMITS)
    mc = store.read_samples(primary[primary.task == "arc_easy"].cell_key.iloc[0])
    assert all(len(ll) >= 2 for ll in mc.loglikelihoods)


def test_result_schema_matches_golden_file(first_run):
    results, _, _ = first_run
    line = (results / "rows.jsonl").read_text().splitlines()[0]
    row = json.loads(line)
    schema = {k: type(v).__name__ for k, v in sorted(row.items())}
    golden = json.loads(GOLDEN.read_text())
    assert list(RESULT_COLUMNS) == golden["columns"]
    assert {k: schema[k] for k in golden["types"]} == golden["types"]


def test_second_run_writes_nothing_and_is_fast(first_run, series, data_dir, capsys):
    results, _, _ = first_run
    before = (results / "rows.jsonl").read_bytes()
    capsys.readouterr()
    t0 = time.perf_counter()
    assert main(["run", str(series), "--tasks", ",".join(TASKS), "--limit", LIMITS,
                 "--results", str(results), "--data-dir", str(data_dir)]) == 0
    elapsed = time.perf_counter() - t0
    assert (results / "rows.jsonl").read_bytes() == before
    assert "skipping 12 of 12 cells" in capsys.readouterr().err
    assert elapsed < 30  # "finishes in seconds": no model load, no task build


def test_results_command_table_json_csv(first_run, tmp_path, capsys):
    results, _, _ = first_run
    capsys.readouterr()
    assert main(["results", "--results", str(results), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 12 and all(r["is_primary"] for r in recs)
    assert main(["results", "--results", str(results), "--csv", str(tmp_path / "r.csv")]) == 0
    assert "tiny-14k@200:fp32" in capsys.readouterr().out
    assert (tmp_path / "r.csv").read_text().count("\n") == 13


@pytest.mark.parametrize("engine", ["evalsuite", "hf"])
@pytest.mark.parametrize("task,shots", [("arc_easy", 0), ("arc_easy", 2), ("lambada_openai", 0),
                                        ("triviaqa", 0), ("lambada_rolling", 0)])
def test_same_numbers_as_lm_eval_simple_evaluate(series, data_dir, tmp_path, task, shots, engine):
    """The primary metric equals lm_eval.simple_evaluate with its hf model (1e-6), both engines."""
    import lm_eval

    from evalsuite.tasks.registry import TaskRegistry
    from evalsuite.run.evaluate import empty_task_manager

    ckpt = series / "tiny-14k" / "step200"
    results = tmp_path / "res"
    assert main(["run", str(ckpt), "--tasks", task, "--limit", "3", "--num-fewshot", str(shots),
                 "--results", str(results), "--data-dir", str(data_dir), "--engine", engine]) == 0
    rows = ResultStore(results).to_frame()
    ours = rows[rows.is_primary].iloc[0]
    spec = TaskRegistry(data_dir=data_dir).get(task)
    ref = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={ckpt},dtype=float32", device="cpu", batch_size=8,
        tasks=[TaskRegistry(data_dir=data_dir).build(task)], num_fewshot=shots, limit=3,
        bootstrap_iters=0, task_manager=empty_task_manager())
    res = ref["results"][task]
    key = next(k for k in res if k.split(",")[0] == spec.primary_metric)
    assert ours.value == pytest.approx(res[key], abs=1e-6)
    assert ours.num_fewshot == shots and ours.engine == engine


def _rows(results: Path) -> list[dict]:
    """Complete rows only (a line being written is not yet a row)."""
    p = results / "rows.jsonl"
    if not p.exists():
        return []
    text = p.read_text()
    return [json.loads(x) for x in text[: text.rfind("\n") + 1].splitlines() if x.strip()]


def test_killed_run_resumes_only_missing_cells(series, data_dir, tmp_path):
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "evalsuite", "run", str(series), "--tasks",
           "arc_easy,lambada_openai,copa", "--limit", "20", "--results", str(results),
           "--data-dir", str(data_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not _rows(results):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # as soon as the first cell has landed
    proc.wait()
    before = _rows(results)
    done_before = {r["cell_key"] for r in before}
    assert 1 <= len(done_before) < 9, "the run should have been killed midway"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"skipping {len(done_before)} of 9 cells" in out.stderr
    after = _rows(results)
    assert after[: len(before)] == before  # finished rows untouched
    keys = [r["cell_key"] for r in after if r["is_primary"]]
    assert len(keys) == 9 and len(set(keys)) == 9  # every cell exactly once


def test_broken_checkpoint_is_skipped_and_others_finish(series, data_dir, tmp_path, capsys):
    import shutil

    root = tmp_path / "s"
    shutil.copytree(series, root)
    bad = root / "tiny-14k" / "step100" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    cfg = root / "tiny-14k" / "step200" / "config.json"
    c = json.loads(cfg.read_text())
    c["hidden_size"] = 48  # config that does not match the weights
    cfg.write_text(json.dumps(c))
    results = tmp_path / "res"
    code = main(["run", str(root), "--tasks", "arc_easy", "--limit", "2", "--results", str(results),
                 "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 1
    assert "step100" in err and "truncated" in err
    assert "tiny-14k@200:fp32" in err and "cannot load" in err
    rows = _rows(results)
    assert {r["checkpoint_id"] for r in rows} == {"tiny-14k@0:fp32"}


def test_run_errors_are_clear(series, data_dir, tmp_path, capsys):
    assert main(["run", str(series), "--tasks", "arc_eazy", "--results", str(tmp_path)]) == 2
    assert "Did you mean: arc_easy" in capsys.readouterr().err
    assert main(["run", str(series), "--tasks", "arc_easy", "--precisions", "int2",
                 "--results", str(tmp_path), "--data-dir", str(data_dir)]) == 2
    assert "never silently falls back" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "none"), "--tasks", "arc_easy", "--results", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_no_tuning_gives_the_same_rows(tmp_path, data_dir):
    """``--no-tuning`` (no allocator tuning, template cache or request memo) changes speed only:
    the same cells, keys and numbers."""
    data = str(data_dir)
    root = tmp_path / "series"
    build_tiny_series(root, sizes=(("s", 16, 1),), steps=(0, 100), tokens_per_step=1024)
    out = {}
    for flag in ("tuned", "plain"):
        args = ["run", str(root), "--tasks", "copa,lambada_openai", "--limit", "6", "--data-dir",
                data, "--results", str(tmp_path / flag), "--json"]
        assert main(args + (["--no-tuning"] if flag == "plain" else [])) == 0
        rows = [json.loads(line) for line in (tmp_path / flag / "rows.jsonl").read_text().splitlines()]
        out[flag] = {(r["checkpoint_id"], r["task"], r["metric"]): (r["cell_key"], r["value"], r["stderr"])
                     for r in rows}
    assert out["tuned"] == out["plain"] and len(out["tuned"]) >= 4


def test_shards_partition_the_grid_and_match_one_run(series, data_dir, tmp_path, capsys):
    """--shard I/N: the shards' cells are disjoint, together they are the whole grid, and each
    value equals the unsharded run's; a bad --shard is refused before anything loads."""
    args = ["--tasks", "copa", "--limit", "3", "--data-dir", str(data_dir)]
    assert main(["run", str(series), *args, "--results", str(tmp_path / "all")]) == 0
    whole = {r.cell_key: r.value for r in ResultStore(tmp_path / "all").read_rows() if r.is_primary}
    parts: dict[str, float] = {}
    for i in range(2):
        assert main(["run", str(series), *args, "--shard", f"{i}/2", "--results",
                     str(tmp_path / f"s{i}")]) == 0
        mine = {r.cell_key: r.value for r in ResultStore(tmp_path / f"s{i}").read_rows()
                if r.is_primary}
        assert not set(mine) & set(parts)
        parts.update(mine)
    assert parts == whole and len(whole) == 3
    for bad in ("2/2", "x", "1/0", "-1/3"):
        assert main(["run", str(series), *args, f"--shard={bad}", "--results",
                     str(tmp_path / "bad")]) == 2
    assert "--shard" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
