"""Importing lm-eval result JSON files as ResultRows (synthetic files, and the real Pythia evals)."""

from __future__ import annotations

import json

import pytest

from evalsuite.importer import (PYTHIA_PARAMS, ImportError_, import_into_store, import_results,
                                load_mapping, read_result_file)
from evalsuite.store import ResultStore


def write(path, results, model_args, num_fewshot=0, versions=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"results": results, "versions": versions or {},
                                "config": {"model": "hf", "model_args": model_args,
                                           "num_fewshot": num_fewshot, "limit": None}}))
    return path


def test_v04_format_with_mapping(tmp_path):
    f = write(tmp_path / "r" / "mine.json",
              {"piqa": {"acc,none": 0.6, "acc_stderr,none": 0.01, "acc_norm,none": 0.61,
                        "acc_norm_stderr,none": 0.011, "alias": "piqa"}},
              "pretrained=org/my-model,revision=step500")
    mp = tmp_path / "map.yaml"
    mp.write_text("models:\n  org/my-model: {series: mine, size: 10m, n_params: 10000000, "
                  "tokens_per_step: 1000}\n")
    rows = read_result_file(f, load_mapping(mp))
    assert {r.metric for r in rows} == {"acc", "acc_norm"}
    acc = next(r for r in rows if r.metric == "acc")
    assert acc.is_primary and acc.chance == 0.5 and acc.step == 500
    assert acc.series == "mine" and acc.tokens_seen == 500_000
    assert acc.compute_flops == pytest.approx(6 * 1e7 * 5e5)
    assert acc.checkpoint_id == "mine-10m@500:auto"
    # n from lm-eval's stderr sqrt(p(1-p)/(n-1))
    assert acc.n_samples == round(0.6 * 0.4 / 0.01**2 + 1)


def test_unknown_model_error_names_fix(tmp_path):
    f = write(tmp_path / "x.json", {"piqa": {"acc": 0.5}}, "pretrained=someone/thing")
    with pytest.raises(ImportError_, match="mapping file"):
        read_result_file(f)
    with pytest.raises(ImportError_, match="no 'results'"):
        (tmp_path / "bad.json").write_text("{}")
        read_result_file(tmp_path / "bad.json")
    with pytest.raises(ImportError_, match="does not exist"):
        import_results(tmp_path / "missing")


def test_store_import_is_idempotent(tmp_path):
    write(tmp_path / "in" / "pythia-70m" / "zero-shot" / "70m_step143000.json",
          {"piqa": {"acc": 0.59, "acc_stderr": 0.0115},
           "crows_pairs_english": {"pct_stereotype": 0.5, "pct_stereotype_stderr": 0.01},
           "lambada_openai": {"acc": 0.18, "acc_stderr": 0.005, "ppl": 142.0, "ppl_stderr": 6.0}},
          "pretrained=EleutherAI/pythia-v1.1-70m,revision=step143000")
    store = ResultStore(tmp_path / "results")
    written, skipped = import_into_store(store, tmp_path / "in")
    assert written == 4 and skipped == 0
    assert import_into_store(store, tmp_path / "in") == (0, 3)
    df = store.to_frame()
    assert sorted(df[df.is_primary].task) == ["lambada_openai", "piqa"]
    crows = df[df.task == "crows_pairs_english"]
    assert not crows.is_primary.any()                  # reported apart, not scored
    ppl = df[df.metric == "ppl"].iloc[0]
    assert not ppl.is_primary and not ppl.higher_is_better
    row = df[df.task == "piqa"].iloc[0]
    assert row.n_params == PYTHIA_PARAMS["70m"][0] and row.tokens_seen == 143000 * 2097152


def test_real_pythia_files_including_bf16(shared_data):
    root = shared_data("pythia_evals", "pythia-v1")
    files = [root / "pythia-70m" / "zero-shot" / "70m_step143000.json",
             root / "pythia-1b-bf16" / "zero-shot" / "1b-bf16_step143000.json",
             root / "pythia-1b-bf16" / "zero-shot" / "1b-bf16-5shot_step1000.json",
             root / "pythia-1b-bf16" / "five-shot" / "1b-5shot_step143000.json",
             root / "pythia-160m-deduped" / "zero-shot" / "160m-deduped_step0.json",
             root / "pythia-160m-0.5MtokBS" / "160m-0.5MtokBS_step12000.json",
             root / "pythia-1.4b-deduped" / "intervention"
             / "intervention-1.4b-deduped-long_step114000.json",
             root / "pythia-70m-deduped" / "baseline" / "baseline-70m-deduped_step134000.json"]
    rows = import_results(files)
    by = {}
    for r in rows:
        by.setdefault(r.source.rsplit("/", 1)[-1], r)
    r70 = by["70m_step143000.json"]
    assert (r70.series, r70.size, r70.step, r70.num_fewshot) == ("pythia", "70m", 143000, 0)
    bf = by["1b-bf16_step143000.json"]
    assert (bf.series, bf.size, bf.n_params) == ("pythia", "1b-bf16", PYTHIA_PARAMS["1b"][0])
    # a file named "-5shot" inside zero-shot/ is zero-shot by its config
    assert by["1b-bf16-5shot_step1000.json"].num_fewshot == 0
    assert by["1b-5shot_step143000.json"].num_fewshot == 5
    d0 = next(r for r in rows if r.series == "pythia-deduped" and r.step == 0)
    assert d0.tokens_seen == 0 and d0.size == "160m"
    bs = next(r for r in rows if r.series == "pythia-0.5MtokBS")
    assert bs.size == "160m"
    assert bs.tokens_seen == 12000 * 2**19
    assert any(r.series == "pythia-deduped-intervention" and r.size == "1.4b-long" for r in rows)
    assert any(r.series == "pythia-deduped-baseline" for r in rows)
    assert len({(r.cell_key, r.metric) for r in rows}) == len(rows)


def test_opt_and_bloom_nominal_sizes(shared_data):
    root = shared_data("pythia_evals")
    rows = import_results([root / "opt" / "opt-1.3b.json", root / "bloom" / "bloom-1b7.json"])
    opt = next(r for r in rows if r.series == "opt")
    bloom = next(r for r in rows if r.series == "bloom")
    assert opt.n_params == 1_300_000_000 and opt.tokens_seen is None and opt.step is None
    assert bloom.size == "1b7" and bloom.n_params == 1_700_000_000
