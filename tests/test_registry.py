"""Task registry: bundled tasks, user folders, lm-eval names, and bad task files."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys

import pytest

from evalsuite.tasks import registry as registry_module
from evalsuite.cli import main
from evalsuite.tasks.registry import TaskError, TaskRegistry, lm_eval_task_index
from evalsuite.tasks.adapters import DataError

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
    lm_eval_task_index()  # the on-disk index exists from here on (built once per lm-eval install)
    code = ("import sys, time; t=time.perf_counter(); from evalsuite.cli import main; "
            "main(['tasks', '--json']); "
            "print('LOADED', 'lm_eval.tasks' in sys.modules, 'torch' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED False False" in out.stderr
    assert len(json.loads(out.stdout)) >= len(BUNDLED_REQUIRED)


def test_built_in_names_come_from_the_cached_index_without_lm_eval():
    """A built-in name resolves from the on-disk index in a fresh process: no lm-eval import,
    so no 12 s re-index. Names with parentheses (missed by a text scan) resolve too."""
    lm_eval_task_index()
    code = ("import sys; from evalsuite.tasks.registry import TaskRegistry; r = TaskRegistry(); "
            "s = r.get('tmmluplus_education_(profession_level)'); g = r.get('gsm8k'); "
            "print(s.output_type, g.output_type, g.primary_metric, 'lm_eval.tasks' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["multiple_choice", "generate_until", "exact_match", "False"]


def test_python_class_tasks_groups_and_tags_are_refused_with_the_reason():
    reg = TaskRegistry()
    with pytest.raises(TaskError, match=r"'squadv2' is a Python-class lm-eval task .*squadv2/task.SQuAD2"):
        reg.get("squadv2")
    with pytest.raises(TaskError, match="'squadv2' is a Python-class"):
        reg.build("squadv2")  # refused before lm-eval runs its code or downloads anything
    with pytest.raises(TaskError, match=r"'mmlu' is an lm-eval group of \d+ tasks"):
        reg.get("mmlu")
    with pytest.raises(TaskError, match=r"'ai2_arc' is an lm-eval tag of 2 tasks \(e.g. arc_challenge"):
        reg.get("ai2_arc")


def test_a_spec_wrapping_a_python_class_task_names_its_file(tmp_path):
    """A spec YAML that wraps one is refused the same way, naming the file."""
    (tmp_path / "sq.yaml").write_text("lm_eval_task: squadv2\nprimary_metric: exact\n")
    with pytest.raises(TaskError, match=r"sq.yaml: lm_eval_task 'squadv2' is a Python-class"):
        TaskRegistry(include_paths=[tmp_path]).get("sq")


def test_index_cache_is_keyed_by_lm_eval_version_and_install_path(tmp_path, monkeypatch):
    """The index is built once per lm-eval install and read back from disk afterwards; a cache
    written for another install (or tampered to point outside lm-eval's folder) is rebuilt."""
    calls = []
    root = registry_module._lm_eval_tasks_dir()

    def fake_build(r):
        calls.append(r)
        return {"fake_task": {"kind": "task", "path": "arc/arc_easy.yaml", "output_type": "multiple_choice",
                              "metrics": [["acc", True]], "version": 1.0, "num_fewshot": None}}

    monkeypatch.setattr(registry_module, "_build_builtin_entries", fake_build)
    monkeypatch.setattr(registry_module, "_INDEX_MEMO", {})
    cache_dir = tmp_path / "cache"
    assert lm_eval_task_index(cache_dir) == {"fake_task": str(root / "arc/arc_easy.yaml")}
    [cache] = cache_dir.glob("lm_eval_index-*.json")
    assert registry_module._lm_eval_version() in cache.name and len(calls) == 1
    registry_module._INDEX_MEMO.clear()  # a new process: reads the file, builds nothing
    lm_eval_task_index(cache_dir)
    assert len(calls) == 1
    data = json.loads(cache.read_text())
    for key, value in [("root", "/elsewhere/lm_eval/tasks"), ("lm_eval", "0.0.1")]:
        cache.write_text(json.dumps({**data, key: value}))  # written for another install
        registry_module._INDEX_MEMO.clear()
        calls.clear()
        lm_eval_task_index(cache_dir)
        assert len(calls) == 1 and json.loads(cache.read_text())[key] == data[key]
    tampered = {**data, "entries": {"fake_task": {**data["entries"]["fake_task"], "path": "../../evil.yaml"}}}
    cache.write_text(json.dumps(tampered))
    registry_module._INDEX_MEMO.clear()
    calls.clear()
    assert lm_eval_task_index(cache_dir)["fake_task"].endswith("arc/arc_easy.yaml") and len(calls) == 1


def test_read_only_home_still_resolves_names(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")  # mkdir under a file fails even as root, like a read-only home
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(registry_module, "_INDEX_MEMO", {})
    monkeypatch.setattr(registry_module, "_build_builtin_entries", lambda root: {
        "fake_task": {"kind": "task", "path": "arc/arc_easy.yaml", "output_type": "multiple_choice",
                      "metrics": [["acc", True]], "version": 1.0, "num_fewshot": None}})
    spec = TaskRegistry().get("fake_task")
    assert spec.output_type == "multiple_choice" and spec.source == "lm-eval"
    assert not list(tmp_path.rglob("lm_eval_index-*"))


def test_any_lm_eval_task_by_name_and_suggestions():
    reg = TaskRegistry()
    spec = reg.get("sciq")  # built into lm-eval, not bundled
    assert spec.source == "lm-eval" and spec.output_type == "multiple_choice"
    with pytest.raises(TaskError, match="Did you mean: .*arc_easy") as err:
        reg.get("arc_eazy")  # arc_easy is both bundled and an lm-eval name: suggested once
    suggested = re.search(r"Did you mean: (.*)\?", str(err.value)).group(1).split(", ")
    assert suggested.count("arc_easy") == 1 and len(suggested) == len(set(suggested))


def test_unknown_task_on_the_cli(capsys):
    assert main(["tasks", "hellaswagg"]) == 2
    assert "hellaswag" in capsys.readouterr().err


def test_user_folder_tasks_and_malformed_yaml(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    data = tmp_path / "x.jsonl"
    data.write_text("".join(json.dumps({"context": f"{i} + 1 =", "completion": f" {i + 1}"}) + "\n"
                            for i in range(4)))
    (good / "my_arith.yaml").write_text(
        f"task: my_arith\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: {data}\n"
        f"  cache_dir: {tmp_path / 'hf_cache'}\n"
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
    # the evalsuite: block never reaches lm-eval's TaskConfig, also through include:
    for name in ("my_arith", "my_arith_3shot"):
        task = reg.build(name)
        assert task.task_name == name and len(task.eval_docs) == 4
        assert task.doc_to_text(task.eval_docs[1]) == "1 + 1 =" and "evalsuite" not in task.config.to_dict()
    (good / "bad_block.yaml").write_text("include: my_arith.yaml\ntask: bad_block\nevalsuite:\n  chanse: 0.5\n")
    with pytest.raises(TaskError, match=r"bad_block.yaml: unknown key\(s\) under evalsuite: \['chanse'\]"):
        TaskRegistry(include_paths=[good]).get("bad_block")

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


# ---- bad records in local data: an error naming file, line and field, or a counted skip ----

def _piqa_copy(tmp_path, shared_data, n=12):
    """The first ``n`` real PIQA items, in a scratch data folder laid out like the real one."""
    src = shared_data("benchmarks", "piqa")
    dst = tmp_path / "data" / "piqa"
    dst.mkdir(parents=True)
    items = (src / "valid.jsonl").read_text().splitlines()[:n]
    labels = (src / "valid-labels.lst").read_text().split()[:n]
    (dst / "valid.jsonl").write_text("\n".join(items) + "\n")
    (dst / "valid-labels.lst").write_text("\n".join(labels) + "\n")
    return tmp_path / "data", dst


def _set_label(folder, item, value):
    labels = (folder / "valid-labels.lst").read_text().split()
    labels[item - 1] = value
    (folder / "valid-labels.lst").write_text("\n".join(labels) + "\n")


@pytest.mark.parametrize("item", [8, 1])  # item 8 was scored as wrong, item 1 a traceback
def test_out_of_range_label_names_file_line_and_field(item, tmp_path, shared_data):
    data, piqa = _piqa_copy(tmp_path, shared_data)
    _set_label(piqa, item, "7")
    with pytest.raises(DataError) as err:
        TaskRegistry(data_dir=data).build("piqa")
    msg = str(err.value)
    assert f"valid.jsonl:{item} (label from {piqa / 'valid-labels.lst'}:{item})" in msg
    assert "field 'label'" in msg and "gives 7, outside the 2 choices" in msg and "1 bad record" in msg


def test_missing_field_and_unreadable_label_are_errors_not_tracebacks(tmp_path, shared_data):
    data, piqa = _piqa_copy(tmp_path, shared_data)
    lines = (piqa / "valid.jsonl").read_text().splitlines()
    rec = json.loads(lines[2])
    del rec["goal"]
    lines[2] = json.dumps(rec)
    (piqa / "valid.jsonl").write_text("\n".join(lines) + "\n")
    _set_label(piqa, 5, "x")
    with pytest.raises(DataError) as err:
        TaskRegistry(data_dir=data).build("piqa")
    msg = str(err.value)
    assert "2 bad record(s)" in msg
    assert f"{piqa / 'valid.jsonl'}:3 (label from {piqa / 'valid-labels.lst'}:3): field 'goal': missing" in msg
    assert "valid.jsonl:5" in msg and "field 'label': 'x' is not an integer" in msg


def test_records_missing_a_template_field_or_with_a_bad_answer_key(tmp_path, shared_data):
    """A plain-schema record lacking a field lm-eval's template reads (it would render "None"
    or fail at scoring) and an ARC answer key that is not among the labels."""
    src = shared_data("benchmarks", "arc", "arc_easy_test.jsonl")
    (tmp_path / "arc").mkdir()
    rows = [json.loads(line) for line in src.read_text().splitlines()[:10]]
    del rows[3]["question"]
    rows[6]["answerKey"] = "Z"
    (tmp_path / "arc" / "arc_easy_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        TaskRegistry(data_dir=tmp_path).build("arc_easy")
    msg = str(err.value)
    assert "arc_easy_test.jsonl:4: field 'question': missing" in msg
    assert re.search(r"arc_easy_test.jsonl:7: field '.*answerKey.*': doc_to_target fails", msg)


def test_bad_few_shot_record_is_found_too(tmp_path, shared_data):
    mmlu = shared_data("benchmarks", "mmlu")
    for split in ("test", "dev"):
        (tmp_path / "mmlu" / split).mkdir(parents=True)
        shutil.copy(mmlu / split / f"anatomy_{split}.csv", tmp_path / "mmlu" / split)
    dev = tmp_path / "mmlu" / "dev" / "anatomy_dev.csv"
    lines = dev.read_text().splitlines(keepends=True)
    lines[2] = re.sub(r",\d\s*$", ",9\n", lines[2])  # the second dev item: answer index 9 of 4
    dev.write_text("".join(lines))
    with pytest.raises(DataError, match=r"anatomy_dev.csv:3: field 'answer': doc_to_target gives 9, outside the 4"):
        TaskRegistry(data_dir=tmp_path).build("mmlu_anatomy")


def test_skip_bad_items_drops_logs_and_counts(tmp_path, shared_data, caplog):
    data, piqa = _piqa_copy(tmp_path, shared_data)
    _set_label(piqa, 1, "7")
    _set_label(piqa, 8, "-1")
    _set_label(piqa, 10, "x")
    reg = TaskRegistry(data_dir=data, skip_bad_items=True)
    with pytest.raises(TaskError, match="has not been built"):
        reg.skipped_items("piqa")
    with caplog.at_level(logging.WARNING, logger="evalsuite.tasks.registry"):
        task = reg.build("piqa")
    assert reg.skipped_items("piqa") == 3
    docs = list(task.eval_docs)
    assert len(docs) == 9 and all(d["label"] in (0, 1) for d in docs)
    for line in (1, 8, 10):
        assert f"skipped bad record {piqa / 'valid.jsonl'}:{line} " in caplog.text
    clean = TaskRegistry(data_dir=shared_data("benchmarks"), skip_bad_items=True)
    clean.build("copa")
    assert clean.skipped_items("copa") == 0
