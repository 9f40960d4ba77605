"""The driver of a run: plan the grid, skip finished cells, schedule groups, write the store.

In a run, this process alone writes the store, whichever executor scores the groups: each cell
(per-sample Parquet first, then its rows, under the folder's lock) as soon as it reaches the
driver, after each cell locally and after each group from Ray, so a killed run loses at most the
work in flight and a rerun skips every finished cell. Other runs may write the same folder at
once: before a group is scored its cells are claimed (:meth:`ResultStore.claim_cells`), cells
another live writer claimed are left to it, and a heartbeat keeps this writer's claims fresh.
Ray is imported only when a run asks for it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ..engine.patches import RunTuning, apply_run_tuning
from ..records import Checkpoint, RunConfig, TaskSpec
from ..store import ResultStore, writer_lock_wait
from .evaluate import CellFailure, CellOutcome, package_versions
from .executors.local import LocalExecutor
from .keys import fingerprint_task
from .plan import Cell, group_cells, plan_cells, shard_of, unique_checkpoints
from .rows import rows_for_cell

log = logging.getLogger(__name__)

__all__ = ["RunReport", "run_series"]


@dataclass
class RunReport:
    planned: int = 0
    skipped: int = 0
    completed: int = 0
    rows_written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=lambda: {"executor": "local"})
    tuning: RunTuning | None = None  # the speed-ups this process switched on
    elsewhere: int = 0  # cells left to another writer that had claimed them

    def summary(self) -> dict[str, Any]:
        return {"planned": self.planned, "skipped_done": self.skipped, "completed": self.completed,
                "claimed_by_another_writer": self.elsewhere,
                "rows_written": self.rows_written,
                "failures": [{"what": w, "error": e} for w, e in self.failures],
                "executor": self.executor,
                "tuning": dataclasses.asdict(self.tuning) if self.tuning else None}


class Driver:
    """Schedules groups on an executor and is the only writer of the store.

    Checkpoints with identical weights (duplicate step branches) are scored once: a group whose
    cells share weights with cells still being scored waits for them, then copies their rows.
    """

    def __init__(self, store: ResultStore, config: RunConfig, report: RunReport, say, versions):
        self.store, self.config, self.report, self.say = store, config, report, say
        self.versions = versions
        self.sources: dict[tuple, CellOutcome] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.claimed: set[str] = set()  # cell keys this writer holds claims on

    def claim(self, cells: Sequence[Cell]) -> list[Cell]:
        """The cells of a group this writer may score now: not done, not claimed by another."""
        got, elsewhere = self.store.claim_cells([c.key for c in cells], self.owner)
        self.claimed |= set(got)
        self.report.elsewhere += len(elsewhere)
        mine = set(got)
        return [c for c in cells if c.key in mine]

    @staticmethod
    def weights_key(cell: Cell) -> tuple | None:
        ck = cell.checkpoint  # everything that is loaded except where it was loaded from
        return (ck.weight_hash, ck.tokenizer_hash, ck.model_config_hash, ck.precision,
                cell.task.name, cell.fingerprint) if ck.weight_hash else None

    def record(self, item: CellOutcome | CellFailure) -> None:
        """Write a finished cell (samples first, then rows) or report a failure."""
        if isinstance(item, CellFailure):
            self.report.failures.append((item.what, item.error))
            self.say(item.message)
            return
        with self.store.lock(wait=writer_lock_wait()):  # other writers append too
            self.store.write_samples(item.cell.key, item.frame)
            self.report.rows_written += self.store.append(item.rows)
        self.store.release_claims([item.cell.key], self.owner)
        self.claimed.discard(item.cell.key)
        self.report.completed += 1
        self.say(item.message)
        wkey = self.weights_key(item.cell)
        if wkey is not None:
            self.sources[wkey] = item

    def copy(self, cell: Cell, source: CellOutcome) -> None:
        rows = rows_for_cell(cell, source.scores, self.config,
                             wall_time_s=source.wall_time_s,
                             batch_size=str(self.config.batch_size), versions=self.versions,
                             applied=source.applied,
                             n_skipped_items=source.rows[0].n_skipped_items if source.rows else 0)
        self.record(CellOutcome(cell, rows, source.frame, source.scores, source.wall_time_s,
                                source.applied, f"{cell.checkpoint.id} {cell.task.name}: same "
                                "weights as an evaluated checkpoint; rows copied"))

    def drive(self, groups: Sequence[Sequence[Cell]], executor) -> Iterator[str]:
        """Run every group; yields a checkpoint id as each group finishes."""
        waiting = list(groups)
        inflight: dict[Any, tuple[str, set]] = {}
        busy: set = set()  # weights keys of cells being scored

        while waiting or inflight:
            still = []
            for cells in waiting:
                wkeys = {self.weights_key(c) for c in cells} - {None}
                if wkeys & busy or not executor.has_capacity():
                    still.append(cells)
                    continue
                cells = self.claim(cells)
                if not cells:  # done meanwhile, or another writer is on them
                    continue
                rest = []
                for cell in cells:
                    source = self.sources.get(self.weights_key(cell))
                    if source is not None:
                        self.copy(cell, source)
                    else:
                        rest.append(cell)
                if not rest:
                    yield cells[0].checkpoint.id
                    continue
                mine = {self.weights_key(c) for c in rest} - {None}
                busy |= mine
                inflight[executor.submit(rest, self.record)] = (cells[0].checkpoint.id, mine)
            waiting = still
            if not inflight and waiting:  # cannot happen: only work in flight holds a group back
                raise RuntimeError("scheduler stalled with groups waiting and none in flight")
            if inflight:
                handle, items = executor.next_finished()
                for item in items:
                    self.record(item)
                ck_id, mine = inflight.pop(handle)
                busy -= mine
                yield ck_id


class _Heartbeat:
    """Refreshes the writer's claims every quarter of the claim TTL, so they never expire while
    the writer lives (a killed writer's claims do)."""

    def __init__(self, store: ResultStore, driver: Driver):
        self.store, self.driver = store, driver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="evalsuite-claims")
        self._thread.start()

    def _run(self) -> None:
        period = max(0.2, self.store.claim_ttl() / 4)
        while not self._stop.wait(period):
            self.store.refresh_claims(list(self.driver.claimed), self.driver.owner)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def run_series(checkpoints: Sequence[Checkpoint], specs: Sequence[TaskSpec], registry,
               store: ResultStore, config: RunConfig, *,
               progress: Callable[[Iterator[str], int], Any] | None = None,
               on_event: Callable[[str], None] | None = None,
               ray_options=None, shard: tuple[int, int] | None = None) -> RunReport:
    """Evaluate every missing cell; write rows as each finishes. Returns what happened.

    The unit of work is a group: one checkpoint at one precision with all its missing cells.
    ``ray_options`` (:class:`evalsuite.run.executors.ray.RayOptions`) runs the groups as Ray tasks;
    by default they run here, one after another. Either way only this process writes ``store``.
    ``progress(finished, n_groups)`` wraps the stream of checkpoint ids as groups finish.
    ``shard=(i, n)``: only the cells of shard i of n (:func:`~evalsuite.run.plan.shard_of`), for
    array jobs; the n shards together are the whole grid.
    """
    say = on_event or (lambda msg: log.info("%s", msg))
    report = RunReport()
    report.tuning = apply_run_tuning(config.tuning, device=config.device)
    checkpoints, notes = unique_checkpoints(checkpoints)
    for note in notes:
        say(note)
    # Every task is built (its documents read and checked) before any checkpoint loads: a data
    # error stops the run first, and the cell keys need what each task will actually score.
    built = {spec.name: registry.build(spec.name) for spec in specs}
    fingerprints = {name: fingerprint_task(t) for name, t in built.items()}
    cells = plan_cells(checkpoints, specs, config, fingerprints)
    if shard is not None:
        i, n = shard
        cells = [c for c in cells if shard_of(c, n) == i]
        say(f"shard {i}/{n}: {len(cells)} cells")
    done = store.done_cells()
    todo = [c for c in cells if c.key not in done]
    report.planned, report.skipped = len(cells), len(cells) - len(todo)
    if report.skipped:
        say(f"skipping {report.skipped} of {len(cells)} cells already in {store.root}")
    if not todo:
        say("nothing to do: every cell is finished")
        return report
    groups = group_cells(todo)
    if ray_options is None:
        executor = LocalExecutor(registry, config, todo, built, fingerprints)
    else:
        from .executors.ray import RayExecutor

        executor = RayExecutor(ray_options, registry, config, say=say)
    driver = Driver(store, config, report, say, package_versions())
    heartbeat = _Heartbeat(store, driver)
    try:
        finished = driver.drive(groups, executor)
        for _ in (progress(finished, len(groups)) if progress else finished):
            pass
    finally:
        heartbeat.stop()
        try:
            executor.close()
        finally:
            store.release_claims(list(driver.claimed), driver.owner)
    report.executor = executor.stats()
    if report.elsewhere:
        say(f"{report.elsewhere} cells were being scored by another writer of {store.root}; "
            "that writer adds them (rerun to check: a killed writer's cells are taken over "
            f"once its claims are {store.claim_ttl():.0f} s old)")
    return report
