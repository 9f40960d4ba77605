"""`evalsuite results`: print or export the results table."""

from __future__ import annotations

from ._common import CliError, add_json_arg, add_results_arg, emit_records, frame_records

COLUMNS = ["checkpoint_id", "task", "metric", "value", "stderr", "n_samples", "num_fewshot",
           "tokens_seen", "compute_flops"]


def register(sub) -> None:
    p = sub.add_parser("results", help="print the results table (primary metrics by default)")
    add_results_arg(p)
    p.add_argument("--all-metrics", action="store_true", help="every metric, not only primary ones")
    p.add_argument("--task", action="append", default=[], help="only these tasks (repeatable)")
    p.add_argument("--csv", metavar="FILE", help="also write the rows (all columns) as CSV")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..store import ResultStore, StoreError

    if not Path(args.results).is_dir():
        raise CliError(f"results folder {args.results} does not exist: run `evalsuite run` first "
                       "or pass --results DIR")
    try:  # torn writes and invalid rows are logged and left out; an unreadable file is an error
        frame = ResultStore(args.results).to_frame()
    except StoreError as e:
        raise CliError(str(e)) from e
    if not args.all_metrics and len(frame):
        frame = frame[frame["is_primary"].astype(bool)]
    if args.task:
        frame = frame[frame["task"].isin(args.task)]
    frame = frame.sort_values(["series", "n_params", "step", "precision", "task", "metric"],
                              na_position="first", kind="stable")
    if args.csv:
        out = frame.copy()
        out["versions"] = out["versions"].map(lambda v: ";".join(f"{k}={x}" for k, x in sorted((v or {}).items())))
        out.to_csv(args.csv, index=False)
    records = frame_records(frame)
    if args.json:
        emit_records(records, as_json=True)
    else:
        emit_records(records, columns=COLUMNS)
    return 0
