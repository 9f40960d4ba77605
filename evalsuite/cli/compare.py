"""`evalsuite compare` (paired precision deltas) and `evalsuite frontier` (the k-bit frontier).

Both read a results folder written by `evalsuite run --precisions ...`; the statistics live in
:mod:`evalsuite.precision`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import CliError, add_json_arg, add_results_arg, emit_records

COMPARE_COLUMNS = ["series", "size", "step", "task", "metric", "n", "n_excluded", "reference",
                   "value", "delta", "lower", "upper", "n_up", "n_down", "p_sign", "verdict"]
FRONTIER_COLUMNS = ["task", "metric", "model_bits", "value", "size", "step", "precision",
                    "bits_per_param"]


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="paired deltas of one precision against another, per checkpoint x task, "
                        "with a paired bootstrap interval over items")
    p.add_argument("--precision", required=True, help="precision to compare (e.g. int4-b64)")
    p.add_argument("--against", default="fp32", help="reference precision (default fp32)")
    add_results_arg(p)
    p.add_argument("--task", action="append", default=[], help="only these tasks (repeatable)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--iters", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--measure", choices=["primary", "loglik"], default="primary",
                   help="primary metric (default), or mean log-likelihood of the gold answer "
                        "(nats; sensitive where accuracy sits near the floor)")
    add_json_arg(p)
    p.set_defaults(func=run_compare)

    f = sub.add_parser("frontier", help="best score per total-model-bits budget, per task, across "
                                        "sizes and precisions")
    add_results_arg(f)
    f.add_argument("--task", action="append", default=[], help="only these tasks (repeatable)")
    f.add_argument("--all-steps", action="store_true",
                   help="every step, not only the latest of each size")
    add_json_arg(f)
    f.set_defaults(func=run_frontier)


def _rows(results: str, tasks):
    from ..store import ResultStore

    if not Path(results).is_dir():
        raise CliError(f"results folder {results} does not exist: run `evalsuite run "
                       "--precisions ...` first or pass --results DIR")
    store = ResultStore(results)
    frame = store.to_frame()
    if tasks and len(frame):
        frame = frame[frame["task"].isin(tasks)]
    return store, frame


def run_compare(args) -> int:
    from ..precision import PrecisionError, compare_precisions

    if not 0 < args.level < 1:
        raise CliError(f"--level {args.level}: give a number between 0 and 1, e.g. 0.95")
    if args.iters < 100:
        raise CliError(f"--iters {args.iters}: use at least 100 bootstrap resamples")
    store, frame = _rows(args.results, args.task)
    try:
        records, problems = compare_precisions(
            frame, store.read_samples, precision=args.precision, against=args.against,
            level=args.level, iters=args.iters, seed=args.seed, measure=args.measure)
    except PrecisionError as e:
        raise CliError(str(e)) from e
    for msg in problems:
        print(f"warning: {msg}", file=sys.stderr)
    if not records:
        have = sorted(set(frame["precision"])) if len(frame) else []
        raise CliError(f"no checkpoint x task in {args.results} has both {args.precision} and "
                       f"{args.against} results (precisions there: {', '.join(have) or 'none'}); "
                       f"run `evalsuite run SERIES --precisions {args.against},{args.precision}`")
    emit_records(records, columns=None if args.json else COMPARE_COLUMNS, as_json=args.json)
    if not args.json:
        print(f"delta = {records[0]['precision']} - {records[0]['against']}; "
              f"[lower, upper]: {args.level:.0%} paired bootstrap interval over items "
              f"({args.iters} resamples); n_up/n_down: items whose score rose/fell; p_sign: "
              "exact sign test on those (0/1 metrics); verdict 'within' = the interval contains "
              f"0 or p_sign >= {1 - args.level:.2g}")
    return 0


def run_frontier(args) -> int:
    from ..precision import precision_frontier

    _, frame = _rows(args.results, args.task)
    records = precision_frontier(frame, all_steps=args.all_steps)
    if not records:
        raise CliError(f"no primary rows with model_bits in {args.results}: run `evalsuite run` "
                       "first (rows from schema 1 or imported rows may lack model_bits)")
    emit_records(records, columns=None if args.json else FRONTIER_COLUMNS, as_json=args.json)
    return 0
