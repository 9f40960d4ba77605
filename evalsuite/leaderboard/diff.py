"""Checking a built leaderboards folder against a fresh build, and diffing result cells.

``compare_folders`` is what ``evalsuite leaderboard --check`` runs (CI); ``diff_cells`` is
``--diff REF``: the cells whose value moved by more than their combined standard error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .build import MANIFEST_FILE, manifest_files
from .cells import ScoreCell, finite, none_last, precision_rank

__all__ = ["FolderDifference", "compare_folders", "CellChange", "diff_cells",
           "cells_from_csv_folder"]


@dataclass(frozen=True)
class FolderDifference:
    path: str
    kind: str  # "changed", "missing" (built, not committed), "stale" (committed, not built)


def compare_folders(built: str | os.PathLike, committed: str | os.PathLike) -> list[FolderDifference]:
    """Files that differ between a fresh build and the committed folder.

    Compares every file of the fresh build and every file the committed MANIFEST.json lists.
    """
    built, committed = Path(built), Path(committed)
    new = manifest_files(built)
    old = manifest_files(committed)
    diffs = []
    for rel in sorted(new | old):
        a, b = built / rel, committed / rel
        if rel not in new:
            if b.exists():
                diffs.append(FolderDifference(rel, "stale"))
        elif not b.is_file():
            diffs.append(FolderDifference(rel, "missing"))
        elif a.read_bytes() != b.read_bytes():
            diffs.append(FolderDifference(rel, "changed"))
    return diffs


@dataclass(frozen=True)
class CellChange:
    """A cell whose value moved between two result sets (or appeared, or disappeared)."""

    status: str  # "changed", "added", "removed"
    task: str
    series: str
    size: str
    step: int | None
    precision: str
    shots: int | None
    old: float | None
    new: float | None
    delta: float | None
    z: float | None  # delta over the combined stderr sqrt(se_old^2 + se_new^2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def diff_cells(old: Iterable[ScoreCell], new: Iterable[ScoreCell], *, include_within: bool = False
               ) -> tuple[list[CellChange], int]:
    """Cells that changed beyond their stderr, plus added and removed cells.

    A change counts when |new - old| > sqrt(se_old^2 + se_new^2); with no stderr on either side
    any change beyond 1e-12 counts. Returns (changes, cells that moved within their stderr).
    """
    old_map = {c.key: c for c in old}
    new_map = {c.key: c for c in new}
    changes: list[CellChange] = []
    within = 0

    def mk(status, key, o, n, delta=None, z=None):
        return CellChange(status, key[0], key[1], key[2], key[3], key[4], key[5], o, n, delta, z)

    for key in set(old_map) | set(new_map):
        o, n = old_map.get(key), new_map.get(key)
        if o is None:
            changes.append(mk("added", key, None, n.value))
            continue
        if n is None:
            changes.append(mk("removed", key, o.value, None))
            continue
        if o.value is None or n.value is None:
            if (o.value is None) != (n.value is None):
                changes.append(mk("changed", key, o.value, n.value))
            continue
        delta = n.value - o.value
        ses = [s for s in (o.stderr, n.stderr) if s is not None]
        se = math.sqrt(sum(s * s for s in ses)) if ses else 0.0
        if se > 0:
            z = delta / se
            beyond = abs(delta) > se
        else:
            z = None
            beyond = abs(delta) > 1e-12
        if beyond or (include_within and abs(delta) > 1e-12):
            changes.append(mk("changed", key, o.value, n.value, delta, z))
        elif abs(delta) > 1e-12:
            within += 1
    order = {"changed": 0, "added": 1, "removed": 2}
    changes.sort(key=lambda c: (order[c.status], c.task, c.series, c.size, none_last(c.step),
                                precision_rank(c.precision), none_last(c.shots)))
    return changes, within


def cells_from_csv_folder(folder: str | os.PathLike) -> list[ScoreCell]:
    """Cells read back from a built leaderboard folder's ``tasks/*.csv`` (for ``--diff DIR``)."""
    import csv

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    cells = []
    for rel in sorted(manifest.get("files", {})):
        if not (rel.startswith("tasks/") and rel.endswith(".csv")):
            continue
        with open(folder / rel, newline="", encoding="utf-8") as fh:
            lines = [ln for ln in fh if not ln.startswith("#")]
        for rec in csv.DictReader(lines):
            cells.append(_cell_from_csv(rec))
    return cells


def _cell_from_csv(rec: Mapping[str, str]) -> ScoreCell:
    from .render import csv_unescape

    def num(k):
        v = rec.get(k, "")
        return finite(v) if v not in ("", None) else None

    def integer(k):
        v = num(k)
        return None if v is None else int(v)

    return ScoreCell(task=csv_unescape(rec["task"]), series=csv_unescape(rec["series"]),
                size=csv_unescape(rec["size"]), step=integer("step"),
                precision=csv_unescape(rec["precision"]), num_fewshot=integer("shots"),
                metric=csv_unescape(rec.get("metric", "")), value=num("value"),
                stderr=num("stderr"), score=num("score"), score_stderr=num("score_stderr"),
                chance=num("chance"), higher_is_better=True, n_params=integer("n_params"),
                tokens_seen=integer("tokens_seen"), compute_flops=num("compute_flops"),
                model_bits=None, n_samples=integer("n"), limit=None, digest="")

