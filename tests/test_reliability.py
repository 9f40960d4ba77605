"""Reliability: killed runs, concurrent runs, torn files, full disks, malformed input (property tests)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evalsuite.cli import main
from evalsuite.records import ResultRow
from evalsuite.series import SeriesError, discover_series, read_manifest
from evalsuite.store import ResultStore, StoreError
from evalsuite.testing import build_tiny_series

REPO = Path(__file__).resolve().parents[1]


def _row(i: int, **kw) -> ResultRow:
    base = dict(checkpoint_id=f"s-1k@{i}:fp32", series="s", size="1k", step=i, n_params=10,
                n_params_nonembedding=5, tokens_seen=i, compute_flops=60.0 * i, weight_hash="h",
                precision="fp32", task="t", task_version="1", metric="acc", is_primary=True,
                value=0.5, stderr=0.1, n_samples=10, num_fewshot=0, chance=0.25, cell_key=f"k{i}")
    base.update(kw)
    return ResultRow(**base)


# ---- store: torn lines, full disk ----------------------------------------------------------

def test_torn_last_line_is_reported_ignored_and_repaired(tmp_path, caplog):
    store = ResultStore(tmp_path)
    store.append([_row(1), _row(2)])
    with open(store.rows_path, "ab") as fh:
        fh.write(b'{"checkpoint_id": "s-1k@3:fp32", "ser')  # killed mid-write
    rows = store.read_rows()
    assert [r.step for r in rows] == [1, 2]
    assert "rows.jsonl: skipping 1 line(s) that no complete cell write covers" in caplog.text
    assert "line 3: unreadable" in caplog.text and "re-scored on the next run" in caplog.text
    store.append([_row(3)])  # the next append starts on a fresh line
    assert [r.step for r in store.read_rows()] == [1, 2, 3]


def test_nan_scores_are_stored_as_missing(tmp_path):
    store = ResultStore(tmp_path)
    store.append([_row(1, value=float("nan"), stderr=float("inf"))])
    (row,) = store.read_rows()
    assert row.value is None and row.stderr is None
    assert "NaN" not in store.rows_path.read_text()


def test_full_or_read_only_results_folder_fails_cleanly(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.append([_row(1)])
    before = store.rows_path.read_bytes()

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(StoreError, match=r"No space left on device.*rows already in the file are intact"):
        store.append([_row(2)])
    monkeypatch.undo()
    assert store.rows_path.read_bytes() == before

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StoreError, match=r"Read-only file system.*--results DIR"):
        store.append([_row(2)])
    monkeypatch.undo()
    assert [r.step for r in store.read_rows()] == [1]


# ---- killed and concurrent runs -----------------------------------------------------------------

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel") / "tiny"
    build_tiny_series(root, sizes=(("14k", 16, 1), ("20k", 16, 2)), steps=(0, 100),
                      tokens_per_step=1024)
    return root


@pytest.fixture(scope="module")
def data_dir():
    from conftest import shared_data_path

    return shared_data_path("benchmarks")


def _primary_keys(results: Path) -> list[str]:
    p = results / "rows.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("is_primary"):
            out.append(r["cell_key"])
    return out


def _last_wall_time(results: Path) -> float:
    """Scoring time of the last cell in the rows file (0.1 s when none is readable)."""
    for line in reversed((results / "rows.jsonl").read_text().splitlines()):
        try:
            return max(0.01, float(json.loads(line)["wall_time_s"]))
        except (ValueError, KeyError, TypeError):
            continue
    return 0.1


def test_sigkill_at_ten_seeded_points_then_rerun_completes(series, data_dir, tmp_path):
    """Kill `evalsuite run` with SIGKILL at 10 seeded points of a 16-cell run; nothing finished is lost.

    Each kill comes a seeded random fraction (0-0.8) of the last finished cell's scoring time
    after the restarted run has finished at least one more cell, so the kills land in different
    phases of the next cell (scoring, writing samples, appending rows) whatever the speed of the
    machine and of the engine (a cell takes about 0.1 s here; a fixed 0-0.25 s let several cells
    land between kills and the run finished first).
    """
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "evalsuite", "run", str(series), "--tasks",
           "arc_easy,copa,lambada_openai,piqa", "--limit", "40", "--results", str(results),
           "--data-dir", str(data_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    rng = random.Random(20261122)
    snapshots: list[bytes] = []
    kills = 0
    for _ in range(10):
        base = len(set(_primary_keys(results)))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 180
        while (proc.poll() is None and time.time() < deadline
               and len(set(_primary_keys(results))) <= base):
            time.sleep(0.02)
        if proc.poll() is not None:
            break  # the run finished on its own
        time.sleep(rng.uniform(0.0, 0.8) * _last_wall_time(results))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        text = (results / "rows.jsonl").read_bytes() if (results / "rows.jsonl").exists() else b""
        complete = text[: text.rfind(b"\n") + 1]
        for earlier in snapshots:  # finished rows are never changed or lost
            assert complete.startswith(earlier)
        snapshots.append(complete)
    assert kills == 10, f"only {kills} kills landed before the run finished"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    keys = _primary_keys(results)
    assert len(keys) == 16 and len(set(keys)) == 16  # 4 checkpoints x 4 tasks, each exactly once
    assert (results / "rows.jsonl").read_bytes().startswith(snapshots[-1])


def test_a_run_waits_for_an_import_then_stops_with_a_clear_message(series, data_dir, tmp_path,
                                                                    capsys, monkeypatch):
    """Runs share a folder (claims), but an import holds its lock for the whole import: a run
    waits for it EVALSUITE_LOCK_WAIT_S seconds, then says who holds it."""
    import fcntl

    monkeypatch.setenv("EVALSUITE_LOCK_WAIT_S", "1")
    results = tmp_path / "res"
    results.mkdir()
    with open(results / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # an import holds the folder
        code = main(["run", str(series), "--tasks", "copa", "--limit", "1", "--results",
                     str(results), "--data-dir", str(data_dir)])
    assert code == 2
    assert "another evalsuite process is writing to" in capsys.readouterr().err
    assert not (results / "rows.jsonl").exists()


def test_two_concurrent_processes_never_interleave_rows(series, data_dir, tmp_path):
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "evalsuite", "run", str(series), "--tasks", "copa", "--limit", "2",
           "--results", str(results), "--data-dir", str(data_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    a = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    b = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    errs = [a.communicate(timeout=300)[1], b.communicate(timeout=300)[1]]
    assert sorted([a.returncode, b.returncode])[0] == 0
    if a.returncode and b.returncode == 0 or b.returncode and a.returncode == 0:
        assert any("another evalsuite process" in e for e in errs)
    subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=True)
    keys = _primary_keys(results)
    assert len(keys) == 4 and len(set(keys)) == 4
    for line in (results / "rows.jsonl").read_text().splitlines():
        json.loads(line)  # every line whole


# ---- security --------------------------------------------------------------------------------------

def test_no_shell_true_and_remote_code_off_by_default():
    for path in (REPO / "evalsuite").rglob("*.py"):
        assert "shell=True" not in path.read_text(), path
    from evalsuite.records import RunConfig

    assert RunConfig(tasks=("x",)).trust_remote_code is False


def test_task_code_only_from_bundled_or_named_folders(tmp_path):
    """A `!function` task file is only ever read from tasks/ or a folder passed with --include-path."""
    from evalsuite.tasks.registry import TaskRegistry

    evil = tmp_path / "elsewhere"
    evil.mkdir()
    (evil / "evil.yaml").write_text("task: evil\ndoc_to_text: !function evil.run\n")
    reg = TaskRegistry()
    with pytest.raises(Exception, match="unknown task 'evil'"):
        reg.get("evil")


# ---- property tests ------------------------------------------------------------------------------

_settings = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_settings
@given(st.lists(st.binary(max_size=200), max_size=8))
@example(lines=[b"0"])  # valid JSON, not an object: once crashed the reader
@example(lines=[b"[1, 2]", b'"row"', b"null", b'{"step": {}}'])
def test_store_reader_survives_any_bytes(tmp_path_factory, lines):
    root = tmp_path_factory.mktemp("prop")
    store = ResultStore(root)
    store.append([_row(1)])
    with open(store.rows_path, "ab") as fh:
        for line in lines:
            fh.write(line + b"\n")
    rows = store.read_rows()
    assert rows and rows[0].step == 1


@_settings
@given(st.text(max_size=300), st.sampled_from([".yaml", ".json"]))
def test_manifest_reader_survives_any_text(tmp_path_factory, text, suffix):
    root = tmp_path_factory.mktemp("man")
    path = root / f"m{suffix}"
    path.write_text(text)
    try:
        scan = read_manifest(path)
    except SeriesError:
        return
    for where, msg in scan.problems:
        assert isinstance(msg, str) and msg


_entry = st.fixed_dictionaries({}, optional={
    "path": st.sampled_from(["a", "../nope", "", "a/b"]), "hub": st.text(max_size=10),
    "size": st.one_of(st.none(), st.text(max_size=5), st.integers()),
    "step": st.one_of(st.none(), st.integers(-5, 10**6), st.text(max_size=4), st.floats()),
    "tokens_seen": st.one_of(st.none(), st.integers(), st.text(max_size=4)),
    "bogus": st.integers()})


@_settings
@given(st.lists(_entry, max_size=5))
@example([{"step": float("inf")}])   # int(inf) raised OverflowError (found by this test)
@example([{"step": float("nan")}, {"tokens_seen": "1e400"}])
def test_manifest_entries_never_crash(tmp_path_factory, entries):
    root = tmp_path_factory.mktemp("ent")
    path = root / "m.json"
    path.write_text(json.dumps({"checkpoints": entries}, default=str))
    scan = read_manifest(path, hash_weights_=False)
    assert len(scan.checkpoints) + len(scan.problems) == len(entries)


@_settings
@given(st.lists(st.tuples(st.sampled_from(["a", "b-1m", "step5", "checkpoint-7", "x/step9"]),
                          st.sampled_from(["config.json", "model.safetensors", "tokenizer.json",
                                           "trainer_state.json"]),
                          st.binary(max_size=64)), max_size=10))
def test_series_discovery_survives_malformed_folders(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("ser")
    for folder, name, data in files:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(data)
    try:
        scan = discover_series(root)
    except SeriesError:
        return
    assert all(isinstance(m, str) for _, m in scan.problems)


# ---- bad inputs never touch finished results --------------------------------------------------------

@pytest.fixture(scope="module")
def finished(series, data_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("finished")
    assert main(["run", str(series / "tiny-14k" / "step0"), "--tasks", "copa", "--limit", "1",
                 "--results", str(results), "--data-dir", str(data_dir)]) == 0
    return results


def _bad_inputs(series, data_dir, tmp):
    bad_yaml = tmp / "yamls"
    bad_yaml.mkdir(exist_ok=True)
    (bad_yaml / "dup.yaml").write_text("lm_eval_task: copa\nprimary_metric: acc\nprimary_metric: acc\n")
    (bad_yaml / "odd.yaml").write_text("lm_eval_task: copa\nprimary_metric: acc\nweird: 1\n")
    empty_data = tmp / "data"
    (empty_data / "copa").mkdir(parents=True, exist_ok=True)
    (empty_data / "copa" / "copa_val.llmfoundry.jsonl").write_text("")
    nodata = tmp / "nodata"
    nodata.mkdir(exist_ok=True)
    s = str(series)
    return {
        "missing path": (["run", str(tmp / "gone"), "--tasks", "copa"], "does not exist"),
        "unknown task": (["run", s, "--tasks", "copaa"], "Did you mean: copa"),
        "duplicate YAML key": (["run", s, "--tasks", "dup", "--include-path", str(bad_yaml)],
                               "duplicate key 'primary_metric'"),
        "unknown YAML key": (["run", s, "--tasks", "odd", "--include-path", str(bad_yaml)],
                             "unknown key(s) ['weird']"),
        "missing data file": (["run", s, "--tasks", "copa", "--data-dir", str(nodata)], "is missing"),
        "empty dataset": (["run", s, "--tasks", "copa", "--data-dir", str(empty_data)], "has no items"),
    }


@pytest.mark.parametrize("case", ["missing path", "unknown task", "duplicate YAML key",
                                  "unknown YAML key", "missing data file", "empty dataset"])
def test_bad_input_errors_keep_finished_rows(case, finished, series, data_dir, tmp_path, capsys):
    before = (finished / "rows.jsonl").read_bytes()
    args, message = _bad_inputs(series, data_dir, tmp_path)[case]
    args = args + ["--results", str(finished)]
    if "--data-dir" not in args:
        args += ["--data-dir", str(data_dir)]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert (finished / "rows.jsonl").read_bytes() == before


def test_four_writers_two_killed_then_rerun_every_cell_once(series, data_dir, tmp_path):
    """Issue 23: four `evalsuite run` processes write one results folder at once over
    overlapping checkpoint sets (claims keep them off each other's cells); two are SIGKILLed at
    seeded points; a rerun takes over their cells. Every cell is then there exactly once, with
    the values of one uninterrupted run."""
    import yaml

    cks = [("14k", 0), ("14k", 100), ("20k", 0), ("20k", 100)]
    subsets = [[0, 1, 2], [1, 2, 3], [0, 3], [0, 1, 2, 3]]
    manifests = []
    for i, subset in enumerate(subsets):
        m = tmp_path / f"writer{i}.yaml"
        m.write_text(yaml.safe_dump({"series": "tiny", "checkpoints": [
            {"path": str(series / f"tiny-{cks[j][0]}" / f"step{cks[j][1]}"), "size": cks[j][0],
             "step": cks[j][1]} for j in subset]}))
        manifests.append(m)
    results, reference = tmp_path / "shared", tmp_path / "reference"
    args = ["--tasks", "copa,piqa", "--limit", "30", "--data-dir", str(data_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def cmd(manifest, out):
        return [sys.executable, "-m", "evalsuite", "run", str(manifest), *args, "--results", str(out)]

    procs = [subprocess.Popen(cmd(m, results), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env, text=True) for m in manifests]
    rng = random.Random(20261207)
    for victim in (1, 3):  # each killed a seeded time after the folder's next finished cell
        base = len(set(_primary_keys(results)))
        deadline = time.time() + 120
        while len(set(_primary_keys(results))) <= base and time.time() < deadline \
                and procs[victim].poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        procs[victim].send_signal(signal.SIGKILL)
    for i, p in enumerate(procs):
        _, err = p.communicate(timeout=300)
        if i not in (1, 3):
            assert p.returncode == 0, err[-2000:]
    union = manifests[3]
    out = subprocess.run(cmd(union, results), capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert subprocess.run(cmd(union, reference), env=env, capture_output=True,
                          timeout=300).returncode == 0
    raw = _primary_keys(results)
    assert len(raw) == len(set(raw)) == 8, "a cell was written twice or is missing"
    got = {(r.checkpoint_id, r.task): r.value for r in ResultStore(results).read_rows()
           if r.is_primary}
    want = {(r.checkpoint_id, r.task): r.value for r in ResultStore(reference).read_rows()
            if r.is_primary}
    assert got == want and len(got) == 8
    assert not list(results.glob("claims/*.claim"))  # every claim released or taken over
