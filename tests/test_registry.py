"""Task registry: bundled tasks, user folders, lm-eval names, and bad task files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evalsuite.cli import main
from evalsuite.registry import TaskError, TaskRegistry
from evalsuite.datasets import DataError

BUNDLED_REQUIRED = {"arc_easy", "arc_challenge", "piqa", "lambada_openai", "hellaswag", "winogrande",
                    "boolq", "copa", "openbookqa", "arithmetic_2da", "arithmetic_5ds",
                    "mmlu_abstract_algebra", "triviaqa", "lambada_rolling"}


def test_bundled_specs_have_one_primary_metric_and_chance():
    reg = TaskRegistry()
    names = set(reg.names())
    assert BUNDLED_REQUIRED <= names
    types = set()
    for spec in reg.specs():
        assert isinstance(spec.primary_metric, str) and spec.primary_metric
        assert 0.0 <= spec.chance <= 8.0
        types.add(spec.output_type)
    assert types == {"multiple_choice", "loglikelihood", "generate_until", "loglikelihood_rolling"}
    assert reg.get("piqa").chance == 0.5 and reg.get("arc_challenge").primary_metric == "acc_norm"


def test_listing_is_fast_and_does_not_import_lm_eval_tasks():
    code = ("import sys, time; t=time.perf_counter(); from evalsuite.cli import main; "
            "main(['tasks', '--json']); "
            "print('LOADED', 'lm_eval.tasks' in sys.modules, 'torch' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED False False" in out.stderr
    assert len(json.loads(out.stdout)) >= len(BUNDLED_REQUIRED)


def test_any_lm_eval_task_by_name_and_suggestions():
    reg = TaskRegistry()
    spec = reg.get("sciq")  # built into lm-eval, not bundled
    assert spec.source == "lm-eval" and spec.output_type == "multiple_choice"
    with pytest.raises(TaskError, match="Did you mean: .*arc_easy"):
        reg.get("arc_eazy")


def test_unknown_task_on_the_cli(capsys):
    assert main(["tasks", "hellaswagg"]) == 2
    assert "hellaswag" in capsys.readouterr().err


def test_user_folder_tasks_and_malformed_yaml(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "my_arith.yaml").write_text(
        "task: my_arith\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: x.jsonl\n"
        "output_type: loglikelihood\nvalidation_split: validation\ndoc_to_text: '{{context}}'\n"
        "doc_to_target: '{{completion}}'\nmetric_list:\n  - metric: acc\n"
        "evalsuite:\n  primary_metric: acc\n  chance: 0.0\n")
    (good / "my_arith_3shot.yaml").write_text(
        "include: my_arith.yaml\ntask: my_arith_3shot\nnum_fewshot: 3\n")
    reg = TaskRegistry(include_paths=[good])
    spec = reg.get("my_arith")
    assert spec.source.startswith("user:") and spec.primary_metric == "acc"
    assert spec.num_fewshot == 0
    # a user task's own num_fewshot is its default, as lm-eval's CLI would use it
    assert reg.get("my_arith_3shot").num_fewshot == 3

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dup.yaml").write_text("lm_eval_task: arc_easy\nprimary_metric: acc\nprimary_metric: acc_norm\n")
    (bad / "broken.yaml").write_text("lm_eval_task: arc_easy\nprimary_metric: [acc\n")
    (bad / "unknown.yaml").write_text("lm_eval_task: arc_easy\nprimary_metric: acc\nchanse: 0.25\n")
    (bad / "nometric.yaml").write_text("lm_eval_task: arc_easy\n")
    reg = TaskRegistry(include_paths=[bad])
    with pytest.raises(TaskError, match=r"dup.yaml.*duplicate key 'primary_metric'"):
        reg.get("dup")
    with pytest.raises(TaskError, match=r"malformed task file .*broken.yaml"):
        reg.get("broken")
    with pytest.raises(TaskError, match=r"unknown key\(s\) \['chanse'\]"):
        reg.get("unknown")
    with pytest.raises(TaskError, match="missing primary_metric"):
        reg.get("nometric")
    with pytest.raises(TaskError, match="is not a folder"):
        TaskRegistry(include_paths=[tmp_path / "missing"])


def test_data_folder_without_the_task_file(tmp_path, shared_data):
    (tmp_path / "arc").mkdir()
    reg = TaskRegistry(data_dir=tmp_path)
    with pytest.raises(DataError, match=r"arc_easy_test.jsonl is missing"):
        reg.build("arc_easy")
    (tmp_path / "arc" / "arc_easy_test.jsonl").write_text("")
    with pytest.raises(DataError, match="has no items"):
        reg.build("arc_easy")
    (tmp_path / "arc" / "arc_easy_test.jsonl").write_bytes(b'{"question": "\xff\xfe"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        reg.build("arc_easy")


@pytest.mark.parametrize("name,n_items", [
    ("arc_easy", 2376), ("arc_challenge", 1172), ("piqa", 1838), ("hellaswag", 10042),
    ("winogrande", 1267), ("boolq", 3270), ("copa", 100), ("openbookqa", 500),
    ("lambada_openai", 5153), ("arithmetic_2da", 2000), ("mmlu_anatomy", 135), ("triviaqa", 3000)])
def test_bundled_tasks_read_the_real_local_data(name, n_items, shared_data):
    data = shared_data("benchmarks")
    task = TaskRegistry(data_dir=data).build(name)
    docs = list(task.eval_docs)
    assert len(docs) == n_items
    doc = docs[0]
    text = task.doc_to_text(doc)
    assert isinstance(text, (str, int))  # winogrande's doc_to_text is the answer index (partial scoring)
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = task.doc_to_choice(doc)
        target = task.doc_to_target(doc)
        assert len(choices) >= 2
        assert isinstance(target, str) or 0 <= target < len(choices)


def test_local_mappings_match_lm_eval_prompts(shared_data):
    data = shared_data("benchmarks")
    reg = TaskRegistry(data_dir=data)
    copa = reg.build("copa")
    d = copa.eval_docs[0]
    assert copa.doc_to_text(d).endswith((" because", " therefore"))
    wino = reg.build("winogrande")
    d = wino.eval_docs[0]
    assert "_" in d["sentence"] and d["answer"] in ("1", "2")
    arith = reg.build("arithmetic_2da")
    d = arith.eval_docs[0]
    assert arith.doc_to_text(d).startswith("Question: What is ") and arith.doc_to_text(d).endswith("Answer:")
