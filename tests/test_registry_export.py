"""Bundled tasks exported as plain lm-eval YAML: stock lm-eval reads the same documents the
registry builds and gives the same numbers (the lm-eval CLI baseline in benchmarks/ uses this)."""

from __future__ import annotations

import json

import pytest

from conftest import cli_in, shared_data_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    from evalsuite.tasks import TaskRegistry

    return TaskRegistry(data_dir=shared_data_path("benchmarks"))


@pytest.mark.parametrize("name", ["arc_easy", "piqa", "winogrande", "lambada_rolling"])
def test_exported_task_reads_the_documents_the_registry_builds(registry, tmp_path, name):
    from lm_eval.tasks import TaskManager

    from evalsuite.run.keys import fingerprint_task

    path = registry.export_lm_eval_yaml(name, tmp_path, task_name=f"es_{name}")
    assert path.name == f"es_{name}.yaml"
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    (exported,) = manager.load([f"es_{name}"])["tasks"].values()
    ours, theirs = fingerprint_task(registry.build(name)), fingerprint_task(exported)
    assert theirs.data == ours.data and theirs.n_fewshot_pool == ours.n_fewshot_pool
    assert exported.config.metadata["version"] == registry.get(name).version


def test_stock_lm_eval_scores_an_export_as_the_registry_task(registry, tmp_path):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from evalsuite.run.evaluate import empty_task_manager
    from evalsuite.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=2, seed=1)
    lm = HFLM(pretrained=str(model), device="cpu", batch_size=8)
    registry.export_lm_eval_yaml("arc_easy", tmp_path / "tasks", task_name="es_arc_easy",
                                 max_items=12)
    stock = lm_eval.simple_evaluate(
        model=lm, tasks=["es_arc_easy"], bootstrap_iters=0,
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False))
    ours = lm_eval.evaluate(lm=lm, task_dict=empty_task_manager().load([registry.build("arc_easy")]),
                            limit=12, bootstrap_iters=0)
    assert stock["results"]["es_arc_easy"]["acc,none"] == ours["results"]["arc_easy"]["acc,none"]
    assert stock["results"]["es_arc_easy"]["acc_norm,none"] == \
        ours["results"]["arc_easy"]["acc_norm,none"]
    assert stock["n-samples"]["es_arc_easy"]["effective"] == 12


def test_overrides_make_a_variant(registry, tmp_path):
    import yaml

    path = registry.export_lm_eval_yaml("arc_easy", tmp_path, task_name="es_arc_easy_5shot",
                                        max_items=3, overrides={"num_fewshot": 5})
    doc = yaml.safe_load(path.read_text())
    assert doc["num_fewshot"] == 5 and doc["dataset_path"] == "json"
    assert doc["include"].endswith("arc/arc_easy.yaml")
    lines = (tmp_path / "data" / "es_arc_easy_5shot.test.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "question" in json.loads(lines[0])


def test_cli_export_and_its_errors(tmp_path, capsys):
    data = str(shared_data_path("benchmarks"))
    assert cli_in(tmp_path, "tasks", "copa", "--export", "out", "--data-dir", data,
                  "--prefix", "es_", "--json") == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["lm_eval_task"] == "es_copa" and (tmp_path / "out" / "es_copa.yaml").is_file()
    # max_items without local data: named, with the fix
    assert cli_in(tmp_path, "tasks", "copa", "--export", "out2", "--max-items", "3",
                  "--data-dir", "none") == 2
    assert "max_items needs local data" in capsys.readouterr().err
