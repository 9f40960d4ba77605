"""``EvalsuiteCallback``: evaluate a Hugging Face Trainer's checkpoints as they are saved.

Two modes:

- ``subprocess`` (default): after each save, ``evalsuite watch OUTPUT_DIR --once`` runs in a
  background process at low CPU priority (one at a time: a save while one runs is picked up by
  the next), scores every checkpoint not scored yet, and prints one JSON record per checkpoint.
  The callback reads those records between training steps and logs the primary metrics (and the
  forecast of the final score) with ``trainer.log``, so they reach ``state.log_history`` and every
  logger the Trainer reports to (TensorBoard, W&B, ...). Training never waits for scoring,
  except, with ``wait_at_end=True``, at the end of training for the last checkpoints.
- ``queue``: after each save, the callback writes ``evalsuite.ready`` into the checkpoint
  folder; an ``evalsuite watch OUTPUT_DIR --marker evalsuite.ready`` started separately (on
  this machine or another that sees the folder) scores it. The callback then logs what the
  watcher has written into ``results`` at each save and at the end of training.

Metrics are logged under ``evalsuite/<task>/<metric>`` with ``evalsuite/step`` (the scored
checkpoint's step; the Trainer adds its own current ``step``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from transformers import TrainerCallback

from . import READY_MARKER

log = logging.getLogger(__name__)

__all__ = ["EvalsuiteCallback"]

#: Lines of `evalsuite watch`'s stderr that say what failed (kept for ``callback.errors``).
_PROBLEM_PREFIXES = ("error:", "failed:", "not scored:", "cannot score", "skipping", "cell ",
                     "Traceback", "warning: leaderboards")


class EvalsuiteCallback(TrainerCallback):
    """Score each saved checkpoint on ``tasks`` without blocking training.

    ``trainer``: the Trainer whose ``log`` carries the metrics to its loggers (set it here or
    with ``callback.trainer = trainer``; without one the metrics are appended to
    ``state.log_history`` only). ``results``: the results folder (default ``OUTPUT_DIR/evalsuite``).
    ``limit``, ``num_fewshot``, ``device``, ``batch_size``, ``data_dir``: as in ``evalsuite run``;
    ``extra_args``: more ``evalsuite watch`` flags. ``nice``: CPU priority drop of the scoring
    process.
    """

    def __init__(self, tasks: Sequence[str], *, trainer=None, mode: str = "subprocess",
                 results: str | None = None, limit: int | None = None,
                 num_fewshot: int | None = None, device: str = "cpu", batch_size: str = "8",
                 data_dir: str | None = None, extra_args: Sequence[str] = (), nice: int = 10,
                 wait_at_end: bool = True, python: str = sys.executable):
        if mode not in ("subprocess", "queue"):
            raise ValueError(f"mode={mode!r}: use 'subprocess' or 'queue'")
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        if not tasks:
            raise ValueError("EvalsuiteCallback needs at least one task name")
        self.tasks = list(tasks)
        self.trainer = trainer
        self.mode = mode
        self.results = results
        self.limit, self.num_fewshot = limit, num_fewshot
        self.device, self.batch_size, self.data_dir = device, str(batch_size), data_dir
        self.extra_args = list(extra_args)
        self.nice = nice
        self.wait_at_end = wait_at_end
        self.python = python
        self._proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._dirty = False  # a save happened while a scoring process ran
        self._logged: set[tuple[str, str]] = set()  # (checkpoint, task) already logged
        self._output_dir: Path | None = None
        self._max_steps: int | None = None
        self.errors: list[str] = []  # what the scoring processes reported as failed (each once)

    # ---- Trainer events --------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._output_dir = Path(args.output_dir)
        self._max_steps = state.max_steps if getattr(state, "max_steps", 0) else None

    def on_save(self, args, state, control, **kwargs):
        self._output_dir = Path(args.output_dir)
        folder = self._output_dir / f"checkpoint-{state.global_step}"
        if self.mode == "queue":
            if folder.is_dir():
                (folder / READY_MARKER).write_text(json.dumps(
                    {"step": state.global_step, "max_steps": state.max_steps,
                     "tasks": self.tasks}) + "\n", encoding="utf-8")
            self._log_from_store(state)
            return
        self._collect(state)
        if self._proc is None:
            self._start()
        else:
            self._dirty = True

    def on_step_end(self, args, state, control, **kwargs):
        self._collect(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.mode == "queue":
            self._log_from_store(state)
            return
        if not self.wait_at_end:
            self._collect(state)
            return
        while self._proc is not None:
            self._proc.wait()
            self._collect(state)

    # ---- the scoring process -----------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return Path(self.results) if self.results else (self._output_dir or Path(".")) / "evalsuite"

    def command(self) -> list[str]:
        """The ``evalsuite watch`` command the callback runs after a save."""
        cmd = [self.python, "-m", "evalsuite", "watch", str(self._output_dir), "--once",
               "--settle", "0", "--tasks", ",".join(self.tasks), "--results",
               str(self.results_dir), "--json", "--no-leaderboards", "--nice", str(self.nice),
               "--device", self.device, "--batch-size", self.batch_size]
        if self.limit is not None:
            cmd += ["--limit", str(self.limit)]
        if self.num_fewshot is not None:
            cmd += ["--num-fewshot", str(self.num_fewshot)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self._max_steps:
            cmd += ["--final-step", str(self._max_steps)]
        return cmd + self.extra_args

    def _start(self) -> None:
        self._dirty = False
        proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self._proc = proc
        self._stderr: list[str] = []

        def read_stdout() -> None:
            for line in proc.stdout:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    with self._lock:
                        self._records.append(rec)

        def read_stderr() -> None:  # drained as it comes: a full pipe would stall the child
            for line in proc.stderr:
                line = line.rstrip()
                if line.startswith(_PROBLEM_PREFIXES):
                    self._stderr.append(line)

        self._readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr)]
        for t in self._readers:
            t.start()

    def _collect(self, state) -> None:
        """Log what finished; start the next process when a save came in meanwhile."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            for t in self._readers:
                t.join()
            if proc.returncode not in (0, None):
                problems = self._stderr or [f"exit code {proc.returncode}"]
                for why in problems:
                    if why not in self.errors:  # a broken checkpoint fails at every pass
                        self.errors.append(why)
                        log.warning("evalsuite scoring: %s (command: %s)", why,
                                    " ".join(self.command()))
            self._proc = None
        with self._lock:
            records, self._records = self._records, []
        for rec in records:
            self._log_record(rec, state)
        if self._proc is None and self._dirty:
            self._start()

    # ---- logging ---------------------------------------------------------------------------
    def _log_record(self, rec: dict[str, Any], state) -> None:
        logs: dict[str, float] = {}
        for task, m in sorted(rec.get("metrics", {}).items()):
            if (rec["checkpoint"], task) in self._logged:
                continue
            self._logged.add((rec["checkpoint"], task))
            logs[f"evalsuite/{task}/{m['metric']}"] = float(m["value"])
            fc = rec.get("forecast", {}).get(task) or {}
            if fc.get("mean") is not None and fc.get("final_step", 0) > fc.get("last_step", 0):
                logs[f"evalsuite/{task}/{m['metric']}_forecast_final"] = float(fc["mean"])
        if not logs:
            return
        if rec.get("step") is not None:
            logs["evalsuite/step"] = float(rec["step"])
        if self.trainer is not None:
            self.trainer.log(logs)
        else:
            state.log_history.append({**logs, "step": state.global_step})

    def _log_from_store(self, state) -> None:
        """Queue mode: log the rows a watcher has written for this run's checkpoints."""
        from ..store import ResultStore

        root = self.results_dir
        if not (root / "rows.jsonl").exists():
            return
        frame = ResultStore(root).to_frame()
        out = self._output_dir.resolve() if self._output_dir else None
        prim = frame[frame["is_primary"].astype(bool)]
        for ck, g in prim.groupby("checkpoint_id", sort=True):
            sources = [Path(s) for s in g["checkpoint_source"].dropna()]
            if out is not None and sources and not any(_inside(s, out) for s in sources):
                continue
            rec = {"checkpoint": ck, "step": None if g["step"].isna().all() else int(g["step"].max()),
                   "metrics": {r.task: {"metric": r.metric, "value": r.value}
                               for r in g.itertuples(index=False)}}
            self._log_record(rec, state)


def _inside(source: Path, out: Path) -> bool:
    """Whether a row's checkpoint folder is one of this run's: an absolute path under ``out``,
    or a relative one (the watcher's working directory is unknown) naming a checkpoint folder
    of ``out`` by its last two parts."""
    if source.is_absolute():
        return out == source or out in source.resolve().parents
    parts = source.parts
    return len(parts) >= 2 and parts[-2] == out.name and (out / parts[-1]).is_dir()
