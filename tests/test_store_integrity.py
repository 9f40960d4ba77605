"""Store integrity: atomic cells (commits), validated rows, done cells need their samples, the
folder lock, and importer input that is the wrong shape."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from pathlib import Path

import pandas as pd
import pytest

from evalsuite.cli import main
from evalsuite.importer import ImportError_, import_into_store, read_result_file
from evalsuite.records import SCHEMA_VERSION, ResultRow
from evalsuite.store import ROW_FIELD_CHECKS, ResultStore, StoreError, StoreLockedError

REPO = Path(__file__).resolve().parents[1]


def _row(cell: str, metric: str = "acc", **kw) -> ResultRow:
    base = dict(checkpoint_id="s-1k@1:fp32", series="s", size="1k", step=1, n_params=10,
                n_params_nonembedding=5, tokens_seen=100, compute_flops=6000.0, weight_hash="h",
                precision="fp32", task="t", task_version="1", metric=metric,
                is_primary=metric == "acc", value=0.5, stderr=0.1, n_samples=10, num_fewshot=0,
                chance=0.25, cell_key=cell, source="import:test")
    base.update(kw)
    return ResultRow(**base)


def _cell(cell: str, **kw) -> list[ResultRow]:
    return [_row(cell, m, **kw) for m in ("acc", "acc_norm", "brier")]


def _line(d: dict) -> str:
    return json.dumps(d, sort_keys=True) + "\n"


def _committed(dicts: list[dict], key: str) -> str:
    """Lines of one cell as the documented format has them (written here, independently)."""
    lines = [_line(d) for d in dicts]
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    commit = json.dumps({"cell_key": key, "digest": digest, "rows": len(dicts)})
    return "".join(lines[:-1]) + lines[-1][:-2] + f', "_commit": {commit}}}\n'


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---- 1. atomic cells ----------------------------------------------------------------------------

def test_each_cell_write_ends_in_a_commit_and_every_line_stays_a_row(tmp_path):
    store = ResultStore(tmp_path)
    assert store.append(_cell("a") + _cell("b")) == 6
    lines = [json.loads(x) for x in store.rows_path.read_text().splitlines()]
    assert all("checkpoint_id" in d for d in lines)  # line readers (jq, read_json) keep working
    commits = [(i, d["_commit"]) for i, d in enumerate(lines) if "_commit" in d]
    assert [i for i, _ in commits] == [2, 5]
    raw = store.rows_path.read_bytes().splitlines(keepends=True)
    for (i, c), key in zip(commits, "ab"):
        assert c["cell_key"] == key and c["rows"] == 3
        assert raw[i].endswith(b', "_commit": ' + json.dumps(c).encode() + b"}\n")
        plain = raw[i][: raw[i].rindex(b', "_commit": ')] + b"}\n"
        assert c["digest"] == hashlib.sha256(b"".join(raw[i - 2:i]) + plain).hexdigest()
        assert plain.decode() == _line({k: v for k, v in lines[i].items() if k != "_commit"})


def test_a_write_cut_anywhere_leaves_each_cell_whole_or_absent(tmp_path):
    """Cut a two-cell write at every line boundary (and next to it) and at seeded offsets."""
    full = ResultStore(tmp_path / "full")
    full.append(_cell("a", source="evalsuite"))
    before = full.rows_path.read_bytes()
    full.append(_cell("b") + _cell("c"))
    blob = full.rows_path.read_bytes()[len(before):]
    ends = [i + 1 for i, b in enumerate(blob) if b == ord("\n")]
    rng = random.Random(7)
    near_ends = {e + d for e in ends for d in (-1, 0, 1) if 0 <= e + d <= len(blob)}
    cuts = sorted({0, len(blob)} | near_ends | {rng.randrange(len(blob)) for _ in range(40)})
    for cut in cuts:
        root = tmp_path / f"cut{cut}"
        store = ResultStore(root)
        store.write_samples("a", pd.DataFrame({"doc_id": [0]}))
        store.rows_path.write_bytes(before + blob[:cut])
        by_cell: dict[str, int] = {}
        for r in store.read_rows():
            by_cell[r.cell_key] = by_cell.get(r.cell_key, 0) + 1
        assert set(by_cell.values()) <= {3}, (cut, by_cell)
        # a cell counts once its commit line is whole (its newline may still be missing)
        whole = {"a"} | {k for k, end in (("b", ends[2]), ("c", ends[5])) if cut >= end - 1}
        assert set(by_cell) == whole, cut
        assert store.done_cells() == set(by_cell), cut


def test_torn_cell_is_reported_once_ignored_and_rescored(tmp_path, caplog):
    store = ResultStore(tmp_path)
    store.append(_cell("a"))
    blob = _committed([r.to_dict() for r in _cell("b")], "b")
    with open(store.rows_path, "a") as fh:  # killed after two of the three rows of cell b
        fh.write("".join(blob.splitlines(keepends=True)[:2]) + blob.splitlines()[2][:50])
    caplog.set_level(logging.WARNING)
    assert {r.cell_key for r in store.read_rows()} == {"a"}
    (msg,) = _warnings(caplog)  # one report for the read, naming file, lines and the consequence
    assert str(store.rows_path) in msg and "skipping 3 line(s)" in msg
    assert "line 4: row of cell b without its commit" in msg and "line 6: unreadable" in msg
    assert "re-scored on the next run" in msg
    assert store.done_cells() == {"a"}
    store.append(_cell("b", value=0.7))  # the re-scored cell starts on a fresh line
    assert {r.cell_key for r in store.read_rows()} == {"a", "b"}
    assert store.done_cells() == {"a", "b"}


def test_a_commit_that_does_not_match_its_lines_commits_nothing(tmp_path, caplog):
    store = ResultStore(tmp_path)
    store.append(_cell("a") + _cell("b"))
    lines = store.rows_path.read_text().splitlines(keepends=True)
    store.rows_path.write_text("".join(lines[:3] + lines[4:]))  # a row of b deleted by hand
    caplog.set_level(logging.WARNING)
    assert {r.cell_key for r in store.read_rows()} == {"a"}
    assert "a commit that does not match the lines before it" in " ".join(_warnings(caplog))
    assert store.done_cells() == {"a"}


def test_hand_edited_rows_are_read_as_edited_and_reported(tmp_path, caplog):
    """The digest detects a change after writing; the rows stay (leaderboard --diff shows it)."""
    store = ResultStore(tmp_path)
    store.append(_cell("a"))
    lines = store.rows_path.read_text().splitlines()
    d = json.loads(lines[0])
    d["value"] = 0.999
    lines[0] = json.dumps(d)
    store.rows_path.write_text("\n".join(lines) + "\n")
    caplog.set_level(logging.WARNING)
    assert sorted(r.value for r in store.read_rows()) == [0.5, 0.5, 0.999]
    assert "lines 1-3 (cell a) changed after they were written" in " ".join(_warnings(caplog))


def test_legacy_rows_without_commits_are_committed_newer_ones_are_not(tmp_path, caplog):
    store = ResultStore(tmp_path)
    legacy = [dict(r.to_dict(), schema_version=2) for r in _cell("old")]
    unmarked = [r.to_dict() for r in _cell("new")]  # schema 3 and no commit: a torn write
    store.rows_path.write_text("".join(_line(d) for d in legacy + unmarked))
    caplog.set_level(logging.WARNING)
    rows = store.read_rows()
    assert [r.cell_key for r in rows] == ["old"] * 3 and {r.schema_version for r in rows} == {2}
    (msg,) = _warnings(caplog)
    assert "skipping 3 line(s)" in msg and "line 4: row of cell new without its commit" in msg
    assert "line 1" not in msg
    assert store.done_cells() == {"old"}


def test_the_committed_legacy_results_folder_reads_whole(caplog):
    path = REPO / "results" / "rows.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    caplog.set_level(logging.WARNING)
    n = sum(1 for line in path.read_text().splitlines() if line.strip())
    assert len(ResultStore(path.parent).read_rows()) == n
    assert not _warnings(caplog)


# ---- 2. rows validated on read and before writing -------------------------------------------

def test_every_result_row_field_has_a_json_check():
    assert set(ROW_FIELD_CHECKS) == {f.name for f in dataclasses.fields(ResultRow)}
    assert [name for name, (check, _) in ROW_FIELD_CHECKS.items() if check is None] == []


BAD = {
    "value as a string": ({"value": "0.9"}, "field 'value' must be a finite number or null, "
                                             'got "0.9"'),
    "step not a number": ({"step": "abc"}, "field 'step' must be a whole number or null"),
    "fractional n_samples": ({"n_samples": 1.5}, "field 'n_samples' must be a whole number"),
    "is_primary a string": ({"is_primary": "yes"}, "field 'is_primary' must be true or false"),
    "bool where a number goes": ({"value": True}, "field 'value' must be a finite number"),
    "null where not allowed": ({"task": None}, "field 'task' must be a string, got null"),
    "versions not strings": ({"versions": {"torch": 2}}, "field 'versions' must be an object"),
    "missing required field": ({"task": ...}, "missing required field 'task'"),
    "newer schema": ({"schema_version": SCHEMA_VERSION + 1},
                     f"schema_version {SCHEMA_VERSION + 1} is newer than this evalsuite reads"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_rows_with_wrong_types_are_reported_and_never_returned(case, tmp_path, caplog):
    change, expected = BAD[case]
    bad = _row("bad").to_dict()
    for k, v in change.items():
        if v is ...:
            del bad[k]
        else:
            bad[k] = v
    store = ResultStore(tmp_path)
    store.append(_cell("good"))
    with open(store.rows_path, "a") as fh:
        fh.write(_committed([_row("bad", "acc_norm").to_dict(), bad], "bad"))
    caplog.set_level(logging.WARNING)
    rows = store.read_rows()
    assert {r.cell_key for r in rows} == {"good"} | {"bad"}  # the valid row of "bad" stays
    assert [r.metric for r in rows if r.cell_key == "bad"] == ["acc_norm"]
    (msg,) = _warnings(caplog)
    assert f"{store.rows_path}:5: ignoring row: {expected}" in msg, msg
    assert "its cell bad will be re-scored" in msg
    assert store.done_cells() == {"good"}  # a cell with an ignored row is re-scored


def test_ints_fill_float_fields_and_none_fills_optional_ones(tmp_path, caplog):
    store = ResultStore(tmp_path)
    d = dict(_row("k").to_dict(), value=1, chance=0, step=None, stderr=None)
    store.rows_path.write_text(_committed([d], "k"))
    caplog.set_level(logging.WARNING)
    (row,) = store.read_rows()
    assert row.value == 1 and row.step is None and not _warnings(caplog)


def test_nan_in_the_file_is_rejected(tmp_path, caplog):
    store = ResultStore(tmp_path)
    d = _row("k").to_dict()
    text = _committed([d], "k").replace('"value": 0.5', '"value": NaN')
    store.rows_path.write_text(text)
    caplog.set_level(logging.WARNING)
    assert store.read_rows() == [] and store.done_cells() == set()
    assert "NaN is not valid in a result row" in " ".join(_warnings(caplog))


def test_a_row_that_would_not_read_back_is_never_written(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_cell("a"))
    before = store.rows_path.read_bytes()
    with pytest.raises(ValueError, match=r"cell b .*field 'step' must be a whole number"):
        store.append(_cell("b")[:2] + [_row("b", "brier", step="abc")])
    with pytest.raises(ValueError, match=r"field 'chance' must be a finite number"):
        store.append([_row("c", chance=float("nan"))])
    assert store.rows_path.read_bytes() == before


def test_unreadable_rows_file_is_a_store_error_and_a_clean_cli_error(tmp_path, capsys):
    (tmp_path / "rows.jsonl").mkdir()  # a folder where the file goes: unreadable even for root
    with pytest.raises(StoreError, match="cannot read .*rows.jsonl"):
        ResultStore(tmp_path).read_rows()
    assert main(["results", "--results", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


# ---- 3. done cells need their samples; a re-scored cell supersedes ------------------------------

def test_done_cells_need_a_readable_samples_file_for_evalsuite_rows(tmp_path, caplog):
    store = ResultStore(tmp_path)
    frame = pd.DataFrame({"doc_id": [0, 1], "metric_acc": [1.0, 0.0]})
    for key in ("ok", "missing", "garbage", "truncated"):
        if key != "missing":
            store.write_samples(key, frame)
        store.append(_cell(key, source="evalsuite"))
    store.samples_path("garbage").write_bytes(b"PAR1 not a parquet file PAR1")
    good = store.samples_path("ok").read_bytes()
    store.samples_path("truncated").write_bytes(good[: len(good) // 2])
    store.append(_cell("imported"))  # imported rows have no samples and need none
    caplog.set_level(logging.WARNING)
    assert store.done_cells() == {"ok", "imported"}
    text = " ".join(_warnings(caplog))
    assert f"{store.samples_path('missing')} is missing; cell missing will be re-scored" in text
    assert f"{store.samples_path('garbage')} is unreadable" in text
    assert f"{store.samples_path('truncated')} is unreadable" in text


def test_a_rescored_cell_supersedes_its_earlier_write(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_cell("a", source="evalsuite", value=0.1))  # its samples are gone
    store.append(_cell("b"))
    assert store.done_cells() == {"b"}
    store.write_samples("a", pd.DataFrame({"doc_id": [0]}))  # what the runner does: samples,
    store.append(_cell("a", source="evalsuite", value=0.2))  # then the rows
    rows = store.read_rows()
    assert sorted((r.cell_key, r.metric, r.value) for r in rows) == sorted(
        [("a", m, 0.2) for m in ("acc", "acc_norm", "brier")]
        + [("b", m, 0.5) for m in ("acc", "acc_norm", "brier")])
    frame = store.to_frame()
    assert len(frame) == 6 and set(frame[frame.cell_key == "a"].value) == {0.2}
    assert store.done_cells() == {"a", "b"}


def test_a_torn_rescore_keeps_the_earlier_write(tmp_path):
    store = ResultStore(tmp_path)
    store.append(_cell("a", value=0.1))
    with open(store.rows_path, "a") as fh:
        fh.write(_committed([r.to_dict() for r in _cell("a", value=0.2)], "a")[:-30])
    assert {r.value for r in store.read_rows()} == {0.1}


def test_rows_without_a_cell_key_are_never_superseded(tmp_path):
    store = ResultStore(tmp_path)
    store.append([_row("", task="x"), _row("", task="y")])
    store.append([_row("", task="z")])
    assert sorted(r.task for r in store.read_rows()) == ["x", "y", "z"]
    assert store.done_cells() == set()


# ---- 4. the lock -------------------------------------------------------------------------------

def test_lock_is_exclusive_and_released(tmp_path):
    root = tmp_path / "res"
    with ResultStore(root).lock():
        with pytest.raises(StoreLockedError) as info:
            with ResultStore(root).lock():
                pass
        msg = str(info.value)
        assert str(root / ".lock") in msg and "another evalsuite process is writing to" in msg
        assert "import" in msg and "wait for it to finish, or pass another --results DIR" in msg
        assert isinstance(info.value, StoreError)
    with ResultStore(root).lock():  # released on exit
        pass


def test_lock_on_a_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=r"cannot use results folder .*file/res.*--results DIR"):
        with ResultStore(tmp_path / "file" / "res").lock():
            pass


def _lm_eval_file(path: Path, **sections) -> Path:
    data = {"results": {"piqa": {"acc,none": 0.6, "acc_stderr,none": 0.01},
                        "arc_easy": {"acc,none": 0.5, "acc_norm,none": 0.45}},
            "config": {"model": "hf", "model_args": "pretrained=EleutherAI/pythia-70m",
                       "limit": None},
            "n-shot": {"piqa": 0, "arc_easy": 0}, "versions": {"piqa": 1, "arc_easy": 1}}
    for k, v in sections.items():  # None: leave the section out
        data[k.replace("_", "-")] = v
    data = {k: v for k, v in data.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_import_takes_the_lock_and_commits_cell_by_cell(tmp_path, capsys):
    src = _lm_eval_file(tmp_path / "in" / "70m_step143000.json")
    res = tmp_path / "res"
    store = ResultStore(res)
    with store.lock():
        with pytest.raises(StoreLockedError):
            import_into_store(store, src)
        assert main(["import", str(src), "--results", str(res)]) == 2
        assert "another evalsuite process is writing to" in capsys.readouterr().err
    assert not store.rows_path.exists()
    assert import_into_store(store, src) == (3, 0)
    commits = [json.loads(x).get("_commit") for x in store.rows_path.read_text().splitlines()]
    assert [c and c["rows"] for c in commits] == [None, 2, 1]  # arc_easy (2 metrics), piqa
    assert import_into_store(store, src) == (0, 2)


# ---- 5. importer input of the wrong shape ------------------------------------------------------

WRONG = {
    "config num_fewshot": (dict(config={"model": "hf", "model_args": "pretrained=EleutherAI/"
                                        "pythia-70m", "num_fewshot": "five"}, n_shot=None),
                           "config.num_fewshot must be a whole number, got 'five'"),
    "n-shot value": (dict(n_shot={"piqa": "five", "arc_easy": 0}),
                     "n-shot.piqa must be a whole number, got 'five'"),
    "configs num_fewshot": (dict(n_shot=None, configs={"piqa": {"num_fewshot": "five"}}),
                            "configs.piqa.num_fewshot must be a whole number, got 'five'"),
    "config a list": (dict(config=[{"model": "hf"}]), "'config' must be an object"),
    "configs a list": (dict(configs=[{"task": "piqa"}]), "'configs' must be an object"),
    "configs entry a list": (dict(n_shot=None, configs={"piqa": [0]}),
                             "configs.piqa must be an object"),
    "n-shot a list": (dict(n_shot=[0, 0]), "'n-shot' must be an object"),
    "versions a list": (dict(versions=[1]), "'versions' must be an object"),
    "fractional limit": (dict(config={"model": "hf", "model_args": "pretrained=EleutherAI/"
                                      "pythia-70m", "limit": 0.1}),
                         "config.limit 0.1 is a fraction"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_shapes_in_result_files_are_clear_errors(case, tmp_path, capsys):
    sections, message = WRONG[case]
    path = _lm_eval_file(tmp_path / "in" / "70m_step143000.json", **sections)
    with pytest.raises(ImportError_) as info:
        read_result_file(path)
    assert str(path) in str(info.value) and message in str(info.value)
    res = tmp_path / "res"
    assert main(["import", str(path), "--results", str(res)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (res / "rows.jsonl").exists()


def test_shots_come_from_the_n_shot_and_configs_sections(tmp_path):
    """lm-eval 0.4 writes shots per task there, not in config: 0- and 5-shot files are two cells."""
    zero = _lm_eval_file(tmp_path / "a" / "70m_step143000.json")
    five = _lm_eval_file(tmp_path / "b" / "70m_step143000.json", n_shot={"piqa": 5},
                         configs={"arc_easy": {"num_fewshot": 5}})
    rows0, rows5 = read_result_file(zero), read_result_file(five)
    assert {r.num_fewshot for r in rows0} == {0} and {r.num_fewshot for r in rows5} == {5}
    assert not {r.cell_key for r in rows0} & {r.cell_key for r in rows5}


def test_mapping_numbers_that_are_not_numbers_are_clear_errors(tmp_path):
    path = _lm_eval_file(tmp_path / "in" / "mine.json",
                         config={"model": "hf", "model_args": "pretrained=org/mine"})
    mapping = {"models": {"org/mine": {"series": "m", "size": "1m", "n_params": "lots"}},
               "tasks": {}}
    with pytest.raises(ImportError_, match=r"mine.json: mapping entry models.org/mine.n_params "
                                           r"must be a whole number, got 'lots'"):
        read_result_file(path, mapping)
    mapping["models"]["org/mine"]["n_params"] = "1e6"  # YAML reads 1e6 as a string
    assert {r.n_params for r in read_result_file(path, mapping)} == {1_000_000}


def test_claims_read_the_store_once_then_only_new_commits(tmp_path, monkeypatch):
    """A claim per group used to re-read the whole rows.jsonl (9 s on the Pythia evals): now one
    full read per store object, then only what was appended (failed before: 3 full reads)."""
    store = ResultStore(tmp_path / "r")
    calls = []
    real = ResultStore.done_cells
    monkeypatch.setattr(ResultStore, "done_cells", lambda self: calls.append(1) or real(self))
    assert store.claim_cells(["a", "b"], "me") == (["a", "b"], [])
    other = ResultStore(tmp_path / "r")  # another writer commits cell c
    other.append([_row("c")])
    assert store.claim_cells(["c", "d"], "me") == (["d"], [])  # c is done now
    assert store.claim_cells(["a"], "you") == ([], ["a"])  # mine, and I am alive
    assert len(calls) == 1
