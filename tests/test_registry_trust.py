"""Which task files may run code (`!function`), and user lm-eval YAMLs that build and score.

`!function` runs Python named by a YAML file. It is honoured in the bundled tasks/ folder, in
--include-path folders and in lm-eval's own task folder (package code), through include:
chains too; a chain that reaches a file anywhere else holding `!function` is refused, before
any of its code runs.
"""

from __future__ import annotations

import json
import shutil

import pytest

from evalsuite.tasks.registry import TaskError, TaskRegistry, _lm_eval_tasks_dir

LOADER = '''
import json
import datasets

def load(path=None, **_):
    examples = json.load(open(path))["examples"]
    return {"test": datasets.Dataset.from_list(examples)}
'''

CODE = '''
import datasets
from pathlib import Path

def load(**_):
    rows = [{"q": f"what is {i} plus one?", "a": str(i + 1)} for i in range(6)]
    return {"test": datasets.Dataset.from_list(rows)}

def shout(ds):
    return ds.map(lambda d: {"q": d["q"].upper()})
'''

TASK = '''task: {task}
custom_dataset: !function utils.load
process_docs: !function utils.shout
output_type: loglikelihood
test_split: test
doc_to_text: "{{{{q}}}}"
doc_to_target: " {{{{a}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
evalsuite:
  primary_metric: acc
  chance: 0.0
'''


def _code_folder(folder, task="mine"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(CODE)
    (folder / f"{task}.yaml").write_text(TASK.format(task=task))
    return folder


class _ConstantLM:
    """lm-eval's LM interface, answering every log-likelihood request with (-1.0, greedy)."""

    def __new__(cls):
        from lm_eval.api.model import LM

        class ConstantLM(LM):
            def loglikelihood(self, requests):
                return [(-1.0, True) for _ in requests]

            def loglikelihood_rolling(self, requests):
                return [-1.0 for _ in requests]

            def generate_until(self, requests):
                return ["" for _ in requests]

        return ConstantLM()


def test_function_in_an_include_folder_builds_and_scores(tmp_path):
    """A valid lm-eval YAML with `!function` and an `evalsuite:` block, from a user folder:
    get(), build() and lm-eval's simple_evaluate all work, and the code did run."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    reg = TaskRegistry(include_paths=[_code_folder(tmp_path / "user")])
    spec = reg.get("mine")
    assert (spec.primary_metric, spec.output_type, spec.source) == (
        "acc", "loglikelihood", f"user:{tmp_path / 'user' / 'mine.yaml'}")
    task = reg.build("mine")
    assert task.task_name == "mine" and len(task.eval_docs) == 6
    assert task.doc_to_text(task.eval_docs[2]) == "WHAT IS 2 PLUS ONE?"  # process_docs ran
    out = lm_eval.simple_evaluate(model=_ConstantLM(), tasks=[task], bootstrap_iters=0,
                                  task_manager=TaskManager(include_defaults=False))
    assert out["results"]["mine"]["acc,none"] == 1.0


def test_function_in_the_bundled_folder_runs(tmp_path):
    reg = TaskRegistry(bundled_dir=_code_folder(tmp_path / "bundled", "own"))
    assert reg.get("own").source.startswith("bundled:")
    assert reg.build("own").doc_to_text(reg.build("own").eval_docs[0]) == "WHAT IS 0 PLUS ONE?"


def test_lm_eval_bbh_zero_shot_yamls_work_from_a_user_folder(tmp_path, shared_data):
    """22 of lm-eval's 27 BBH zero-shot YAMLs hold `!function` (answer filters): copied into a
    user folder they all resolve, and one built on the real local items runs its filters."""
    bbh = shared_data("benchmarks", "bbh")
    user = tmp_path / "bbh"
    shutil.copytree(_lm_eval_tasks_dir() / "bbh" / "zeroshot", user,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (user / "loader.py").write_text(LOADER)
    (user / "my_dates.yaml").write_text(
        "include: date_understanding.yaml\ntask: my_dates\ncustom_dataset: !function loader.load\n"
        f"dataset_kwargs:\n  path: {bbh / 'date_understanding.json'}\n"
        "evalsuite:\n  primary_metric: exact_match\n")
    reg = TaskRegistry(include_paths=[user])
    names = [n for n in reg.names() if (user / f"{n}.yaml").exists()]
    assert len(names) == 28 and "_bbh_zeroshot" not in names  # the group file is not a task
    for name in names:
        spec = reg.get(name)
        assert spec.output_type == "generate_until" and spec.primary_metric == "exact_match"
    task = reg.build("my_dates")
    n_items = len(json.loads((bbh / "date_understanding.json").read_text())["examples"])
    assert len(task.eval_docs) == n_items and task.doc_to_text(task.eval_docs[0]).startswith("Q: ")
    regex_filter = task.config.filter_list[1]["filter"][0]["function"]  # resolved from utils.py
    assert isinstance(regex_filter, type) and regex_filter.__name__ == "MultiChoiceRegexFilter"
    doc = task.eval_docs[0]
    assert regex_filter(regex_pattern=r"(\([A-Z]\))").apply([["so (B) it is"]], [doc]) == [["(B)"]]


def test_include_of_code_outside_trusted_folders_is_refused(tmp_path):
    """A user YAML (directly or through another user file) including a file elsewhere that
    holds `!function` is refused naming both files, and that code never runs."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker = tmp_path / "ran"
    (elsewhere / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                       "def run(doc):\n    return 'pwned'\n")
    (elsewhere / "base.yaml").write_text(
        "dataset_path: json\noutput_type: loglikelihood\ntest_split: test\n"
        "doc_to_text: !function evil.run\ndoc_to_target: ' x'\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "direct.yaml").write_text("include: ../elsewhere/base.yaml\ntask: direct\n")
    (user / "middle.yaml").write_text("include: ../elsewhere/base.yaml\ntask: middle\n")
    (user / "chained.yaml").write_text("include: middle.yaml\ntask: chained\n")
    reg = TaskRegistry(include_paths=[user])
    for name in ("direct", "chained"):
        for call in (reg.get, reg.build):
            with pytest.raises(TaskError) as err:
                call(name)
            msg = str(err.value)
            assert str(user / f"{name}.yaml") in msg and str(elsewhere / "base.yaml") in msg
            assert "`!function`" in msg and "--include-path" in msg
    assert not marker.exists()
    # the same file is fine once its folder is named
    ok = TaskRegistry(include_paths=[user, elsewhere])
    assert ok.get("direct").output_type == "loglikelihood"


def test_include_without_code_from_anywhere_and_code_from_lm_eval_are_allowed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "plain.yaml").write_text("output_type: multiple_choice\nmetric_list:\n  - metric: acc_norm\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "plain_user.yaml").write_text("include: ../elsewhere/plain.yaml\ntask: plain_user\n")
    lm_eval_file = _lm_eval_tasks_dir() / "bbh" / "zeroshot" / "date_understanding.yaml"
    assert "!function" in lm_eval_file.read_text()
    (user / "from_lm_eval.yaml").write_text(f"include: {lm_eval_file}\ntask: from_lm_eval\n")
    reg = TaskRegistry(include_paths=[user])
    assert reg.get("plain_user").primary_metric == "acc_norm"
    assert reg.get("from_lm_eval").output_type == "generate_until"


def test_function_is_refused_where_evalsuite_cannot_place_it(tmp_path):
    (tmp_path / "inline.yaml").write_text(
        "lm_eval_config:\n  task: inline\n  doc_to_text: !function utils.f\nprimary_metric: acc\n")
    reg = TaskRegistry(include_paths=[tmp_path])
    with pytest.raises(TaskError, match=r"inline.yaml: `!function` is not supported inside lm_eval_config"):
        reg.get("inline")
