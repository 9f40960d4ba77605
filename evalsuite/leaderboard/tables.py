"""Cells -> tables: per task, the summary across tasks, and the precision frontier."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..records import latest_by
from .cells import ScoreCell, digest_of, none_last, precision_rank

__all__ = ["Table", "LeaderboardData", "TASK_COLUMNS", "TASK_FORMATS", "task_table", "summary_table",
           "precision_table", "task_slug"]

# ---- the tables -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """A rendered table: column names, rows of values, and the digest of the rows behind it."""

    name: str  # file stem under the out folder, e.g. "summary", "tasks/arc_easy"
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    n_source: int  # result rows behind the table
    digest: str  # content hash of those rows
    note: str = ""
    formats: Mapping[str, str] = field(default_factory=dict)  # column -> format kind
    task: str = ""  # the task of a per-task table


@dataclass(frozen=True)
class LeaderboardData:
    """Everything a leaderboard shows, before rendering."""

    n_rows: int
    digest: str
    cells: tuple[ScoreCell, ...]
    superseded: int
    task_tables: tuple[Table, ...]
    summary: Table
    predictions: Table | None
    emergence: Table | None
    precision: Table | None
    notes: Mapping[str, str]  # section -> why it is empty or partial
    plots: Mapping[str, Any]  # task -> PlotSpec (evalsuite.leaderboard.plots)
    task_slugs: Mapping[str, str]
    forecasts: Table | None = None  # final-score forecasts (only where a run's plan is known)


TASK_COLUMNS = ("task", "series", "size", "n_params", "step", "tokens_seen", "compute_flops", "precision",
                "shots", "metric", "value", "stderr", "score", "score_stderr", "chance", "n")
TASK_FORMATS = {"n_params": "int", "step": "step", "tokens_seen": "int", "compute_flops": "sci",
                "shots": "int", "value": "num", "stderr": "num", "score": "num",
                "score_stderr": "num", "chance": "num", "n": "int"}


def task_table(task: str, cells: Sequence[ScoreCell], slug: str) -> Table:
    rows = tuple((c.task, c.series, c.size, c.n_params, c.step, c.tokens_seen, c.compute_flops,
                  c.precision, c.num_fewshot, c.metric, c.value, c.stderr, c.score,
                  c.score_stderr, c.chance, c.n_samples) for c in cells)
    return Table(name=f"tasks/{slug}", title=f"Task: {task}", columns=TASK_COLUMNS, rows=rows,
                 n_source=len(cells), digest=digest_of(c.digest for c in cells),
                 formats=TASK_FORMATS, task=task,
                 note="score = (value - chance) / (1 - chance); empty where the task has no "
                      "chance level or lower values are better.")


def summary_table(cells: Sequence[ScoreCell]) -> Table:
    """Latest step of every series x size x precision; one column per task (x shots)."""
    shots_per_task: dict[str, set] = {}
    for c in cells:
        shots_per_task.setdefault(c.task, set()).add(c.num_fewshot)

    def column(c: ScoreCell) -> str:
        if len(shots_per_task[c.task]) > 1:
            return f"{c.task} ({'?' if c.num_fewshot is None else c.num_fewshot}-shot)"
        return c.task

    latest = latest_by(cells, key=lambda c: (c.series, c.size, c.precision))
    task_cols = sorted({column(c) for c in cells})
    values: dict[tuple, dict[str, float | None]] = {k: {} for k in latest}
    scores: dict[tuple, list[float]] = {k: [] for k in latest}
    used: list[ScoreCell] = []
    for c in cells:
        k = (c.series, c.size, c.precision)
        if c.step == latest[k].step:
            values[k][column(c)] = c.plot_value
            if c.score is not None:
                scores[k].append(c.score)
            used.append(c)
    order = sorted(latest, key=lambda k: (k[0], none_last(latest[k].n_params), k[1],
                                          precision_rank(k[2])))
    rows = []
    for k in order:
        vals = values[k]
        present = scores[k]  # the mean is over normalised scores only, never raw perplexities
        mean = sum(present) / len(present) if present else None
        last = latest[k]
        rows.append((k[0], k[1], last.n_params, last.step, k[2], last.compute_flops, mean,
                     len(present)) + tuple(vals.get(t) for t in task_cols))
    formats = {"n_params": "int", "step": "step", "compute_flops": "sci", "mean_score": "num",
               "tasks": "int"}
    formats.update({t: "num" for t in task_cols})
    return Table(name="summary", title="Summary across tasks",
                 columns=("series", "size", "n_params", "step", "precision", "compute_flops",
                          "mean_score", "tasks") + tuple(task_cols),
                 rows=tuple(rows), n_source=len(used), digest=digest_of(c.digest for c in used),
                 formats=formats,
                 note="The latest step of each series x size x precision. Task columns hold the "
                      "chance-normalised score (the raw value where it does not apply); "
                      "mean_score averages the normalised scores present, tasks counts them.")


def precision_table(cells: Sequence[ScoreCell]) -> tuple[Table | None, str]:
    """Score against model bits at each series x size x precision's latest step, frontier marked.

    A point is on the frontier when no other point of the same task has at most as many model
    bits and a higher score (Dettmers & Zettlemoyer 2023, "The case for 4-bit precision: k-bit
    inference scaling laws", plot total model bits against zero-shot score).
    """
    with_bits = [c for c in cells if c.model_bits is not None and c.plot_value is not None]
    if not with_bits:
        return None, "no precision data: no result row has model_bits."
    latest = latest_by(with_bits, key=lambda c: (c.task, c.series, c.size, c.precision,
                                                 c.num_fewshot))
    by_task: dict[tuple, list[ScoreCell]] = {}
    for c in latest.values():
        by_task.setdefault((c.task, c.num_fewshot), []).append(c)
    rows = []
    used = []
    for (task, shots), group in sorted(by_task.items(), key=lambda kv: (kv[0][0],
                                                                       none_last(kv[0][1]))):
        # "better" follows the metric: a lower perplexity is the better point
        sign = 1.0 if group[0].higher_is_better else -1.0
        group.sort(key=lambda c: (c.model_bits, -sign * c.plot_value, c.series, c.size,
                                  c.precision))
        best = -math.inf
        for c in group:
            on = sign * c.plot_value > best
            best = max(best, sign * c.plot_value)
            rows.append((task, shots, c.series, c.size, c.step, c.precision, c.model_bits,
                         c.plot_value, c.score_stderr if c.score is not None else c.stderr,
                         "yes" if on else "no"))
            used.append(c)
    return Table(name="precision", title="Precision frontier",
                 columns=("task", "shots", "series", "size", "step", "precision", "model_bits",
                          "score", "stderr", "frontier"),
                 rows=tuple(rows), n_source=len(used), digest=digest_of(c.digest for c in used),
                 formats={"shots": "int", "step": "step", "model_bits": "sci", "score": "num",
                          "stderr": "num"},
                 note="model_bits as the runner wrote it (bits to store the weights). frontier = "
                      "no point of the same task with at most as many bits scores better (higher, "
                      "or lower for a lower-is-better metric such as perplexity)."), ""


def task_slug(task: str, taken: set[str]) -> str:
    """A file-name-safe, unique stem for a task name (names come from users' files)."""
    safe = "".join(ch if (ch.isascii() and (ch.isalnum() or ch in "-_.")) else "_" for ch in task)
    safe = safe.strip(".") or "task"
    if safe != task or safe.lower() in taken:
        safe = f"{safe[:60]}-{hashlib.sha256(task.encode('utf-8')).hexdigest()[:8]}"
    taken.add(safe.lower())
    return safe
