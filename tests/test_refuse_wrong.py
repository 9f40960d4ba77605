"""Inputs that used to score silently wrong are refused with an error naming the thing and the fix."""

from __future__ import annotations

import json
import shutil

import pytest

from evalsuite.cli import main
from evalsuite.store import ResultStore
from evalsuite.testing import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir():
    from conftest import shared_data_path

    return shared_data_path("benchmarks")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("good") / "s" / "1m" / "step1", seed=3)


def _run(series, data_dir, res, *extra):
    return main(["run", str(series), "--tasks", "arc_easy", "--limit", "3", "--results", str(res),
                 "--data-dir", str(data_dir), *extra])


@pytest.mark.parametrize("engine", ["evalsuite", "hf"])
@pytest.mark.parametrize("layers", [4, 1])
def test_config_that_disagrees_with_the_weights_is_refused(good, data_dir, tmp_path, capsys,
                                                          engine, layers):
    """4 layers in config.json for 2-layer weights loaded 2 random layers (a different score on
    every run); 1 layer silently dropped the second layer's weights."""
    bad = tmp_path / "s" / "1m" / "step1"
    shutil.copytree(good, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_hidden_layers"] = layers
    (bad / "config.json").write_text(json.dumps(cfg))
    code = _run(tmp_path / "s", data_dir, tmp_path / "r", "--engine", engine)
    err = capsys.readouterr().err
    assert code != 0
    assert "config.json does not match the weights" in err and str(bad) in err
    assert ("missing from the weights" in err) if layers == 4 else ("not in the config" in err)
    assert "layers.1." in err or "layers.2." in err
    assert not ResultStore(tmp_path / "r").read_rows()


def test_tokenizer_larger_than_the_embedding_is_refused(good, data_dir, tmp_path, capsys):
    bad = tmp_path / "s" / "1m" / "step1"
    shutil.copytree(good, bad)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bad)
    tok.add_tokens([f"<extra_{i}>" for i in range(10)])
    tok.save_pretrained(bad)
    code = _run(tmp_path / "s", data_dir, tmp_path / "r")
    err = capsys.readouterr().err
    assert code != 0 and "embedding has" in err and "tokenizer has" in err


@pytest.mark.parametrize("shots,needle", [(-1, "cannot be negative"), (10**6, "few-shot pool")])
def test_impossible_shot_counts_are_refused(good, data_dir, tmp_path, capsys, shots, needle):
    code = _run(good.parent.parent, data_dir, tmp_path / "r", "--num-fewshot", str(shots))
    err = capsys.readouterr().err
    assert code != 0 and needle in err and "arc_easy" in err


def test_hub_entry_not_cached_offline_names_the_offline_switch(data_dir, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    man = tmp_path / "m.yaml"
    man.write_text("series: p\ncheckpoints:\n  - {hub: Org/not-cached, revision: step1, size: 1m, "
                   "step: 1}\n")
    code = _run(man, data_dir, tmp_path / "r")
    err = capsys.readouterr().err
    assert code != 0 and "HF_HUB_OFFLINE" in err and "not a local folder" not in err


def test_no_git_noise_and_duplicate_manifest_entries_scored_once(good, data_dir, tmp_path):
    """lm-eval's simple_evaluate ran `git describe` per cell ("fatal: not a git repository" on
    stderr outside a repo); a manifest listing one entry twice wrote that cell twice."""
    import os
    import subprocess
    import sys

    man = tmp_path / "m.yaml"
    man.write_text(f"series: s\ncheckpoints:\n  - {{path: {good}, size: 1m, step: 1}}\n"
                   f"  - {{path: {good}, size: 1m, step: 1}}\n")
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path.parent))
    proc = subprocess.run([sys.executable, "-m", "evalsuite", "run", str(man), "--tasks",
                           "arc_easy,copa", "--limit", "2", "--results", str(tmp_path / "r"),
                           "--data-dir", str(data_dir)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fatal:" not in proc.stderr
    assert "listed more than once" in proc.stderr
    rows = ResultStore(tmp_path / "r").read_rows()
    assert len({r.cell_key for r in rows}) == 2
    assert len([r for r in rows if r.is_primary]) == 2
