"""``evalsuite leaderboard``: build, check or diff the leaderboards of a results store.

    evalsuite leaderboard [--results DIR ...] [--out leaderboards/]   build (deterministic bytes)
    evalsuite leaderboard --check                                    CI: fail when out/ is stale
    evalsuite leaderboard --diff REF                                 cells that moved beyond stderr

``--diff REF`` compares the current results with REF: a git ref (the rows.jsonl of each
``--results`` folder at that ref), a results folder (with rows.jsonl) or a built leaderboards
folder (with MANIFEST.json).
"""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from ._common import CliError, add_flops_arg, add_json_arg, emit_records, parse_list

DIFF_COLUMNS = ("status", "task", "series", "size", "step", "precision", "shots", "old", "new",
                "delta", "z")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "leaderboard", help="build the leaderboards (tables, plots, static HTML) from results",
        description="Build markdown/CSV tables, plots and a self-contained index.html from one "
                    "or more results folders; --check verifies a committed folder is up to date, "
                    "--diff lists cells that changed beyond their stderr.")
    p.add_argument("--results", nargs="+", action="extend", metavar="DIR", default=None,
                   help="results folder(s) to read (default: results/)")
    p.add_argument("--out", default="leaderboards", metavar="DIR",
                   help="output folder (default: leaderboards/)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="rebuild into a temporary folder and exit 1 if --out differs")
    mode.add_argument("--diff", metavar="REF",
                      help="list cells changed beyond their stderr against REF (a git ref, a "
                           "results folder or a leaderboards folder); builds nothing")
    p.add_argument("--predict-sizes", metavar="SIZES", default="",
                   help="comma-separated size labels to predict, e.g. 1m,2.8m (default: the next "
                        "two rungs of each series' ladder)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes for fits and plots (default: the usable cores, at most "
                        "8); the files do not depend on it")
    p.add_argument("--no-scaling", action="store_true",
                   help="skip the scaling-law fits, predictions and emergence sections")
    add_flops_arg(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def _read_rows(dirs: list[str]):
    from ..store import ResultStore, StoreError

    rows = []
    for d in dirs:
        path = Path(d)
        if not path.is_dir():
            raise CliError(f"results folder {d} does not exist; pass the folder that holds "
                           "rows.jsonl with --results DIR")
        try:
            rows.extend(ResultStore(path).read_rows())
        except (OSError, StoreError) as e:
            raise CliError(f"cannot read {path / 'rows.jsonl'}: {e}") from e
    return rows


def _build_command(args) -> str:
    return shlex.join(["evalsuite", "leaderboard", "--results", *args.results, "--out", args.out]
                      + (["--predict-sizes", args.predict_sizes] if args.predict_sizes else [])
                      + (["--no-scaling"] if args.no_scaling else [])
                      + (["--flops-params", args.flops_params]
                         if args.flops_params != "total" else []))


def _os_reason(e: OSError) -> str:
    """``strerror (path)`` of an OSError, or its text."""
    if e.strerror and e.filename:
        return f"{e.strerror} ({e.filename})"
    return e.strerror or str(e)


def _write_error(out: str, e: Exception) -> str:
    """What to tell a user whose --out cannot be (re)built, with the fix."""
    out = out.rstrip("/") or out
    if isinstance(e, ValueError):
        return f"--out {out}: {e}"
    parent = Path(os.path.abspath(out)).parent
    reason = _os_reason(e) if isinstance(e, OSError) else str(e)
    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = (f"free space on the disk of {parent}/ (the build needs room for a second copy "
               "of the folder) or pass --out DIR on another disk")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = (f"make {out}/ and the folder above it, {parent}/, writable (the build writes a "
               f"new folder beside {out}/ and swaps it in), or pass --out DIR somewhere writable")
    elif code == errno.ENOTDIR:
        fix = "pass --out a folder (or a path that does not exist yet), not a file"
    else:
        fix = f"check that {parent}/ is writable and has room, or pass --out DIR elsewhere"
    return f"cannot write the leaderboards to {out}/: {reason}. {out}/ is left as it was; {fix}"


def run(args) -> int:
    from ..leaderboard import (MANIFEST_FILE, build_leaderboard, check_output_folder,
                               default_jobs, read_leaderboard_manifest)
    from ..leaderboard.diff import compare_folders

    args.results = args.results or ["results"]
    rows = _read_rows(args.results)
    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs {args.jobs}: give a number of worker processes >= 1")
    opts = {"scaling": not args.no_scaling, "predict_sizes": tuple(parse_list(args.predict_sizes)),
            "jobs": args.jobs or default_jobs(), "flops_basis": args.flops_params,
            "plans": _read_plans(args.results)}
    if args.diff:
        return _diff(args, rows)
    if args.check:
        out = Path(args.out)
        if not rows and not (out / MANIFEST_FILE).exists():
            print(f"leaderboard check: no result rows in {', '.join(args.results)} and no "
                  f"{out / MANIFEST_FILE}: nothing to check.")
            return 0
        try:
            with tempfile.TemporaryDirectory(prefix="evalsuite-leaderboard-") as tmp:
                build_leaderboard(rows, tmp, **opts)
                diffs = compare_folders(tmp, out)
                env_now = read_leaderboard_manifest(tmp).get("environment", {})
        except OSError as e:
            raise CliError(f"cannot build the leaderboards in a temporary folder to compare with "
                           f"{out}/: {_os_reason(e)}; free space in {tempfile.gettempdir()} or "
                           "point TMPDIR at a writable folder with room") from e
        env_then = read_leaderboard_manifest(out).get("environment", {})
        if not diffs:
            print(f"leaderboard check: {out}/ is up to date with {', '.join(args.results)} "
                  f"({len(rows)} rows).")
            return 0
        lines = [f"  {d.kind:>7}  {out / d.path}" for d in diffs[:30]]
        if len(diffs) > 30:
            lines.append(f"  ... and {len(diffs) - 30} more")
        env_note = ""
        if env_then and env_then != env_now:
            changed = ", ".join(f"{k} {env_then.get(k, '?')} -> {env_now.get(k, '?')}"
                                for k in sorted(set(env_then) | set(env_now))
                                if env_then.get(k) != env_now.get(k))
            env_note = (f"\nNote: {out}/ was built with other package versions ({changed}); "
                        "plots and fits can differ by version: build with the versions CI uses.")
        print(f"error: the committed {out}/ does not match the results in "
              f"{', '.join(args.results)}: {len(diffs)} file(s) differ:\n" + "\n".join(lines)
              + f"\nLeaderboards are generated, never edited by hand. Run\n"
              f"    {_build_command(args)}\nand commit {out}/." + env_note, file=sys.stderr)
        return 1
    try:
        check_output_folder(args.out)
    except (OSError, ValueError) as e:
        raise CliError(_write_error(args.out, e)) from e
    try:
        written = build_leaderboard(rows, args.out, **opts)
    except OSError as e:
        raise CliError(_write_error(args.out, e)) from e
    print(f"wrote {len(written)} files to {args.out}/ from {len(rows)} result rows "
          f"({', '.join(args.results)}); open {Path(args.out) / 'index.html'}")
    return 0


def _read_plans(dirs: list[str]) -> dict:
    """Planned final steps of training runs recorded in the results folders (`evalsuite watch`)."""
    from ..store import ResultStore

    plans: dict = {}
    for d in dirs:
        plans.update(ResultStore(d).read_plans())
    return plans


def _git_rows(ref: str, dirs: list[str]):
    from ..store import ResultStore

    rows = []
    for d in dirs:
        try:
            blob = subprocess.run(["git", "-C", d, "show", f"{ref}:./rows.jsonl"],
                                  capture_output=True, check=True).stdout
        except FileNotFoundError as e:
            raise CliError("--diff with a git ref needs git on PATH; or pass a folder") from e
        except subprocess.CalledProcessError as e:
            msg = e.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CliError(f"--diff {ref}: cannot read {d}/rows.jsonl at that ref ("
                           f"{msg[-1] if msg else 'git failed'}); pass a commit, branch or tag "
                           "where it exists, or a folder") from e
        with tempfile.TemporaryDirectory(prefix="evalsuite-diff-") as tmp:
            (Path(tmp) / "rows.jsonl").write_bytes(blob)
            rows.extend(ResultStore(tmp).read_rows())
    return rows


def _diff(args, rows) -> int:
    from ..leaderboard import MANIFEST_FILE, primary_cells
    from ..leaderboard.diff import cells_from_csv_folder, diff_cells

    ref = Path(args.diff)
    if ref.is_dir():
        if (ref / "rows.jsonl").exists():
            old_cells, _ = primary_cells(_read_rows([str(ref)]))
        elif (ref / MANIFEST_FILE).exists():
            old_cells = cells_from_csv_folder(ref)
        else:
            raise CliError(f"--diff {args.diff}: the folder has neither rows.jsonl (a results "
                           f"folder) nor {MANIFEST_FILE} (a built leaderboards folder)")
    else:
        old_cells, _ = primary_cells(_git_rows(args.diff, args.results))
    new_cells, _ = primary_cells(rows)
    changes, within = diff_cells(old_cells, new_cells)
    emit_records([c.to_dict() for c in changes], columns=DIFF_COLUMNS, as_json=args.json)
    if not args.json:
        counts = {s: sum(c.status == s for c in changes) for s in ("changed", "added", "removed")}
        print(f"{counts['changed']} cells changed beyond their stderr, {counts['added']} added, "
              f"{counts['removed']} removed; {within} moved within their stderr "
              f"(against {args.diff}).")
    return 0
