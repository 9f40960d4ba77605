"""Evaluate while training (issue 25): `evalsuite watch`, the Trainer callback, the final-score
forecast. The watch test runs a real tiny Trainer beside a real watcher process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalsuite.run.watch import CheckpointWatcher, incomplete_reason, planned_final_step
from evalsuite.scaling.forecast import (forecast_backtest, forecast_final,
                                        summarize_forecast_backtest)
from evalsuite.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TASK = "copa"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from evalsuite.testing.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("m") / "init", hidden_size=16, num_layers=1,
                            num_heads=1)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, model):
    """The tiny model saved in three safetensors shards with an index."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("sharded") / "model"
    m = AutoModelForCausalLM.from_pretrained(model)
    m.save_pretrained(out, max_shard_size="20KB")
    for f in model.iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            shutil.copy2(f, out / f.name)
    assert len(list(out.glob("model-*.safetensors"))) >= 3
    return out


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- when a checkpoint is complete ------------------------------------------------------------

def test_a_complete_folder_is_ready(model, tmp_path):
    assert incomplete_reason(copy_model(model, tmp_path / "ck")) is None


def test_a_missing_shard_truncated_file_or_trainer_state_is_not_ready(sharded, tmp_path):
    ck = copy_model(sharded, tmp_path / "checkpoint-8")
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": 8, "max_steps": 10}))
    assert incomplete_reason(ck) is None
    shards = sorted(ck.glob("model-*.safetensors"))
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])  # being written
    assert "still being written" in incomplete_reason(ck)  # or truncated
    shards[1].unlink()  # not there yet: the index lists it
    assert "missing" in incomplete_reason(ck)
    (ck / "model.safetensors.index.json").unlink()  # no index yet: the -of-N names tell
    assert "not written yet" in incomplete_reason(ck)
    shards[1].write_bytes(data)
    assert incomplete_reason(ck) is None
    (ck / "trainer_state.json").unlink()  # the Trainer writes it after the weights
    assert "trainer_state.json" in incomplete_reason(ck)
    (ck / "trainer_state.json").write_text("{")
    assert "trainer_state.json" in incomplete_reason(ck)


def test_marker_and_settle_time(model, tmp_path):
    root = tmp_path / "run"
    copy_model(model, root / "checkpoint-2")
    (root / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"max_steps": 6}))
    now = [100.0]
    w = CheckpointWatcher(root, settle_s=5, marker="evalsuite.ready", clock=lambda: now[0])
    ready, pending = w.poll()
    assert not ready and "marker" in pending[root / "checkpoint-2"]
    (root / "checkpoint-2" / "evalsuite.ready").write_text("{}")
    ready, pending = w.poll()
    assert not ready and "settling" in pending[root / "checkpoint-2"]
    now[0] += 6
    ready, _ = w.poll()
    assert ready == [root / "checkpoint-2"]
    w.mark_handled(ready[0])
    assert w.poll() == ([], {})  # scored once per content
    (root / "checkpoint-2" / "model.safetensors").write_bytes(
        (root / "checkpoint-2" / "model.safetensors").read_bytes())  # saved again
    os.utime(root / "checkpoint-2" / "model.safetensors", ns=(1, 1))
    ready, pending = w.poll()
    assert "settling" in pending[root / "checkpoint-2"]
    assert planned_final_step([root / "checkpoint-2"]) == 6
    shutil.rmtree(root / "checkpoint-2")  # save_total_limit deleted it
    assert w.poll() == ([], {})


def test_plans_are_recorded_once_and_bad_lines_skipped(tmp_path):
    store = ResultStore(tmp_path / "r")
    assert store.record_plans([{"series": "a", "size": "1m", "final_step": 100}] * 2) == 1
    assert store.record_plans([{"series": "a", "size": "1m", "final_step": 100}]) == 0
    with open(store.plans_path, "a") as fh:
        fh.write("not json\n")
    store.record_plans([{"series": "a", "size": "1m", "final_step": 200}])
    assert store.read_plans() == {("a", "1m"): 200}


# ---- the forecast ------------------------------------------------------------------------------

def curve(steps, f, se=0.005, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"series": "s", "size": "1m", "precision": "fp32", "task": "t",
                         "metric": "acc", "num_fewshot": 0, "is_primary": True, "step": steps,
                         "value": [f(s) + rng.normal(0, se) for s in steps], "stderr": se,
                         "n_samples": 5000})


def test_forecast_follows_a_saturating_curve_with_an_interval():
    def truth(s):
        return 0.8 - 0.6 * (s / 100) ** -0.4

    steps = [100, 200, 500, 1000, 2000, 5000]
    fc = forecast_final(curve(steps, truth), 50000)
    assert fc.lower <= truth(50000) <= fc.upper
    assert abs(fc.mean - truth(50000)) < 0.03
    assert fc.last_step == 5000 and fc.decades == pytest.approx(1.0)
    few = forecast_final(curve([100, 200, 500], truth), 50000)
    assert few.mean is None and "needs 4 checkpoints" in few.note
    assert forecast_final(curve(steps, truth), 5000).note == "the final step is reached"


def pythia_curves(sizes=("160m", "410m", "1.4b", "6.9b")):
    from evalsuite.importer import import_results
    from tests.conftest import shared_data_path

    root = shared_data_path("pythia_evals", "pythia-v1")
    files = [f for size in sizes for f in (root / f"pythia-{size}" / "zero-shot").glob("*.json")]
    return pd.DataFrame([r.to_dict() for r in import_results(files)])


def test_pythia_forecast_at_a_quarter_beats_both_naive_forecasts():
    """Issue 25's target on real curves: from checkpoints up to 25% of training, the forecast of
    step 143000 has a lower MAE on the core tasks than the latest score and a log-steps line.
    (Four sizes, no bootstrap, to stay fast; the full table is `evalsuite forecast --backtest`.)"""
    from evalsuite.scaling import CORE_TASKS

    rows = pythia_curves()
    result = forecast_backtest(rows, series=["pythia"], tasks=CORE_TASKS, final_step=143000,
                               cutoffs=(0.25,), n_boot=0)
    s = summarize_forecast_backtest(result).iloc[0]
    assert s["curves"] == 4 * len(CORE_TASKS)
    assert s["mae_forecast"] < s["mae_latest"] and s["mae_forecast"] < s["mae_log_line"], s


# ---- watch beside a real Trainer run -------------------------------------------------------------

def tiny_trainer(model_dir: Path, out: Path, *, max_steps: int, save_steps: int, callbacks=(),
                 pause_s: float = 0.0):
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback,
                              TrainingArguments)

    tok = AutoTokenizer.from_pretrained(model_dir)
    net = AutoModelForCausalLM.from_pretrained(model_dir)
    texts = ["the cat sat on the mat. " * 3, "one two three four five. " * 3] * 8

    class Texts(torch.utils.data.Dataset):
        def __len__(self):
            return len(texts)

        def __getitem__(self, i):
            ids = torch.tensor(tok(texts[i])["input_ids"][:48])
            return {"input_ids": ids, "labels": ids}

    class Pause(TrainerCallback):  # saves spread out in time, as in a real run
        def on_save(self, args, state, control, **kwargs):
            time.sleep(pause_s)

    args = TrainingArguments(str(out), max_steps=max_steps, save_steps=save_steps,
                             per_device_train_batch_size=1, report_to=[], use_cpu=True,
                             logging_steps=1, learning_rate=1e-3, save_only_model=True,
                             disable_tqdm=True, seed=0)
    return Trainer(model=net, args=args, train_dataset=Texts(), processing_class=tok,
                   callbacks=[Pause(), *callbacks])


class Watcher:
    """`evalsuite watch` in its own process, its JSON records read as they come."""

    def __init__(self, out: Path, results: Path, *extra: str):
        cmd = [sys.executable, "-m", "evalsuite", "watch", str(out), "--tasks", TASK, "--limit",
               "4", "--results", str(results), "--settle", "1", "--interval", "0.3", "--json",
               "--no-leaderboards", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.records: list[dict] = []
        self.stderr = ""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.records.append(json.loads(line))

    def steps(self) -> list[int]:
        return sorted(r["step"] for r in self.records)

    def wait_for(self, pred, timeout=120):
        end = time.time() + timeout
        while not pred():
            assert self.proc.poll() is None or pred(), self.finish()
            assert time.time() < end, f"watcher timed out; records {self.steps()}"
            time.sleep(0.2)

    def finish(self, timeout=120) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._t.join(5)
        self.stderr = self.proc.stderr.read()
        return rc


def write_slowly(src: Path, dst: Path, *, state: dict, pause_s: float):
    """Copy a sharded checkpoint into ``dst`` file by file, one shard in two halves, with
    pauses longer than the watcher's settle time; the index and trainer_state.json last."""
    dst.mkdir()
    files = sorted(src.iterdir(), key=lambda p: (p.name.endswith(".index.json"), p.name))
    for f in files:
        data = f.read_bytes()
        if f.name.startswith("model-00002"):
            dst.joinpath(f.name).write_bytes(data[: len(data) // 2])
            time.sleep(pause_s)
            with open(dst / f.name, "ab") as fh:
                fh.write(data[len(data) // 2:])
        else:
            dst.joinpath(f.name).write_bytes(data)
        time.sleep(pause_s)
    (dst / "trainer_state.json").write_text(json.dumps(state))


def test_watch_beside_a_trainer_run_kill_restart_and_a_slow_checkpoint(model, sharded, tmp_path):
    from evalsuite.series import hash_weights

    out, results = tmp_path / "run", tmp_path / "results"
    out.mkdir()
    first = Watcher(out, results)
    trainer = tiny_trainer(model, out, max_steps=6, save_steps=2, pause_s=1.5)
    trainer.train()  # checkpoint-2, -4, -6 while the watcher polls
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-4", "checkpoint-6"]
    first.wait_for(lambda: len(first.records) >= 1)
    first.proc.send_signal(signal.SIGKILL)  # killed while it works
    first.finish()
    scored_first = set(first.steps())

    second = Watcher(out, results, "--until-step", "8")
    write_slowly(sharded, out / "checkpoint-8", pause_s=1.6,
                 state={"global_step": 8, "max_steps": 8})
    assert second.finish() == 0, second.stderr  # it exits by itself once step 8 is scored
    assert "a checkpoint at step 8 or later is scored" in second.stderr
    assert set(second.steps()).isdisjoint(scored_first), "the restarted watcher redid work"
    assert scored_first | set(second.steps()) >= {2, 4, 8}

    frame = ResultStore(results).to_frame()
    prim = frame[frame["is_primary"].astype(bool)]
    per = prim.groupby(["step", "task"]).size()
    assert per.to_dict() == {(2, TASK): 1, (4, TASK): 1, (6, TASK): 1, (8, TASK): 1}, per
    # the step-8 row was scored from the whole checkpoint, not a half-written one
    row8 = prim[prim["step"] == 8].iloc[0]
    assert row8["weight_hash"] == hash_weights(out / "checkpoint-8")
    assert ResultStore(results).read_plans() == {("run", row8["size"]): 8}
    rec8 = next(r for r in second.records if r["step"] == 8)
    assert rec8["metrics"][TASK]["value"] == pytest.approx(row8["value"])


def test_callback_logs_metrics_into_the_trainer_history(model, tmp_path):
    from evalsuite.integrations import READY_MARKER, EvalsuiteCallback

    cb = EvalsuiteCallback([TASK], limit=4)
    trainer = tiny_trainer(model, tmp_path / "run", max_steps=4, save_steps=2, callbacks=[cb])
    cb.trainer = trainer
    trainer.train()
    assert cb.errors == []
    logged = [h for h in trainer.state.log_history if f"evalsuite/{TASK}/acc" in h]
    assert sorted(h["evalsuite/step"] for h in logged) == [2, 4], trainer.state.log_history
    rows = ResultStore(tmp_path / "run" / "evalsuite").to_frame()
    assert sorted(rows[rows["is_primary"].astype(bool)]["step"]) == [2, 4]

    queued = EvalsuiteCallback([TASK], mode="queue")
    trainer = tiny_trainer(model, tmp_path / "q", max_steps=2, save_steps=2, callbacks=[queued])
    trainer.train()
    assert json.loads((tmp_path / "q" / "checkpoint-2" / READY_MARKER).read_text())["step"] == 2


def test_leaderboard_shows_forecasts_only_for_runs_with_a_plan(tmp_path):
    from evalsuite.leaderboard import render_leaderboard
    from evalsuite.testing.rows import synthetic_rows

    rows = synthetic_rows(sizes=(("1m", 1_000_000), ("3m", 3_000_000)),
                          steps=(1000, 2000, 4000, 8000, 16000), tasks=("arc_easy",))
    plain = render_leaderboard(rows, scaling=True)
    assert "forecasts.md" not in plain  # no plan: the page is as before
    files = render_leaderboard(rows, scaling=True, plans={("ladder", "1m"): 100000})
    assert files["forecasts.md"] == render_leaderboard(
        rows, scaling=True, plans={("ladder", "1m"): 100000})["forecasts.md"]  # same bytes
    md = files["forecasts.md"].decode()
    assert "| arc\\_easy |" in md and "| 100000 |" in md and "| 3m |" not in md
    assert b"Forecast of the final score" in files["index.html"]
    assert b"forecasts.md" in files["README.md"]


def test_forecast_command_reads_plans_and_names_what_is_missing(tmp_path, capsys):
    from evalsuite.cli import main
    from evalsuite.testing.rows import synthetic_rows

    store = ResultStore(tmp_path / "r")
    store.append(synthetic_rows(sizes=(("1m", 1_000_000),), steps=(1000, 2000, 4000, 8000),
                                tasks=("arc_easy",)))
    assert main(["forecast", "--results", str(store.root)]) == 2
    assert "pass --final-step N" in capsys.readouterr().err
    store.record_plans([{"series": "ladder", "size": "1m", "final_step": 64000}])
    assert main(["forecast", "--results", str(store.root), "--json", "--n-boot", "20"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["final_step"] == 64000 and rec["last_step"] == 8000
    assert rec["lower"] <= rec["mean"] <= rec["upper"] and rec["decades"] == pytest.approx(0.903, abs=1e-3)
    assert main(["watch", str(tmp_path), "--tasks", "copa", "--final-step", "0"]) == 2
    assert main(["watch", str(tmp_path / "nope"), "--tasks", "copa"]) == 2
    assert main(["watch", str(tmp_path), "--tasks", "no_such_task", "--once"]) == 2


# ---- found by review (each failed before its fix) ---------------------------------------------

def test_a_nan_score_gives_a_strict_json_record_and_no_lost_forecast():
    from evalsuite.records import Checkpoint
    from evalsuite.run.watch import checkpoint_record

    frame = curve([100, 200, 500, 1000, 2000], lambda s: 0.8 - 0.6 * (s / 100) ** -0.4)
    frame = frame.assign(checkpoint_id=[f"s-1m@{s}:fp32" for s in frame["step"]])
    frame.loc[frame["step"] == 500, "value"] = float("nan")
    ck = Checkpoint(series="s", size="1m", step=2000, source="x")
    ck500 = Checkpoint(series="s", size="1m", step=500, source="x")
    frame.loc[frame["step"] == 2000, "checkpoint_id"] = ck.id
    frame.loc[frame["step"] == 500, "checkpoint_id"] = ck500.id
    rec = checkpoint_record(frame, ck500, final_step=None, new_cells=1)
    assert rec["metrics"]["t"]["value"] is None
    json.dumps(rec, allow_nan=False)
    steps = [100, 200, 500, 1000, 2000, 3000]
    nan_curve = curve(steps, lambda s: 0.8 - 0.6 * (s / 100) ** -0.4)
    nan_curve.loc[2, "value"] = float("nan")
    fc = forecast_final(nan_curve, 50000, n_boot=20)
    assert fc.mean is not None and fc.n_points == 4, fc.note  # 5 finite, 1 in the warm-up
    late = forecast_final(nan_curve, 1000)
    assert late.mean is None and "before the last checkpoint" in late.note


def test_a_folder_deleted_while_it_is_hashed_is_a_problem_not_a_crash(model, tmp_path, monkeypatch):
    import evalsuite.series as series

    copy_model(model, tmp_path / "run" / "checkpoint-2")

    def vanish(folder, chunk=1 << 20):
        raise FileNotFoundError(2, "No such file or directory", str(folder / "model.safetensors"))

    monkeypatch.setattr(series, "hash_weights", vanish)
    scan = series.scan_folders(tmp_path / "run", [tmp_path / "run" / "checkpoint-2"])
    assert scan.checkpoints == [] and "cannot read" in scan.problems[0][1]


def test_once_while_another_writer_holds_the_lock_exits_non_zero_naming_it(model, tmp_path,
                                                                           capsys, monkeypatch):
    from evalsuite.cli import main

    monkeypatch.setenv("EVALSUITE_LOCK_WAIT_S", "1")

    root = tmp_path / "run"
    copy_model(model, root / "step2")
    store = ResultStore(tmp_path / "r")
    with store.lock():
        code = main(["watch", str(root), "--tasks", TASK, "--limit", "2", "--results",
                     str(store.root), "--once", "--settle", "0", "--no-leaderboards",
                     "--nice", "0"])
    assert code == 1
    assert "holds the results folder's lock" in capsys.readouterr().err
    assert not list((tmp_path / "r").glob("claims/*.claim"))  # nothing left claimed


def test_the_callback_drains_a_chatty_stderr_and_keeps_the_real_error(model, tmp_path):
    from evalsuite.integrations import EvalsuiteCallback

    fake = tmp_path / "fake_python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('x' * 100 + '\\n') "
                    "if False else None\nfor _ in range(3000): sys.stderr.write('noise ' * 20 + "
                    "'\\n')\nsys.stderr.write('failed: ck x copa: boom\\n')\nsys.exit(1)\n")
    fake.chmod(0o755)
    cb = EvalsuiteCallback([TASK], python=str(fake))
    trainer = tiny_trainer(model, tmp_path / "run", max_steps=2, save_steps=2, callbacks=[cb])
    done = threading.Event()
    t = threading.Thread(target=lambda: (trainer.train(), done.set()), daemon=True)
    t.start()
    assert done.wait(120), "training hung on the scoring process's stderr"
    assert cb.errors == ["failed: ck x copa: boom"]


def test_queue_mode_matches_relative_checkpoint_paths(tmp_path):
    from evalsuite.integrations.hf import _inside

    out = tmp_path / "qrun"
    (out / "checkpoint-2").mkdir(parents=True)
    assert _inside(Path("qrun/checkpoint-2"), out)
    assert _inside(out / "checkpoint-2", out)
    assert not _inside(Path("other/checkpoint-2"), out)
    assert not _inside(tmp_path / "other" / "checkpoint-2", out)
