"""The cell key sees every input that changes a number, and nothing that does not.

Each ingredient of :mod:`evalsuite.run.keys` is changed in turn and the cell must be re-scored;
each non-ingredient (batch size, device, engine) is changed and the cell must be skipped. The
end-to-end cases ran "nothing to do" and kept stale scores before the key was widened.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from evalsuite.cli import main
from evalsuite.run.keys import fingerprint_task
from evalsuite.records import RunConfig
from evalsuite.tasks.registry import TaskRegistry
from evalsuite.run.plan import RunError, plan_cells, unique_checkpoints
from evalsuite.series import discover_series
from evalsuite.store import ResultStore
from evalsuite.testing import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import shared_data_path

    src = shared_data_path("benchmarks", "arc")
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(src, root / "arc")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny-14k" / "step100", seed=1)


def _key(model_dir, data_dir, config=None, registry=None, task="arc_easy"):
    registry = registry or TaskRegistry(data_dir=data_dir)
    spec = registry.get(task)
    fp = {task: fingerprint_task(registry.build(task))}
    ckpt = discover_series(model_dir).checkpoints[0]
    config = config or RunConfig(tasks=(task,))
    return plan_cells([ckpt], [spec], config, fp)[0].key


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_settings_that_change_numbers_are_ingredients(model, data_dir):
    base = RunConfig(tasks=("arc_easy",))
    k0 = _key(model, data_dir, base)
    for change in (dict(num_fewshot=2), dict(limit=3), dict(seed=7), dict(bootstrap_iters=10),
                   dict(precisions=("bf16",)), dict(skip_bad_items=True)):
        assert _key(model, data_dir, dataclasses.replace(base, **change)) != k0, change
    for same in (dict(batch_size=1), dict(batch_size="auto"), dict(device="cuda"),
                 dict(engine="hf"), dict(engine="evalsuite")):
        if same.get("device") == "cuda":
            same["precisions"] = ("fp32",)  # auto would resolve to bf16 on CUDA
        assert _key(model, data_dir, dataclasses.replace(base, **same)) == k0, same


def test_data_content_is_an_ingredient(model, data_dir, tmp_path):
    k0 = _key(model, data_dir)
    moved = _copy(data_dir, tmp_path / "same")
    assert _key(model, moved) == k0  # the same documents in another folder: same numbers
    rev = _copy(data_dir, tmp_path / "rev")
    f = rev / "arc" / "arc_easy_test.jsonl"
    f.write_text("".join(reversed(f.read_text().splitlines(keepends=True))))
    assert _key(model, rev) != k0


def test_tokenizer_weights_and_config_are_ingredients(model, data_dir, tmp_path):
    k0 = _key(model, data_dir)
    tok = _copy(model.parent.parent, tmp_path / "tok") / "tiny-14k" / "step100"
    cfg = json.loads((tok / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 77
    (tok / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert _key(tok, data_dir) != k0
    conf = _copy(model.parent.parent, tmp_path / "conf") / "tiny-14k" / "step100"
    c = json.loads((conf / "config.json").read_text())
    c["layer_norm_eps"] = 1e-3
    (conf / "config.json").write_text(json.dumps(c))
    assert _key(conf, data_dir) != k0
    w = tmp_path / "w" / "tiny-14k" / "step100"
    build_tiny_model(w, seed=2)
    assert _key(w, data_dir) != k0
    same = _copy(model.parent.parent, tmp_path / "same") / "tiny-14k" / "step100"
    assert _key(same, data_dir) == k0  # content, not path


def test_lm_eval_version_and_task_config_are_ingredients(model, data_dir, tmp_path, monkeypatch):
    k0 = _key(model, data_dir)
    import evalsuite.run.plan as plan

    monkeypatch.setattr(plan, "lm_eval_version", lambda: "99.0")
    assert _key(model, data_dir) != k0
    monkeypatch.undo()
    inc = tmp_path / "inc"
    inc.mkdir()
    spec = {"lm_eval_task": "arc_easy", "primary_metric": "acc", "chance": 0.25,
            "data": {"adapter": "jsonl", "files": {"test": "arc/arc_easy_test.jsonl"}}}
    (inc / "arc_easy.yaml").write_text(json.dumps(spec))
    reg = TaskRegistry(data_dir=data_dir, include_paths=[inc])
    assert _key(model, data_dir, registry=reg) == k0  # the same resolved task
    cfg = {"task": "arc_easy_q", "dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy",
           "output_type": "multiple_choice", "test_split": "test",
           "doc_to_text": "Q: {{question}}\nA:", "doc_to_target": "{{choices.label.index(answerKey)}}",
           "doc_to_choice": "{{choices.text}}", "metric_list": [{"metric": "acc"}]}
    spec2 = {"lm_eval_config": cfg, "primary_metric": "acc", "chance": 0.25,
             "data": {"adapter": "jsonl", "files": {"test": "arc/arc_easy_test.jsonl"}}}
    (inc / "arc_easy.yaml").write_text(json.dumps(spec2))
    k1 = _key(model, data_dir, registry=TaskRegistry(data_dir=data_dir, include_paths=[inc]))
    cfg["doc_to_text"] = "Question: {{question}}\nAnswer:"
    (inc / "arc_easy.yaml").write_text(json.dumps(spec2))
    k2 = _key(model, data_dir, registry=TaskRegistry(data_dir=data_dir, include_paths=[inc]))
    assert k1 != k2 != k0  # another prompt template: re-scored


def test_reversed_data_file_rescores_end_to_end(model, data_dir, tmp_path, capsys):
    data = _copy(data_dir, tmp_path / "data")
    res = tmp_path / "res"
    args = ["run", str(model.parent.parent), "--tasks", "arc_easy", "--limit", "5",
            "--results", str(res), "--data-dir", str(data)]
    assert main(args) == 0
    first = {r.cell_key: r.data_fingerprint for r in ResultStore(res).read_rows()}
    f = data / "arc" / "arc_easy_test.jsonl"
    f.write_text("".join(reversed(f.read_text().splitlines(keepends=True))))
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "nothing to do" not in err
    rows = ResultStore(res).read_rows()
    assert len({r.cell_key for r in rows}) == 2 and set(first) < {r.cell_key for r in rows}
    assert len({r.data_fingerprint for r in rows}) == 2


def test_two_checkpoints_one_id_is_an_error_and_repeats_are_scored_once(model, tmp_path):
    other = tmp_path / "tiny-14k" / "checkpoint-100"
    build_tiny_model(other, seed=5)
    a = discover_series(model).checkpoints[0]
    b = dataclasses.replace(discover_series(other).checkpoints[0], series=a.series, size=a.size,
                            step=a.step)
    assert a.id == b.id
    with pytest.raises(RunError, match="two different checkpoints") as e:
        unique_checkpoints([a, b])
    assert str(model) in str(e.value) and str(other) in str(e.value)
    kept, notes = unique_checkpoints([a, a])
    assert kept == [a] and "scored once" in notes[0]


def test_folder_with_step_and_checkpoint_dirs_never_shares_a_model(tmp_path, capsys):
    root = tmp_path / "s"
    build_tiny_model(root / "1m" / "step100", seed=1)
    build_tiny_model(root / "1m" / "checkpoint-100", seed=2)
    code = main(["run", str(root), "--tasks", "arc_easy", "--limit", "2",
                 "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code != 0 and "two different checkpoints" in err and "checkpoint-100" in err
