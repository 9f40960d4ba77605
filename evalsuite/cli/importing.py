"""`evalsuite import PATH`: lm-eval result JSON files -> the results store."""

from __future__ import annotations

from ._common import CliError, add_json_arg, add_results_arg, emit_records


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="import lm-eval result JSON files (a file or a folder) into the results store",
        description="Read lm-evaluation-harness result files (v0.3 or v0.4 format) and append them "
                    "as result rows. Pythia, OPT and BLOOM names are recognised; other models "
                    "need a mapping file. Importing the same files again adds nothing.")
    p.add_argument("path", nargs="+", metavar="PATH", help="result JSON file or folder (recursive)")
    add_results_arg(p)
    p.add_argument("--mapping", metavar="FILE",
                   help="YAML/JSON: models: {<pretrained name or file stem>: {series, size, "
                        "n_params, tokens_seen | tokens_per_step, step}}, tasks: {<task>: "
                        "{metric, chance}}")
    p.add_argument("--dry-run", action="store_true", help="read and summarise, write nothing")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import datetime

    import pandas as pd

    from ..importer import ImportError_, append_imported, import_results, load_mapping
    from ..store import ResultStore, StoreError

    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        mapping = load_mapping(args.mapping)
        rows = import_results(args.path, mapping, timestamp=stamp)
    except ImportError_ as e:
        raise CliError(str(e)) from e
    written = skipped = 0
    if not args.dry_run:
        try:  # under the folder's lock, one write (and commit) per cell
            written, skipped = append_imported(ResultStore(args.results), rows)
        except StoreError as e:
            raise CliError(str(e)) from e
    frame = pd.DataFrame([{"series": r.series, "size": r.size, "checkpoint": r.checkpoint_id,
                           "num_fewshot": r.num_fewshot, "task": r.task} for r in rows])
    records = []
    if len(frame):
        g = frame.groupby(["series", "size", "num_fewshot"], dropna=False)
        summary = g.agg(checkpoints=("checkpoint", "nunique"), tasks=("task", "nunique"),
                        rows=("task", "size")).reset_index()
        records = summary.to_dict(orient="records")
    emit_records(records, columns=["series", "size", "num_fewshot", "checkpoints", "tasks", "rows"],
                 as_json=args.json)
    if not args.json:
        print(f"{len(rows)} rows read; {written} written to {args.results}/rows.jsonl, "
              f"{skipped} cells already there" + (" (dry run)" if args.dry_run else ""))
    return 0
