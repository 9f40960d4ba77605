"""Ray executor: a 2-worker Ray head on 127.0.0.1, a worker killed midway, results equal to local.

Also: a local Ray instance (no --address), clear errors (no Ray, unreachable address), and the
GPU-path rules that can be checked without a GPU (precision auto, the batch-size cache, halving
on out-of-memory, CUDA never initialised by a CPU run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from evalsuite.cli import main
from evalsuite.store import ResultStore
from evalsuite.testing import build_tiny_series

import ray  # noqa: F401, E402 - the test extra installs Ray: without it this module fails

TASKS = "arc_easy,piqa"
LIMIT = "150"
TIMING = {"wall_time_s", "timestamp", "_commit"}  # may differ between executors (the commit digest covers timestamps)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "tiny"
    # 6 checkpoints; a group (2 tasks x 150 items) takes a second or two on one thread, so a
    # worker killed just after it started a group is killed while it works
    build_tiny_series(root, sizes=(("80k", 64, 2), ("180k", 64, 4)), steps=(0, 100, 200),
                      tokens_per_step=1024)
    return root


@pytest.fixture(scope="module")
def data_dir():
    from conftest import shared_data_path

    return shared_data_path("benchmarks")


def _env(**extra) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_UPDATE_DOWNLOAD_COUNTS": "0", "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0", **extra}


def _run_args(series, data_dir, results, *extra) -> list[str]:
    return ["run", str(series), "--tasks", TASKS, "--limit", LIMIT, "--results", str(results),
            "--data-dir", str(data_dir), *extra]


@pytest.fixture(scope="module")
def local_results(series, data_dir, tmp_path_factory):
    """The reference: the same series on the local executor."""
    results = tmp_path_factory.mktemp("local")
    assert main(_run_args(series, data_dir, results)) == 0
    return results


def _rows(results: Path) -> dict[tuple[str, str], dict]:
    """(cell key, metric) -> row without timing fields; a cell written twice fails here."""
    out: dict[tuple[str, str], dict] = {}
    for line in (results / "rows.jsonl").read_text().splitlines():
        row = json.loads(line)
        key = (row["cell_key"], row["metric"])
        assert key not in out, f"cell {key} written twice"
        out[key] = {k: v for k, v in row.items() if k not in TIMING}
    return out


def _assert_equal_to_local(results: Path, local: Path) -> None:
    got, want = _rows(results), _rows(local)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    a, b = ResultStore(results), ResultStore(local)
    for cell_key in {k for k, _ in want}:
        x, y = a.read_samples(cell_key), b.read_samples(cell_key)
        # Ray workers run torch on one thread, the local run on the machine's threads: a float32
        # matmul summed in another order moves a log-likelihood by ~1e-6, never a metric.
        lls = "loglikelihoods"
        assert x.drop(columns=lls).equals(y.drop(columns=lls)), cell_key
        for p, q in zip(x[lls], y[lls]):
            assert np.allclose(np.asarray(p, float), np.asarray(q, float), rtol=0, atol=1e-4)


# ---- a Ray head with two workers, started and stopped by the test --------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs, in its own temp dir and session.

    Every port is a free one (never Ray's defaults, which another instance may hold). Teardown
    stops only this instance (its process group; never `ray stop`, which stops every instance
    on the machine).
    """
    temp = tempfile.mkdtemp(prefix="esray", dir="/tmp")  # short: Ray's socket paths must fit
    port = _free_port()
    ray_cli = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
           "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]
    for flag in ("--node-manager-port", "--object-manager-port",
                 "--metrics-export-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--dashboard-port"):
        cmd += [flag, str(_free_port())]
    log = open(Path(temp) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                            start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while not list(Path(temp).glob("session_*/sockets/raylet")):
            assert proc.poll() is None, (Path(temp) / "ray-start.log").read_text()[-3000:]
            assert time.time() < deadline, "ray start did not come up in 90 s"
            time.sleep(0.2)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        yield {"address": address, "temp": Path(temp)}
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGKILL the `ray start` process group (its gcs, raylet and agents; SIGTERM would drain
    for 30 s). Worker processes run in sessions of their own and exit when their raylet dies."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _traces(trace_dir: Path) -> list[tuple[float, int, str, str]]:
    out = []
    for f in trace_dir.glob("*.log"):
        for line in f.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4:
                out.append((float(parts[0]), int(parts[1]), parts[2], parts[3]))
    return sorted(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_worker_killed_midway_run_completes_equal_to_local(ray_head, series, data_dir,
                                                          local_results, tmp_path):
    results, trace = tmp_path / "res", tmp_path / "trace"
    cmd = [sys.executable, "-m", "evalsuite", *_run_args(series, data_dir, results),
           "--executor", "ray", "--address", ray_head["address"], "--trace-workers", str(trace)]
    out = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())
    killed: tuple[int, str] | None = None
    try:
        deadline = time.time() + 240
        while driver.poll() is None and time.time() < deadline and killed is None:
            time.sleep(0.05)
            if not (results / "rows.jsonl").exists():
                continue  # wait until at least one group has landed in the store
            finished = {r["checkpoint_id"] for r in map(json.loads,
                        (results / "rows.jsonl").read_text().splitlines())}
            open_groups: dict[int, tuple[float, str]] = {}
            for t, pid, what, group in _traces(trace):
                if what == "start":
                    open_groups[pid] = (t, group)
                else:
                    open_groups.pop(pid, None)
            for pid, (t, group) in open_groups.items():
                # a group that started just now is far from done: the kill lands while it works
                if group not in finished and time.time() - t < 0.3 and _alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    killed = (pid, group)
                    break
        code = driver.wait(timeout=max(10, deadline - time.time()))
    finally:
        if driver.poll() is None:
            driver.kill()
        out.close()
    log = (tmp_path / "driver.log").read_text()
    assert killed is not None, "no busy worker was seen to kill:\n" + log[-3000:]
    assert code == 0, log[-3000:]
    pid, group = killed
    starts = [(p, g) for _, p, what, g in _traces(trace) if what == "start" and g == group]
    assert len(starts) >= 2 and starts[-1][0] != pid, f"group {group} was not retried: {starts}"
    keys = [k for (k, metric), row in _rows(results).items() if row["is_primary"]]
    assert len(keys) == 6 * 2 and len(set(keys)) == 12  # every cell exactly once
    _assert_equal_to_local(results, local_results)
    summary = json.loads(subprocess.run(
        [sys.executable, "-m", "evalsuite", *_run_args(series, data_dir, results), "--executor",
         "ray", "--address", ray_head["address"], "--json"],
        capture_output=True, text=True, env=_env(), timeout=120).stdout)
    assert summary["completed"] == 0 and summary["skipped_done"] == 12  # nothing redone


@pytest.mark.slow
def test_local_ray_instance_without_address(series, data_dir, tmp_path):
    results, local = tmp_path / "res", tmp_path / "local"
    one = series / "tiny-80k"  # a series of its own: 3 checkpoints
    assert main(_run_args(one, data_dir, local)) == 0
    out = subprocess.run([sys.executable, "-m", "evalsuite", *_run_args(one, data_dir, results),
                          "--executor", "ray", "--workers", "2", "--json"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["executor"]["executor"] == "ray" and summary["executor"]["address"] == "local"
    assert summary["completed"] == 3 * 2 and not summary["failures"]
    assert summary["executor"]["startup_s"] > 0
    _assert_equal_to_local(results, local)


# ---- clear errors ------------------------------------------------------------------------------

def test_unreachable_address_names_it_and_the_fix(series, data_dir, tmp_path, capsys):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.perf_counter()
    code = main(_run_args(series, data_dir, tmp_path / "res", "--executor", "ray",
                          "--address", address))
    err = capsys.readouterr().err
    assert code == 2
    assert f"no Ray cluster reachable at {address}" in err and "ray start --head" in err
    assert time.perf_counter() - t0 < 30  # no minutes of ray.init retries
    assert not (tmp_path / "res" / "rows.jsonl").exists()


def test_executor_ray_without_ray_names_the_install(series, data_dir, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(_run_args(series, data_dir, tmp_path / "res", "--executor", "ray"))
    assert code == 2
    assert "pip install 'evalsuite[ray]'" in capsys.readouterr().err


def test_ray_flags_need_executor_ray(series, data_dir, tmp_path, capsys):
    assert main(_run_args(series, data_dir, tmp_path / "res", "--address", "127.0.0.1:1")) == 2
    assert "--address applies to --executor ray" in capsys.readouterr().err


# ---- one process's cache: built tasks and the last model are reused between groups ---------------

def test_worker_reuses_tasks_and_model_between_groups(series, data_dir):
    from evalsuite.run.executors import ray as ray_executor
    from evalsuite.records import RunConfig
    from evalsuite.tasks.registry import TaskRegistry
    from evalsuite.run.plan import group_cells, plan_cells
    from evalsuite.series import discover_series

    from evalsuite.run.keys import fingerprint_task

    registry = TaskRegistry(data_dir=data_dir)
    config = RunConfig(tasks=("copa",), limit=4, engine="evalsuite")
    ckpts = discover_series(series / "tiny-80k").checkpoints
    fps = {"copa": fingerprint_task(registry.build("copa"))}
    groups = group_cells(plan_cells(ckpts, [registry.get("copa")], config, fps))
    first = ray_executor.evaluate_group_task(groups[0], registry, config, "run-a", 1, None)
    evaluator = ray_executor._WORKER["evaluator"]
    task_obj = evaluator.tasks["copa"]
    second = ray_executor.evaluate_group_task(groups[1], registry, config, "run-a", 1, None)
    assert ray_executor._WORKER["evaluator"] is evaluator and evaluator.tasks["copa"] is task_obj
    assert evaluator._lm.reused_model  # weights swapped into the model the worker already held
    assert first.setup_s > second.setup_s
    assert [type(o).__name__ for o in first.outcomes + second.outcomes] == ["CellOutcome"] * 2
    ray_executor.evaluate_group_task(groups[2], registry, config, "run-b", 1, None)
    assert ray_executor._WORKER["evaluator"] is not evaluator  # a new run starts clean
    ray_executor._WORKER.clear()


# ---- the GPU path, checked on CPU ----------------------------------------------------------------

def test_precision_auto_is_bf16_on_cuda_and_fp32_on_cpu():
    from evalsuite.run.plan import resolve_auto_precision

    assert resolve_auto_precision("auto", "cuda") == "bf16"
    assert resolve_auto_precision("auto", "cuda:1") == "bf16"
    assert resolve_auto_precision("auto", "cpu") == "fp32"
    assert resolve_auto_precision("int4", "cuda") == "int4"


def test_oom_retry_halves_until_it_fits_or_raises():
    import torch

    from evalsuite.engine.loading import retry_on_oom

    state = {"batch": 64, "calls": 0}

    def run():
        state["calls"] += 1
        if state["batch"] > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return state["batch"]

    def shrink():
        if state["batch"] == 1:
            return False
        state["batch"] //= 2
        return True

    assert retry_on_oom(run, shrink) == 16 and state["calls"] == 3
    state["batch"] = 1
    with pytest.raises(torch.cuda.OutOfMemoryError):
        retry_on_oom(lambda: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")), shrink)


def test_auto_batch_size_searched_once_per_architecture_and_halved_on_oom(series, monkeypatch):
    """Two checkpoints of one architecture share one batch-size search; an out-of-memory error
    halves it and re-scores the same units. CUDA is faked: nothing here touches a GPU."""
    import torch

    from evalsuite.engine import create_lm, loading
    from evalsuite.engine import lm as lm_module
    from evalsuite.engine.packing import PackedRow

    searches = []
    monkeypatch.setattr(lm_module, "AUTO_BATCH_SIZES", {})
    monkeypatch.setattr(loading, "find_batch_size", lambda fn: searches.append(fn) or 64)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seen = []

    def fake_score(units, *, max_length, batch_size=None, batch_size_fn=None, progress=None):
        n = batch_size_fn([PackedRow(tuple(range(10)))])
        seen.append((tuple(units), n))
        if n > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {}

    a = create_lm(series / "tiny-80k" / "step0", batch_size="auto")
    b = create_lm(series / "tiny-80k" / "step100", batch_size="auto")
    for lm in (a, b):
        monkeypatch.setattr(lm, "_device", torch.device("cuda"))
    monkeypatch.setattr(b.scorer, "score", fake_score)
    assert a._auto_batch_size_fn()([PackedRow(tuple(range(10)))]) == 64
    assert len(searches) == 1
    b._score_units(["u1", "u2"])
    assert len(searches) == 1  # the second checkpoint reused the first one's search
    assert [n for _, n in seen] == [64, 32, 16] and {u for u, _ in seen} == {("u1", "u2")}
    assert list(lm_module.AUTO_BATCH_SIZES.values()) == [16]


def test_oom_retry_counts_only_the_pass_that_finished(series, monkeypatch):
    """The scorer's token and call counts after an out-of-memory retry are those of the pass
    that finished, not the sum of the failed and the retried one. CUDA is faked."""
    import torch

    from evalsuite.engine import create_lm

    lm = create_lm(series / "tiny-80k" / "step0", batch_size=8)
    monkeypatch.setattr(lm, "_device", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    stats = lm.scorer.stats
    stats.tokens_forwarded, stats.forward_calls, stats.batch_sizes = 5, 1, [3]
    attempts = []

    def fake_score(units, *, max_length, batch_size=None, batch_size_fn=None, progress=None):
        attempts.append(batch_size)
        stats.tokens_forwarded += 100
        stats.forward_calls += 2
        stats.batch_sizes.append(batch_size)
        if batch_size > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {}

    monkeypatch.setattr(lm.scorer, "score", fake_score)
    lm._score_units(["u1"])
    assert attempts == [8, 4]
    assert (stats.tokens_forwarded, stats.forward_calls, stats.batch_sizes) == (105, 3, [3, 4])
    assert lm.stats is stats


def test_cpu_run_never_initialises_cuda(series, data_dir, tmp_path, monkeypatch):
    import torch

    calls = []

    def no_cuda(*a, **k):
        calls.append(a)
        raise AssertionError("a CPU run initialised CUDA")

    monkeypatch.setattr(torch.cuda, "_lazy_init", no_cuda)
    monkeypatch.setattr(torch.cuda, "init", no_cuda)
    for name in ("synchronize", "empty_cache", "set_device", "mem_get_info",
                 "get_device_properties", "is_bf16_supported"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    assert main(["run", str(series / "tiny-80k" / "step0"), "--tasks", "copa,lambada_openai",
                 "--limit", "3", "--results", str(tmp_path / "res"), "--data-dir",
                 str(data_dir)]) == 0
    assert calls == [] and not torch.cuda.is_initialized()
