"""Helpers shared by the subcommands: errors, tables, JSON output, results folder option."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


class CliError(Exception):
    """A user-facing error: the message names the thing and the fix. Printed without a traceback."""


def add_results_arg(parser) -> None:
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="results folder (default: results/)")


#: Where the README says benchmark items are read from when no folder is named: the shared
#: data beside the project (``../shared/data/benchmarks`` from the repository root).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks"


def add_data_args(p) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="local benchmark data laid out like ../shared/data/benchmarks (default: "
                        "$EVALSUITE_DATA_DIR, else ../shared/data/benchmarks beside the project "
                        "when it exists; `none` = lm-eval's hub datasets)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="folder of user task YAMLs (repeatable)")


def data_dir_from(args) -> str | None:
    """--data-dir, then $EVALSUITE_DATA_DIR, then :data:`DEFAULT_DATA_DIR` if it exists;
    ``none`` (either place) asks for lm-eval's hub datasets."""
    value = args.data_dir or os.environ.get("EVALSUITE_DATA_DIR")
    if value is None:
        return str(DEFAULT_DATA_DIR) if DEFAULT_DATA_DIR.is_dir() else None
    return None if value.strip().lower() == "none" else str(Path(value))


def add_flops_arg(parser, *, recorded: bool = False) -> None:
    """``--flops-params total|non-embedding``: what N counts in compute = 6·N·D."""
    what = ("recorded in each row's flops_basis" if recorded else
            "every row is re-based from its own parameter counts, so axes and fits never mix "
            "bases")
    parser.add_argument("--flops-params", choices=["total", "non-embedding"], default="total",
                        help="N in compute_flops = 6·N·D: all parameters (Hoffmann et al. 2022; "
                             "default) or non-embedding ones (Kaplan et al. 2020); " + what)


def add_json_arg(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the same records as JSON instead of a table")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return _clean(v.item())
        except (ValueError, AttributeError):
            pass
    return v


def emit_records(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                 as_json: bool = False, out=None, float_fmt: str = "{:.4g}") -> None:
    """Print records as an aligned text table, or as a JSON list with ``as_json``."""
    out = out or sys.stdout
    if as_json:
        json.dump([{k: _clean(v) for k, v in r.items()} for r in records], out, indent=1,
                  default=str)
        out.write("\n")
        return
    if not records:
        out.write("(no rows)\n")
        return
    columns = list(columns or records[0].keys())

    def fmt(v: Any) -> str:
        v = _clean(v)
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return float_fmt.format(v)
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def frame_records(frame) -> list[dict[str, Any]]:
    """DataFrame -> list of plain dicts with JSON-safe values."""
    return [{k: _clean(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]


def parse_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def iter_progress(items: Iterable, total: int, desc: str):
    """A tqdm bar with ETA on a terminal, plain log lines otherwise."""
    from tqdm import tqdm

    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, disable=False)  # not TQDM_DISABLE
        return
    for i, item in enumerate(items, 1):
        print(f"[{desc}] {i}/{total}", file=sys.stderr, flush=True)
        yield item
