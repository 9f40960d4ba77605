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

Modules of this package, in the order of the flow: ``cells`` (rows -> primary-metric cells),
``tables`` (cells -> tables), ``sections`` (fits, predictions, emergence via ``evalsuite.scaling``),
``plots`` (PNG), ``render`` (markdown, CSV, HTML), this one (assembling and writing the folder),
``diff`` (``--check`` and ``--diff``).

The chance-normalised score is (v - chance) / (1 - chance) (as in nanochat's CORE metric): 0 is a
random guesser, 1 a perfect score. It is left empty for metrics where lower is better or where the
task declares no chance level.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import sections
from ..records import rebase_flops
from .cells import ScoreCell, coerce_rows, primary_cells, rows_digest
from .plots import PlotSpec
from .render import render_files
from .tables import LeaderboardData, precision_table, summary_table, task_slug, task_table

log = logging.getLogger(__name__)

__all__ = ["prepare_leaderboard", "render_leaderboard", "build_leaderboard", "read_leaderboard_manifest",
           "manifest_files", "check_output_folder", "build_environment", "MANIFEST_FILE"]

MANIFEST_FILE = "MANIFEST.json"


def prepare_leaderboard(rows: Any, *, scaling: bool = True, predict_sizes: Sequence[str] = (),
                        jobs: int = 1, flops_basis: str = "total",
                        plans: Mapping[tuple[str, str], int] | None = None) -> LeaderboardData:
    """Compute every table and plot spec from result rows (a list of ResultRow or a DataFrame).

    ``scaling=False`` skips the scaling-law sections (fits, predictions, emergence);
    ``predict_sizes``: size labels to predict (default: the next two rungs of each ladder);
    ``jobs``: worker processes for the fits (the output does not depend on it);
    ``flops_basis``: what N counts in compute = 6·N·D on every axis and fit (``records.FLOPS_BASES``;
    each row is re-based from its own parameter counts, so one page never mixes bases);
    ``plans``: (series, size) -> planned final step (``ResultStore.read_plans``), for the
    final-score forecasts of runs still training (the section is left out without any).
    """
    given = coerce_rows(rows)  # the manifest names these (what the results folder holds)
    rows = [rebase_flops(r, flops_basis) for r in given]
    cells, superseded = primary_cells(rows)
    by_task: dict[str, list[ScoreCell]] = {}
    for c in cells:
        by_task.setdefault(c.task, []).append(c)
    taken: set[str] = set()
    slugs = {t: task_slug(t, taken) for t in sorted(by_task)}
    task_tables = tuple(task_table(t, by_task[t], slugs[t]) for t in sorted(by_task))
    notes: dict[str, str] = {}
    precision, note = precision_table(cells)
    if note:
        notes["precision"] = note
    if scaling:
        sc = sections.run_scaling(cells, predict_sizes, jobs)
    else:
        sc = sections.ScalingOutput.unavailable("scaling sections were switched off")
    notes.update(sc.notes)
    plots = {t: PlotSpec.from_cells(t, by_task[t], sc.curves.get(t, ()),
                                    sc.predicted_points.get(t, ()), flops_basis=flops_basis)
             for t in sorted(by_task)}
    if not cells:
        notes["summary"] = "no primary-metric result rows yet."
    return LeaderboardData(
        n_rows=len(given), digest=rows_digest(given), cells=tuple(cells), superseded=superseded,
        task_tables=task_tables, summary=summary_table(cells), predictions=sc.predictions,
        emergence=sc.emergence, precision=precision, notes=notes, plots=plots, task_slugs=slugs,
        forecasts=sections.run_forecasts(cells, plans) if plans and scaling else None)


def render_leaderboard(rows: Any, *, scaling: bool = True, predict_sizes: Sequence[str] = (),
                       jobs: int = 1, flops_basis: str = "total",
                       plans: Mapping[tuple[str, str], int] | None = None) -> dict[str, bytes]:
    """Every leaderboard file as {relative path: bytes}; deterministic in the rows (the same
    bytes for any ``jobs``, the worker processes for fits and plots)."""
    from .. import __version__

    data = prepare_leaderboard(rows, scaling=scaling, predict_sizes=predict_sizes, jobs=jobs,
                               flops_basis=flops_basis, plans=plans)
    files = render_files(data, version=__version__, jobs=jobs)
    manifest = {"evalsuite_version": __version__, "rows": data.n_rows, "rows_sha256": data.digest,
                "environment": build_environment(),
                "files": {p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())}}
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return files


def build_environment() -> dict[str, str]:
    """Versions that the bytes depend on besides the rows (plots: matplotlib; fits: numpy,
    scipy, pandas; the page's chart script: vl-convert-python). A rebuild with other versions may differ; --check names them when it does."""
    from ..versions import package_version

    return {pkg: package_version(pkg) for pkg in ("matplotlib", "numpy", "scipy", "pandas",
                                                  "vl-convert-python")}


def read_leaderboard_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    try:
        m = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def manifest_files(folder: Path) -> set[str]:
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
                      predict_sizes: Sequence[str] = (), jobs: int = 1,
                      flops_basis: str = "total",
                      plans: Mapping[tuple[str, str], int] | None = None) -> list[str]:
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
    files = render_leaderboard(rows, scaling=scaling, predict_sizes=predict_sizes, jobs=jobs,
                               flops_basis=flops_basis, plans=plans)
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
            _carry_foreign_files(out, tmp, made=manifest_files(out) | set(files))
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
