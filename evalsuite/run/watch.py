"""Score a training run's checkpoints as they are saved: ``evalsuite watch`` (docs/watch.md).

A watcher polls a checkpoint folder (any layout :func:`evalsuite.series.discover_series` reads
from a folder), and scores a checkpoint once it is complete, never a half-written one. A folder
is complete when

- ``config.json`` parses, a tokenizer and the weights are there;
- every weight shard is present: those a ``*.index.json`` lists, and ``-0000k-of-0000N`` names
  all N of them; each safetensors file is as long as its header says (a file still being
  written is shorter);
- in the Trainer's layout (``checkpoint-N/``), ``trainer_state.json`` parses (the Trainer
  writes it after the weights and the optimizer state);
- the marker file, when one is asked for (``--marker``), exists;
- and nothing in the folder (names, sizes, modification times) changed for ``settle_s`` seconds.

Scoring goes through :func:`evalsuite.run.run_series`, so a restarted watcher skips every cell
already in the results folder, a deleted checkpoint keeps its rows, and another writer holding
the folder's lock only delays the next poll.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..series import (SeriesError, find_model_folders, has_tokenizer, is_model_folder,
                      read_safetensors_header)

__all__ = ["incomplete_reason", "folder_signature", "CheckpointWatcher", "planned_final_step",
           "DEFAULT_SETTLE_S"]

#: Why a complete folder waits: another writer holds the results folder (see _waiting).
LOCKED = "waiting: another evalsuite process holds the results folder's lock"
#: Seconds a complete-looking folder must stay unchanged before it is scored.
DEFAULT_SETTLE_S = 10.0
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d+)-of-(?P<n>\d+)\.(?P<ext>safetensors|bin)$")


def folder_signature(folder: Path) -> tuple:
    """(name, size, mtime) of every file in the folder: any write changes it."""
    out = []
    try:
        for p in sorted(folder.iterdir()):
            try:
                st = p.stat()
            except OSError:  # removed between listing and stat
                continue
            if p.is_file():
                out.append((p.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(out)


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def incomplete_reason(folder: Path, *, marker: str | None = None) -> str | None:
    """Why ``folder`` is not a finished checkpoint yet, or None when it is complete."""
    if _json_file(folder / "config.json") is None:
        return "config.json is not written yet (or is not valid JSON)"
    for index_name in _INDEX_FILES:
        index = folder / index_name
        if index.exists():
            data = _json_file(index)
            if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
                return f"{index_name} is not written yet (or is not valid JSON)"
            missing = sorted({str(v) for v in data["weight_map"].values()}
                             - {p.name for p in folder.iterdir()})
            if missing:
                return f"{len(missing)} weight shard(s) listed in {index_name} are missing ({missing[0]})"
    names = {p.name for p in folder.iterdir() if p.is_file()}
    for name in sorted(names):
        m = _SHARD.match(name)
        if m:
            n = int(m["n"])
            width = len(m["n"])
            want = {f"{m['stem']}-{i:0{len(m['i'])}d}-of-{n:0{width}d}.{m['ext']}"
                    for i in range(1, n + 1)}
            if want - names:
                return f"weight shards of {m['stem']}: {len(want - names)} of {n} not written yet"
    if not is_model_folder(folder):
        return "no weights yet (*.safetensors or pytorch_model*.bin)"
    for p in sorted(folder.glob("*.safetensors")):
        try:
            read_safetensors_header(p)
        except SeriesError as e:  # a corrupt header goes on to scoring, which reports it once
            if "truncated" in str(e):
                return (f"{p.name} is shorter than its header says: still being written, or "
                        "truncated (if it stays so, re-save the checkpoint)")
    if not has_tokenizer(folder):
        return "no tokenizer files yet"
    if folder.name.startswith("checkpoint-") and not isinstance(
            _json_file(folder / "trainer_state.json"), dict):
        return "trainer_state.json is not written yet (the Trainer writes it after the weights)"
    if marker and not (folder / marker).exists():
        return f"waiting for the marker file {marker}"
    return None


def planned_final_step(folders) -> int | None:
    """The largest ``max_steps`` in the folders' trainer_state.json (the Trainer's plan)."""
    best = None
    for folder in folders:
        state = _json_file(Path(folder) / "trainer_state.json")
        if isinstance(state, dict) and isinstance(state.get("max_steps"), int) and state["max_steps"] > 0:
            best = max(best or 0, state["max_steps"])
    return best


@dataclass
class _Seen:
    signature: tuple
    since: float  # clock time when this signature was first seen
    handled: bool = False  # scored (or found unreadable) with this signature


@dataclass
class CheckpointWatcher:
    """Polls ``root`` and reports the model folders that became complete.

    ``poll()`` returns (ready, pending): folders to score now, and folders not finished yet with
    why. A folder is returned as ready once per content (``mark_handled`` after scoring it); if
    its files change afterwards (a checkpoint saved again under the same name), it is checked
    again.
    """

    root: Path
    settle_s: float = DEFAULT_SETTLE_S
    marker: str | None = None
    max_depth: int = 4
    clock: Callable[[], float] = time.monotonic
    _seen: dict[Path, _Seen] = field(default_factory=dict)
    last_change: float | None = None

    def candidates(self) -> list[Path]:
        root = Path(self.root)
        if (root / "config.json").is_file():
            return [root]
        return find_model_folders(root, self.max_depth)

    def poll(self) -> tuple[list[Path], dict[Path, str]]:
        now = self.clock()
        if self.last_change is None:
            self.last_change = now
        ready: list[Path] = []
        pending: dict[Path, str] = {}
        present = set()
        for folder in self.candidates():
            present.add(folder)
            sig = folder_signature(folder)
            seen = self._seen.get(folder)
            if seen is None or seen.signature != sig:
                seen = self._seen[folder] = _Seen(sig, now)
                self.last_change = now
            if seen.handled:
                continue
            reason = incomplete_reason(folder, marker=self.marker)
            if reason is None and now - seen.since < self.settle_s:
                reason = (f"settling: unchanged for {now - seen.since:.0f} of {self.settle_s:g} s")
            if reason is not None:
                pending[folder] = reason
            else:
                ready.append(folder)
        for gone in set(self._seen) - present:  # deleted (save_total_limit): its rows stay
            del self._seen[gone]
        return ready, pending

    def mark_handled(self, folder: Path) -> None:
        if folder in self._seen:
            self._seen[folder].handled = True

    def idle_for(self) -> float:
        """Seconds since any candidate folder last changed (or since the first poll)."""
        return 0.0 if self.last_change is None else self.clock() - self.last_change


@dataclass
class WatchReport:
    scored: list[str] = field(default_factory=list)  # checkpoint ids with newly scored cells
    failures: list[tuple[str, str]] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # folder -> why, at exit
    stopped_because: str = ""
    polls: int = 0


def _finite(v) -> float | None:
    """A number for a record, None where missing or NaN (the record stays strict JSON)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def checkpoint_record(frame, ckpt, *, final_step: int | None, new_cells: int,
                      tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """One scored checkpoint: its primary metrics per task (``tasks``: only these) and, with a
    planned final step, the forecast of each task's final score from this size so far. A NaN
    score is None here (and the forecast leaves it out)."""
    from ..scaling.forecast import forecast_final

    rows = frame[(frame["checkpoint_id"] == ckpt.id) & frame["is_primary"].astype(bool)]
    if tasks is not None:
        rows = rows[rows["task"].isin(list(tasks))]
    metrics, forecast = {}, {}
    for _, r in rows.sort_values(["task", "precision"]).iterrows():
        metrics[str(r["task"])] = {"metric": str(r["metric"]), "value": _finite(r["value"]),
                                   "stderr": _finite(r["stderr"]),
                                   "precision": str(r["precision"])}
        if final_step is not None and ckpt.step is not None:
            curve = frame[(frame["series"] == ckpt.series) & (frame["size"] == ckpt.size)
                          & (frame["task"] == r["task"]) & (frame["metric"] == r["metric"])
                          & (frame["precision"] == r["precision"])
                          & (frame["num_fewshot"] == r["num_fewshot"])
                          & (frame["step"].astype(float) <= ckpt.step)]
            try:
                forecast[str(r["task"])] = forecast_final(curve, final_step).to_dict()
            except ValueError:
                pass
    return {"checkpoint": ckpt.id, "series": ckpt.series, "size": ckpt.size, "step": ckpt.step,
            "source": ckpt.source, "new_cells": new_cells, "metrics": metrics,
            "final_step": final_step, "forecast": forecast}


def watch_series(watcher: CheckpointWatcher, specs, registry, store, config, *,
                 interval_s: float = 30.0, until_step: int | None = None,
                 idle_exit_s: float | None = None, final_step: int | None = None,
                 tokens_per_step: int | None = None,
                 on_scored: Callable[[dict[str, Any]], None] = lambda record: None,
                 on_event: Callable[[str], None] = lambda msg: None,
                 after_batch: Callable[[], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> WatchReport:
    """Poll, score what became complete, repeat; returns when a stop condition holds.

    ``until_step``: stop once a checkpoint at that step or later is scored (or found already
    scored). ``idle_exit_s``: stop when no candidate folder appeared or changed for that long
    and nothing is being written (0: one pass). ``final_step``: the planned last step for the
    forecasts (default: ``max_steps`` from trainer_state.json); recorded in the store.
    """
    report = WatchReport()
    warned: dict[Path, tuple] = {}
    while True:
        report.polls += 1
        ready, pending = watcher.poll()
        reached = False
        if ready:
            reached = _score(ready, pending, watcher, specs, registry, store, config, report,
                             warned, final_step=final_step, until_step=until_step,
                             tokens_per_step=tokens_per_step, on_scored=on_scored,
                             on_event=on_event, after_batch=after_batch)
        report.pending = {str(k): v for k, v in pending.items()}
        if reached:
            report.stopped_because = f"a checkpoint at step {until_step} or later is scored"
            return report
        if idle_exit_s == 0:
            report.stopped_because = "one pass"
            return report
        if idle_exit_s is not None and watcher.idle_for() >= idle_exit_s and not _settling(pending):
            report.stopped_because = f"nothing new for {idle_exit_s:g} s"
            return report
        sleep(interval_s)


def _score(ready, pending, watcher, specs, registry, store, config, report, warned, *,
           final_step, until_step, tokens_per_step, on_scored, on_event, after_batch) -> bool:
    """Score the folders that became ready; True when one at ``until_step`` or later is done."""
    from ..series import scan_folders
    from ..store import StoreLockedError
    from .driver import run_series

    scan = scan_folders(watcher.root, ready, tokens_per_step=tokens_per_step)
    for where, why in scan.problems:  # complete but unreadable: said once per content
        folder = Path(where)
        if not folder.exists():  # deleted meanwhile (save_total_limit): nothing to score
            continue
        sig = folder_signature(folder)
        if warned.get(folder) != sig:
            warned[folder] = sig
            on_event(f"cannot score {where}: {why}")
        watcher.mark_handled(folder)
        pending[folder] = why
    if not scan.checkpoints:
        return False
    plan = final_step or planned_final_step(ready)
    if plan:
        store.record_plans([{"series": c.series, "size": c.size, "final_step": plan}
                            for c in scan.checkpoints])
    before = store.done_cells()
    plans = store.read_plans()  # recorded above; read once for the batch
    by_id = {c.id: c for c in scan.checkpoints}
    state = {"reached": False}

    def emit(ck) -> None:
        frame = store.to_frame()
        primary = frame[frame["is_primary"].astype(bool)] if len(frame) else frame
        mine = primary[primary["checkpoint_id"] == ck.id] if len(primary) else primary
        if until_step is not None and ck.step is not None and ck.step >= until_step and len(mine):
            state["reached"] = True
        n_new = int((~mine["cell_key"].isin(before)).sum()) if len(mine) else 0
        if n_new:  # a cell that failed is in report.failures
            report.scored.append(ck.id)
            on_scored(checkpoint_record(frame, ck, new_cells=n_new, tasks=[sp.name for sp in specs],
                                        final_step=plans.get((ck.series, ck.size))))

    def progress(finished, n_groups):
        for ck_id in finished:  # a group is one checkpoint at one precision
            if ck_id in by_id and ck_id not in emitted:
                emitted.add(ck_id)
                emit(by_id[ck_id])
            yield ck_id

    emitted: set[str] = set()
    try:
        run = run_series(scan.checkpoints, specs, registry, store, config, on_event=on_event,
                         progress=progress)
    except StoreLockedError as e:  # another writer: the folders stay ready for the next poll
        on_event(f"{e}; trying again at the next poll")
        for ck in scan.checkpoints:
            pending[Path(ck.source)] = LOCKED
        return False
    report.failures += run.failures
    for ck in scan.checkpoints:
        watcher.mark_handled(Path(ck.source))
        if ck.id not in emitted:  # every cell was already scored: nothing to print
            emit(ck)
    if run.completed and after_batch is not None:
        after_batch()
    return state["reached"]


def _settling(pending: dict[Path, str]) -> bool:
    """Whether a pending folder is complete and only waiting for its settle time or for the
    results folder's lock (so a later poll scores it), as opposed to one that stopped
    half-written."""
    return any(why.startswith("settling") or why == LOCKED for why in pending.values())
