"""Any lm-eval task whose dataset the data folder holds runs offline with lm-eval's own task
definition, with no --data-dir (the folder beside the project is the default), and scores
what ``lm_eval.simple_evaluate`` scores on the same local documents."""

from __future__ import annotations

import json

import pytest

from conftest import cli_in, shared_data_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIMIT = 3
#: one task per family: (task, shots, primary metric key in lm-eval's results)
FAMILIES = [("mmlu_astronomy", 5, "acc,none"), ("bbh_fewshot_navigate", None, "exact_match,none"),
            ("bbh_cot_fewshot_navigate", None, "exact_match,get-answer"),
            ("gsm8k", None, "exact_match,strict-match"), ("triviaqa", None, "exact_match,remove_whitespace"),
            ("bigbench_persian_idioms_multiple_choice", None, "acc,none"),
            ("bigbench_repeat_copy_logic_generate_until", None, "exact_match,none")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from evalsuite.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("offline") / "tiny-1k", hidden_size=32,
                            num_layers=1, seed=2)


@pytest.mark.parametrize("task,shots,key", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_lm_eval_task_runs_offline_and_matches_simple_evaluate(task, shots, key, model, tmp_path,
                                                                monkeypatch, capsys):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from evalsuite.cli._common import DEFAULT_DATA_DIR
    from evalsuite.tasks import TaskRegistry

    data = shared_data_path("benchmarks")
    if DEFAULT_DATA_DIR.resolve() != data.resolve():
        pytest.skip(f"the default data folder {DEFAULT_DATA_DIR} is not the shared data {data}")
    monkeypatch.delenv("EVALSUITE_DATA_DIR", raising=False)
    args = ["run", str(model), "--tasks", task, "--limit", str(LIMIT), "--engine", "hf",
            "--results", str(tmp_path / "res"), "--json"]
    if shots is not None:
        args += ["--num-fewshot", str(shots)]
    assert cli_in(tmp_path, *args) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "res" / "rows.jsonl").read_text().splitlines()]
    primary = next(r for r in rows if r["is_primary"])

    # stock lm-eval on the same local documents (the task exported as plain lm-eval YAML)
    TaskRegistry(data_dir=data).export_lm_eval_yaml(task, tmp_path / "exp", task_name=f"es_{task}")
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(model), device="cpu", batch_size=8), tasks=[f"es_{task}"],
        limit=LIMIT, num_fewshot=shots, bootstrap_iters=0,
        task_manager=TaskManager(include_path=str(tmp_path / "exp"), include_defaults=False))
    metric, filt = key.split(",")
    assert primary["metric"] == (metric if filt == "none" else f"{metric}/{filt}")
    assert primary["value"] == out["results"][f"es_{task}"][key]
    assert primary["n_samples"] == LIMIT


def test_tasks_offline_lists_every_mmlu_subject_and_bbh_task(capsys):
    data = str(shared_data_path("benchmarks"))
    assert cli_in(shared_data_path(), "tasks", "--offline", "--data-dir", data, "--json") == 0
    names = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    mmlu = [n for n in names if n.startswith("mmlu_") and not n.endswith(
        ("_continuation", "_generative")) and names[n]["source"] == "lm-eval"
        and names[n]["output_type"] == "multiple_choice"]
    assert len(mmlu) >= 57 - 6  # the six bundled subjects are listed under their bundled spec
    assert all(names[n]["chance"] == 0.25 for n in mmlu)  # from the four fixed choices
    assert len([n for n in names if n.startswith("bbh_fewshot_")]) == 27
    assert {"gsm8k", "gsm8k_cot", "triviaqa", "lambada_openai", "arc_easy"} <= set(names)


def test_offline_without_a_copy_is_one_line_naming_the_dataset_and_the_fix(tmp_path, model, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli_in(tmp_path, "run", str(model), "--tasks", "sciq", "--limit", "2", "--data-dir",
                  str(empty), "--results", str(tmp_path / "res"))
    err = capsys.readouterr().err
    assert code != 0
    assert "allenai/sciq" in err and "--data-dir" in err and "Traceback" not in err


def test_bigbench_rows_are_built_as_the_hub_dataset_holds_them():
    """hails/bigbench arithmetic_zero_shot row 0 (the BIG-bench 1.0.0 formatting: choices sorted,
    then permuted by RandomState(42) per example; the DummyModel transcript in BIG-bench's
    task_metadata.json shows the same order)."""
    from evalsuite.tasks.adapters import read_bigbench

    root = shared_data_path("benchmarks", "bigbench")
    r = read_bigbench(root / "arithmetic" / "task.json")
    assert len(r.rows) == 15023 and not r.bad   # 20 subtasks, PROVENANCE.md's count
    assert r.rows[0] == {
        "idx": 0, "targets": ["0"],
        "inputs": "Q: What is 0 plus 0?\n  choice: 0\n  choice: 1\n  choice: house\n  choice: 2"
                  "\n  choice: banana\n  choice: 859\nA:",
        "multiple_choice_targets": ["2", "1", "859", "banana", "house", "0"],
        "multiple_choice_scores": [0, 0, 0, 0, 0, 1]}
    w = read_bigbench(root / "word_unscrambling" / "task.json")
    assert w.rows[0]["inputs"].endswith("English word \nA:")   # inner whitespace kept
    rc = read_bigbench(root / "repeat_copy_logic" / "task.json")
    assert rc.rows[0]["inputs"].startswith("repeat with logic:\n\nQ: ")


def test_tasks_offline_lists_the_bigbench_tasks_in_the_folder(capsys):
    data = str(shared_data_path("benchmarks"))
    assert cli_in(shared_data_path(), "tasks", "--offline", "--data-dir", data, "--json") == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert {"bigbench_arithmetic_generate_until", "bigbench_arithmetic_multiple_choice",
            "bigbench_modified_arithmetic_generate_until",
            "bigbench_word_unscrambling_generate_until",
            "bigbench_international_phonetic_alphabet_transliterate_generate_until",
            "bigbench_parsinlu_qa_multiple_choice"} <= names
