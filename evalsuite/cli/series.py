"""`evalsuite series PATH`: list the checkpoints of a series."""

from __future__ import annotations

import sys

from ._common import CliError, add_json_arg, add_results_arg, emit_records

COLUMNS = ["id", "size", "step", "n_params", "n_params_nonembedding", "tokens_seen",
           "compute_flops", "dtype", "weight_hash", "duplicate_of"]


def register(sub) -> None:
    p = sub.add_parser("series", help="discover the checkpoints of a series (folder or manifest)")
    p.add_argument("path", help="folder of checkpoints, a single model folder, or a manifest .yaml/.json")
    p.add_argument("--tokens-per-step", type=int, default=None,
                   help="training tokens per step, where neither a manifest nor trainer_state.json says")
    p.add_argument("--series-name", default=None, help="override the series name")
    p.add_argument("--no-hash", action="store_true", help="skip weight hashing (no duplicate check)")
    p.add_argument("--annotate", action="store_true",
                   help="write these checkpoints' parameters and tokens seen into the results "
                        "folder's metadata (results/metadata.jsonl): rows already scored get them, "
                        "and their compute, when read; nothing is re-scored")
    add_results_arg(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def scan_series(args):
    from ..series import SeriesError, discover_series

    try:
        return discover_series(args.path, tokens_per_step=args.tokens_per_step,
                               series_name=args.series_name, hash_weights_=not args.no_hash)
    except SeriesError as e:
        raise CliError(str(e)) from e


def report_problems(scan) -> None:
    for where, msg in scan.problems:
        print(f"warning: skipped {where}: {msg}", file=sys.stderr)


def run(args) -> int:
    scan = scan_series(args)
    if not scan.checkpoints:
        report_problems(scan)
        if scan.problems:
            raise CliError(f"none of the {len(scan.problems)} checkpoint(s) in {args.path} could "
                           "be read; see the warnings above")
        raise CliError(f"{args.path} lists no checkpoints: add entries under `checkpoints:`")
    records = scan.records()
    if args.annotate:
        return annotate(scan, records, args)
    emit_records(records, columns=None if args.json else COLUMNS, as_json=args.json)
    if not args.json:
        unknown = sum(1 for r in records if r["tokens_seen"] is None)
        if unknown:
            print(f"\n{unknown} checkpoint(s) have unknown tokens_seen (so unknown FLOPs): give "
                  "--tokens-per-step or a manifest with tokens_seen", file=sys.stderr)
        for h, ids in scan.duplicates.items():
            print(f"duplicate weights ({h}): {', '.join(ids)}", file=sys.stderr)
    report_problems(scan)
    if scan.problems:
        print(f"{len(scan.problems)} of {len(scan.problems) + len(records)} checkpoint(s) "
              "skipped (listed above); the table shows the others", file=sys.stderr)
    return 0


def annotate(scan, records, args) -> int:
    """``--annotate``: the scanned metadata into the results folder; says which rows it fixes."""
    from ..store import ResultStore, StoreError

    store = ResultStore(args.results)
    if not store.rows_path.exists():
        raise CliError(f"no results in {store.root} to annotate: pass the folder the run wrote "
                       "with --results DIR")
    before = {(r.series, r.size, r.step): r.compute_flops for r in store.read_rows()}
    try:
        n = store.annotate({"series": c.series, "size": c.size, "step": c.step,
                            "n_params": c.n_params, "n_params_nonembedding": c.n_params_nonembedding,
                            "tokens_seen": c.tokens_seen} for c in scan.checkpoints)
    except StoreError as e:
        raise CliError(str(e)) from e
    after = {(r.series, r.size, r.step): r.compute_flops for r in store.read_rows()}
    fixed = sorted(k for k in after if before.get(k) is None and after[k] is not None)
    unknown = sum(1 for r in records if r["tokens_seen"] is None)
    out = {"annotated": n, "checkpoints_given_compute": len(fixed), "still_unknown_tokens": unknown,
           "metadata": str(store.metadata_path)}
    if args.json:
        emit_records([out], as_json=True)
    else:
        print(f"annotated {n} checkpoint(s) in {store.metadata_path}; {len(fixed)} scored "
              "checkpoint(s) now have compute_flops; rebuild with `evalsuite leaderboard`")
        if unknown:
            print(f"{unknown} checkpoint(s) still have unknown tokens_seen: give --tokens-per-step "
                  "or a manifest with tokens_seen", file=sys.stderr)
    return 0
