"""Leaderboards built from result rows: tables, plots, predictions and one static HTML page.

``build_leaderboard(rows, out_dir)`` writes, from the primary-metric rows of a results store::

    README.md, index.html           entry pages (markdown; self-contained HTML, sortable tables)
    summary.md/.csv                 latest checkpoint of every series x size x precision, all tasks
    tasks/<task>.md/.csv            series x size x step x precision: value, stderr, normalised score
    plots/<task>.png                score against training compute, fitted curve and predictions
    predictions.md/.csv             scaling-law predictions for sizes not evaluated (evalsuite.scaling)
    emergence.md/.csv               emergence verdicts per task and series (evalsuite.scaling)
    precision.md/.csv               score against model bits, with the frontier marked
    MANIFEST.json                   every file with its sha256

The bytes depend on the rows alone (never on their order, the clock or the machine's locale):
floats have fixed formats, rows are sorted, plots carry fixed metadata. Every file names the
evalsuite version and the rows it was built from (count and a content hash) so a reviewer can
tell which results a committed table shows.

Modules: this one (rows -> cells -> tables, writing the folder), ``leaderboard_render`` (markdown,
CSV, HTML), ``leaderboard_plots`` (PNG), ``leaderboard_scaling`` (fits, predictions, emergence via
``evalsuite.scaling``), ``leaderboard_diff`` (``--check`` and ``--diff``).

The chance-normalised score is (v - chance) / (1 - chance) (as in nanochat's CORE metric): 0 is a
random guesser, 1 a perfect score. It is left empty for metrics where lower is better or where the
task declares no chance level.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .records import ResultRow

log = logging.getLogger(__name__)

__all__ = ["Cell", "LeaderboardData", "Table", "prepare_leaderboard", "render_leaderboard",
           "build_leaderboard", "rows_digest", "primary_cells", "normalise_score",
           "read_manifest", "default_jobs", "check_output_folder", "MANIFEST_FILE"]

MANIFEST_FILE = "MANIFEST.json"

#: Display order of known precisions (widest first); others follow alphabetically.
_PRECISION_ORDER = ("fp32", "float32", "tf32", "bf16", "bfloat16", "fp16", "float16", "fp8",
                    "int8", "nf4", "int4", "fp4", "int3", "int2")


# ---- rows -> cells --------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One primary-metric number: checkpoint x precision x task x shots (one ResultRow).

    ``score`` is the chance-normalised value, ``score_stderr`` its standard error (stderr
    scaled by the same factor); both None where normalising does not apply.
    """

    task: str
    series: str
    size: str
    step: int | None
    precision: str
    num_fewshot: int | None
    metric: str
    value: float | None
    stderr: float | None
    score: float | None
    score_stderr: float | None
    chance: float | None
    higher_is_better: bool
    n_params: int | None
    tokens_seen: int | None
    compute_flops: float | None
    model_bits: float | None
    n_samples: int | None
    limit: int | None
    digest: str  # content hash of the row behind this cell

    @property
    def key(self) -> tuple:
        """The cell's identity (what a diff matches on)."""
        return (self.task, self.series, self.size, self.step, self.precision, self.num_fewshot)

    @property
    def plot_value(self) -> float | None:
        """The normalised score where defined, else the raw value."""
        return self.score if self.score is not None else self.value


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int_or_none(v: Any) -> int | None:
    f = _finite(v)
    return None if f is None else int(round(f))


_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ResultRow))


def _row_dict(row: ResultRow) -> dict[str, Any]:
    """``row.to_dict()`` without dataclasses.asdict's deep copies (ten times faster; the same
    dict for ResultRow's flat fields; every non-finite float becomes None)."""
    d = {k: getattr(row, k) for k in _ROW_FIELDS}
    d["versions"] = dict(row.versions or {})
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            d[k] = None  # as to_dict does for its float fields (JSON has no NaN)
    return d


def _row_json(row: ResultRow) -> str:
    """Canonical JSON of a row (sorted keys, compact): what its content hash is taken over."""
    return json.dumps(_row_dict(row), sort_keys=True, allow_nan=False, default=str,
                      separators=(",", ":"))


def rows_digest(rows: Iterable[ResultRow]) -> str:
    """Order-independent content hash of rows: sha256 over their sorted canonical JSON lines."""
    h = hashlib.sha256()
    for line in sorted(_row_json(r) for r in rows):
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _digest_of(digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    for d in sorted(digests):
        h.update(d.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def normalise_score(value: float | None, chance: float | None,
                    higher_is_better: bool = True) -> float | None:
    """(value - chance) / (1 - chance), None where it does not apply."""
    if value is None or chance is None or not higher_is_better or not chance < 1.0:
        return None
    return (value - chance) / (1.0 - chance)


def _precision_rank(p: str) -> tuple:
    p_low = p.lower()
    if p_low in _PRECISION_ORDER:
        return (0, _PRECISION_ORDER.index(p_low), p)
    return (1, 0, p)


def _none_last(v: Any) -> tuple:
    return (1, 0) if v is None else (0, v)


def cell_sort_key(c: Cell) -> tuple:
    return (c.task, c.series, _none_last(c.n_params), c.size, _none_last(c.step),
            _precision_rank(c.precision), _none_last(c.num_fewshot))


def _coerce_rows(rows: Any) -> list[ResultRow]:
    """ResultRows from a list of rows or a DataFrame with the ResultRow columns."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        out = []
        for rec in rows.to_dict(orient="records"):
            clean = {}
            for k, v in rec.items():
                if isinstance(v, float) and not math.isfinite(v):
                    v = None
                elif hasattr(v, "item") and not isinstance(v, (str, bytes)):
                    v = v.item()
                clean[k] = v
            for k in ("step", "n_params", "n_params_nonembedding", "tokens_seen", "n_samples",
                      "num_fewshot", "limit"):
                if clean.get(k) is not None:
                    clean[k] = _int_or_none(clean[k])
            if clean.get("versions") is None:
                clean["versions"] = {}
            out.append(ResultRow.from_dict(clean))
        return out
    return list(rows)


def primary_cells(rows: Iterable[ResultRow]) -> tuple[list[Cell], int]:
    """Cells from the primary-metric rows, sorted; returns (cells, rows superseded).

    Several rows for one cell (a re-run) keep the full-data run (no ``limit``) over a limited
    one, then the latest timestamp, then the larger canonical JSON (so the choice never depends
    on row order).
    """
    best: dict[tuple, tuple[tuple, ResultRow, str]] = {}
    n_primary = 0
    for row in rows:
        if not row.is_primary:
            continue
        n_primary += 1
        key = (row.task, row.series, row.size, _int_or_none(row.step), row.precision,
               _int_or_none(row.num_fewshot))
        text = _row_json(row)
        rank = (row.limit is None, row.timestamp or "", text)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, row, text)
    cells = []
    for key, (_, row, text) in best.items():
        value, stderr, chance = _finite(row.value), _finite(row.stderr), _finite(row.chance)
        score = normalise_score(value, chance, bool(row.higher_is_better))
        score_se = None
        if score is not None and stderr is not None:
            score_se = stderr / (1.0 - chance)
        cells.append(Cell(
            task=str(row.task), series=str(row.series), size=str(row.size), step=key[3],
            precision=str(row.precision), num_fewshot=key[5], metric=str(row.metric),
            value=value, stderr=stderr, score=score, score_stderr=score_se, chance=chance,
            higher_is_better=bool(row.higher_is_better), n_params=_int_or_none(row.n_params),
            tokens_seen=_int_or_none(row.tokens_seen), compute_flops=_finite(row.compute_flops),
            model_bits=_finite(row.model_bits), n_samples=_int_or_none(row.n_samples),
            limit=_int_or_none(row.limit),
            digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]))
    cells.sort(key=cell_sort_key)
    return cells, n_primary - len(cells)


def default_jobs() -> int:
    """Worker processes for fits and plots: the cores this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def parallel_map(fn, items: Sequence[Any], jobs: int = 1, min_items: int = 6) -> list[Any]:
    """``[fn(x) for x in items]``, in forked worker processes when ``jobs > 1`` and there are
    at least ``min_items`` (order kept, so results do not depend on scheduling). ``fn`` must be
    a pure module-level function; without ``fork`` (Windows, macOS) it runs in this process."""
    items = list(items)
    if jobs <= 1 or len(items) < min_items:
        return [fn(x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return [fn(x) for x in items]
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=ctx) as pool:
        return list(pool.map(fn, items, chunksize=1))


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
    cells: tuple[Cell, ...]
    superseded: int
    task_tables: tuple[Table, ...]
    summary: Table
    predictions: Table | None
    emergence: Table | None
    precision: Table | None
    notes: Mapping[str, str]  # section -> why it is empty or partial
    plots: Mapping[str, Any]  # task -> PlotSpec (evalsuite.leaderboard_plots)
    task_slugs: Mapping[str, str]


TASK_COLUMNS = ("task", "series", "size", "n_params", "step", "tokens_seen", "compute_flops", "precision",
                "shots", "metric", "value", "stderr", "score", "score_stderr", "chance", "n")
TASK_FORMATS = {"n_params": "int", "step": "step", "tokens_seen": "int", "compute_flops": "sci",
                "shots": "int", "value": "num", "stderr": "num", "score": "num",
                "score_stderr": "num", "chance": "num", "n": "int"}


def _task_table(task: str, cells: Sequence[Cell], slug: str) -> Table:
    rows = tuple((c.task, c.series, c.size, c.n_params, c.step, c.tokens_seen, c.compute_flops,
                  c.precision, c.num_fewshot, c.metric, c.value, c.stderr, c.score,
                  c.score_stderr, c.chance, c.n_samples) for c in cells)
    return Table(name=f"tasks/{slug}", title=f"Task: {task}", columns=TASK_COLUMNS, rows=rows,
                 n_source=len(cells), digest=_digest_of(c.digest for c in cells),
                 formats=TASK_FORMATS, task=task,
                 note="score = (value - chance) / (1 - chance); empty where the task has no "
                      "chance level or lower values are better.")


def _summary_table(cells: Sequence[Cell]) -> Table:
    """Latest step of every series x size x precision; one column per task (x shots)."""
    shots_per_task: dict[str, set] = {}
    for c in cells:
        shots_per_task.setdefault(c.task, set()).add(c.num_fewshot)

    def column(c: Cell) -> str:
        if len(shots_per_task[c.task]) > 1:
            return f"{c.task} ({'?' if c.num_fewshot is None else c.num_fewshot}-shot)"
        return c.task

    latest: dict[tuple, tuple] = {}
    for c in cells:
        k = (c.series, c.size, c.precision)
        step_rank = _none_last(c.step)
        if k not in latest or step_rank > latest[k][0]:
            latest[k] = (step_rank, c.step, c.n_params, c.compute_flops)
    task_cols = sorted({column(c) for c in cells})
    values: dict[tuple, dict[str, float | None]] = {k: {} for k in latest}
    scores: dict[tuple, list[float]] = {k: [] for k in latest}
    used: list[Cell] = []
    for c in cells:
        k = (c.series, c.size, c.precision)
        if c.step == latest[k][1]:
            values[k][column(c)] = c.plot_value
            if c.score is not None:
                scores[k].append(c.score)
            used.append(c)
    order = sorted(latest, key=lambda k: (k[0], _none_last(latest[k][2]), k[1],
                                          _precision_rank(k[2])))
    rows = []
    for k in order:
        vals = values[k]
        present = scores[k]  # the mean is over normalised scores only, never raw perplexities
        mean = sum(present) / len(present) if present else None
        rows.append((k[0], k[1], latest[k][2], latest[k][1], k[2], latest[k][3], mean,
                     len(present)) + tuple(vals.get(t) for t in task_cols))
    formats = {"n_params": "int", "step": "step", "compute_flops": "sci", "mean_score": "num",
               "tasks": "int"}
    formats.update({t: "num" for t in task_cols})
    return Table(name="summary", title="Summary across tasks",
                 columns=("series", "size", "n_params", "step", "precision", "compute_flops",
                          "mean_score", "tasks") + tuple(task_cols),
                 rows=tuple(rows), n_source=len(used), digest=_digest_of(c.digest for c in used),
                 formats=formats,
                 note="The latest step of each series x size x precision. Task columns hold the "
                      "chance-normalised score (the raw value where it does not apply); "
                      "mean_score averages the normalised scores present, tasks counts them.")


def _precision_table(cells: Sequence[Cell]) -> tuple[Table | None, str]:
    """Score against model bits at each series x size x precision's latest step, frontier marked.

    A point is on the frontier when no other point of the same task has at most as many model
    bits and a higher score (Dettmers & Zettlemoyer 2023, "The case for 4-bit precision: k-bit
    inference scaling laws", plot total model bits against zero-shot score).
    """
    with_bits = [c for c in cells if c.model_bits is not None and c.plot_value is not None]
    if not with_bits:
        return None, "no precision data: no result row has model_bits."
    latest: dict[tuple, Cell] = {}
    for c in with_bits:
        k = (c.task, c.series, c.size, c.precision, c.num_fewshot)
        if k not in latest or _none_last(c.step) > _none_last(latest[k].step):
            latest[k] = c
    by_task: dict[tuple, list[Cell]] = {}
    for c in latest.values():
        by_task.setdefault((c.task, c.num_fewshot), []).append(c)
    rows = []
    used = []
    for (task, shots), group in sorted(by_task.items(), key=lambda kv: (kv[0][0],
                                                                       _none_last(kv[0][1]))):
        group.sort(key=lambda c: (c.model_bits, -c.plot_value, c.series, c.size, c.precision))
        best = -math.inf
        for c in group:
            on = c.plot_value > best
            best = max(best, c.plot_value)
            rows.append((task, shots, c.series, c.size, c.step, c.precision, c.model_bits,
                         c.plot_value, c.score_stderr if c.score is not None else c.stderr,
                         "yes" if on else "no"))
            used.append(c)
    return Table(name="precision", title="Precision frontier",
                 columns=("task", "shots", "series", "size", "step", "precision", "model_bits",
                          "score", "stderr", "frontier"),
                 rows=tuple(rows), n_source=len(used), digest=_digest_of(c.digest for c in used),
                 formats={"shots": "int", "step": "step", "model_bits": "sci", "score": "num",
                          "stderr": "num"},
                 note="model_bits as the runner wrote it (bits to store the weights). frontier = "
                      "no point of the same task with at most as many bits scores higher."), ""


def task_slug(task: str, taken: set[str]) -> str:
    """A file-name-safe, unique stem for a task name (names come from users' files)."""
    safe = "".join(ch if (ch.isascii() and (ch.isalnum() or ch in "-_.")) else "_" for ch in task)
    safe = safe.strip(".") or "task"
    if safe != task or safe.lower() in taken:
        safe = f"{safe[:60]}-{hashlib.sha256(task.encode('utf-8')).hexdigest()[:8]}"
    taken.add(safe.lower())
    return safe


def prepare_leaderboard(rows: Any, *, scaling: bool = True, predict_sizes: Sequence[str] = (),
                        jobs: int = 1) -> LeaderboardData:
    """Compute every table and plot spec from result rows (a list of ResultRow or a DataFrame).

    ``scaling=False`` skips the scaling-law sections (fits, predictions, emergence);
    ``predict_sizes``: size labels to predict (default: the next two rungs of each ladder);
    ``jobs``: worker processes for the fits (the output does not depend on it).
    """
    from . import leaderboard_plots, leaderboard_scaling

    rows = _coerce_rows(rows)
    cells, superseded = primary_cells(rows)
    by_task: dict[str, list[Cell]] = {}
    for c in cells:
        by_task.setdefault(c.task, []).append(c)
    taken: set[str] = set()
    slugs = {t: task_slug(t, taken) for t in sorted(by_task)}
    task_tables = tuple(_task_table(t, by_task[t], slugs[t]) for t in sorted(by_task))
    notes: dict[str, str] = {}
    precision, note = _precision_table(cells)
    if note:
        notes["precision"] = note
    if scaling:
        sc = leaderboard_scaling.run_scaling(cells, predict_sizes, jobs)
    else:
        sc = leaderboard_scaling.ScalingOutput.unavailable("scaling sections were switched off")
    notes.update(sc.notes)
    plots = {t: leaderboard_plots.PlotSpec.from_cells(t, by_task[t], sc.curves.get(t, ()),
                                                      sc.predicted_points.get(t, ()))
             for t in sorted(by_task)}
    if not cells:
        notes["summary"] = "no primary-metric result rows yet."
    return LeaderboardData(
        n_rows=len(rows), digest=rows_digest(rows), cells=tuple(cells), superseded=superseded,
        task_tables=task_tables, summary=_summary_table(cells), predictions=sc.predictions,
        emergence=sc.emergence, precision=precision, notes=notes, plots=plots, task_slugs=slugs)


def render_leaderboard(rows: Any, *, scaling: bool = True, predict_sizes: Sequence[str] = (),
                       jobs: int = 1) -> dict[str, bytes]:
    """Every leaderboard file as {relative path: bytes}; deterministic in the rows (the same
    bytes for any ``jobs``, the worker processes for fits and plots)."""
    from . import __version__
    from .leaderboard_render import render_files

    data = prepare_leaderboard(rows, scaling=scaling, predict_sizes=predict_sizes, jobs=jobs)
    files = render_files(data, version=__version__, jobs=jobs)
    manifest = {"evalsuite_version": __version__, "rows": data.n_rows, "rows_sha256": data.digest,
                "environment": build_environment(),
                "files": {p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())}}
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return files


def build_environment() -> dict[str, str]:
    """Versions that the bytes depend on besides the rows (plots: matplotlib; fits: numpy,
    scipy). A rebuild with other versions may differ; --check names them when it does."""
    from .versions import package_version

    return {pkg: package_version(pkg) for pkg in ("matplotlib", "numpy", "scipy", "pandas")}


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    try:
        m = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def _manifest_files(folder: Path) -> set[str]:
    try:
        m = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        return set(m.get("files", {})) | {MANIFEST_FILE}
    except (OSError, ValueError, AttributeError):
        return set()


def check_output_folder(out_dir: str | os.PathLike) -> Path:
    """The absolute folder a build would replace, or an error saying why it cannot.

    A symlink is followed (the folder it points to is rebuilt, the link stays). Raises
    ValueError for a folder that holds the current folder (swapping it would move the working
    folder away), NotADirectoryError for a file, PermissionError where the folder or the one
    above it is not writable (the build writes its new folder beside the old one).
    """
    out = Path(os.path.abspath(out_dir))
    if out.is_symlink():
        out = out.resolve()
    cwd = Path.cwd().resolve()
    if out.resolve() == cwd or out.resolve() in cwd.parents:
        raise ValueError(f"{out} holds the current folder; a build replaces its output folder "
                         "whole, so give it a folder of its own (e.g. leaderboards/)")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(out))
    for folder in (out, out.parent):
        if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable", str(folder))
    return out


def build_leaderboard(rows: Any, out_dir: str | os.PathLike, *, scaling: bool = True,
                      predict_sizes: Sequence[str] = (), jobs: int = 1) -> list[str]:
    """Write the leaderboard files under ``out_dir``; returns their relative paths.

    The new folder is written whole beside ``out_dir`` (``.<name>.building-*``) and swapped in
    at the end: the old folder is renamed aside, the new one renamed in, the old one removed. A
    build that fails or is interrupted removes its temporary folder and leaves ``out_dir`` as it
    was, so a folder never lists in its MANIFEST.json a file it does not hold. The folder above
    ``out_dir`` must therefore be writable, with room for a second copy.

    Files a previous build listed in its MANIFEST.json and this one no longer makes (a task that
    disappeared) are dropped; files the builder never made are carried into the new folder
    (hard links where the file system allows, else copies). Raises OSError where the folder
    cannot be written (see also ``check_output_folder``).
    """
    out = check_output_folder(out_dir)
    files = render_leaderboard(rows, scaling=scaling, predict_sizes=predict_sizes, jobs=jobs)
    _write_folder(out, files)
    return sorted(files)


def _write_folder(out: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into a new folder beside ``out`` and swap it in (see build_leaderboard)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out.parent / f".{out.name}.building-{token}"
    tmp.mkdir()
    try:
        if out.is_dir():
            os.chmod(tmp, stat.S_IMODE(out.stat().st_mode))
            _carry_foreign_files(out, tmp, made=_manifest_files(out) | set(files))
        # MANIFEST.json last: even the temporary folder never lists a file it lacks
        for rel, blob in sorted(files.items(), key=lambda kv: (kv[0] == MANIFEST_FILE, kv[0])):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(blob)
            os.chmod(path, 0o644)
        _swap_folder(tmp, out, aside=out.parent / f".{out.name}.replaced-{token}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_folder(new: Path, out: Path, *, aside: Path) -> None:
    """Rename ``out`` aside, ``new`` into its place, then remove the old folder; on a failed
    rename-in the old folder goes back."""
    if not out.exists():
        os.replace(new, out)
        return
    os.replace(out, aside)
    try:
        os.replace(new, out)
    except BaseException:
        if not out.exists():
            os.replace(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        log.warning("built %s, but could not remove the folder it replaced, %s: delete it",
                    out, aside)


def _carry_foreign_files(old: Path, new: Path, *, made: set[str]) -> None:
    """Hard-link (or copy) into ``new`` every file under ``old`` that the builder never made:
    not in ``made`` (the old manifest's files and this build's) and not a ``.tmp-*`` file an
    earlier, interrupted build left. Symlinks are recreated, never followed; empty folders kept."""
    def unreadable(e: OSError) -> None:
        raise e  # a folder we cannot list would lose its files silently

    for root, dirs, names in os.walk(old, onerror=unreadable):
        here = Path(root)
        rel_dir = here.relative_to(old)
        for d in [d for d in dirs if (here / d).is_symlink()]:
            dirs.remove(d)  # a link to a folder: carried as a link below
            names.append(d)
        if not dirs and not names and here != old:
            (new / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in names:
            rel = (rel_dir / name).as_posix()
            if rel in made or name.startswith(".tmp-"):
                continue
            src, dst = here / name, new / rel_dir / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
