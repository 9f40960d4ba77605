"""`evalsuite run SERIES --tasks a,b`: evaluate a checkpoint series, resumable."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ._common import CliError, add_json_arg, add_results_arg, iter_progress, parse_list


def add_data_args(p) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="local benchmark data laid out like ../shared/data/benchmarks "
                        "(default: $EVALSUITE_DATA_DIR; none = lm-eval's hub datasets)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="folder of user task YAMLs (repeatable)")


def data_dir_from(args) -> str | None:
    value = args.data_dir or os.environ.get("EVALSUITE_DATA_DIR")
    return str(Path(value)) if value else None


def register(sub) -> None:
    p = sub.add_parser("run", help="evaluate a checkpoint series on tasks (resumable)")
    p.add_argument("series", help="folder of checkpoints, a model folder or a manifest")
    p.add_argument("--tasks", required=True, help="comma-separated task names (`evalsuite tasks`)")
    add_results_arg(p)
    add_data_args(p)
    p.add_argument("--limit", type=int, default=None, help="first N items of each task")
    p.add_argument("--num-fewshot", type=int, default=None, help="shots (default: the task's)")
    p.add_argument("--precisions", default="fp32",
                   help="comma-separated: fp32,bf16,fp16,int3..int8,nf4,fp4 with an optional -bN "
                        "block size (e.g. int4-b64); see the README's precision section")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="8", help="an integer, or auto (CUDA batch-size search)")
    p.add_argument("--engine", default="evalsuite", choices=["hf", "evalsuite"],
                   help="scoring engine: lm-eval's hf model (reference) or evalsuite's fast engine")
    p.add_argument("--seed", type=int, default=1234, help="few-shot/numpy/torch seed")
    p.add_argument("--bootstrap-iters", type=int, default=1000,
                   help="bootstrap resamples for stderr of corpus-level metrics (perplexity)")
    p.add_argument("--tokens-per-step", type=int, default=None)
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model code from the checkpoint folder/hub (off by default)")
    add_json_arg(p)
    p.set_defaults(func=run)


def build_config(args, tasks):
    from ..records import RunConfig

    bs = args.batch_size
    if bs != "auto":
        try:
            bs = int(bs)
        except ValueError as e:
            raise CliError(f"--batch-size {bs!r}: give an integer or auto") from e
    if args.limit is not None and args.limit <= 0:
        raise CliError("--limit must be a positive number of items")
    return RunConfig(tasks=tuple(tasks), precisions=tuple(parse_list(args.precisions)),
                     num_fewshot=args.num_fewshot, limit=args.limit, device=args.device,
                     batch_size=bs, seed=args.seed, engine=args.engine,
                     bootstrap_iters=args.bootstrap_iters, data_dir=data_dir_from(args),
                     include_path=";".join(args.include_path) or None,
                     trust_remote_code=args.trust_remote_code)


def execute(series_path, task_names, args, *, quiet=False) -> int:
    """Shared by `run` and `demo`."""
    from ..datasets import DataError
    from ..registry import TaskError
    from ..runner import RunError, run_series
    from ..store import ResultStore, StoreError
    from .series import report_problems, scan_series
    from .tasks import make_registry, resolve_specs

    args.path, args.series_name, args.no_hash = series_path, None, False
    registry = make_registry(args.include_path, data_dir_from(args))
    specs = resolve_specs(registry, task_names)
    config = build_config(args, task_names)
    scan = scan_series(args)
    report_problems(scan)
    if not scan.checkpoints:
        raise CliError(f"no loadable checkpoints in {series_path}; see the warnings above")

    def progress(cells):
        return iter_progress(cells, len(cells), "cells")

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    try:
        report = run_series(scan.checkpoints, specs, registry, ResultStore(args.results), config,
                            progress=progress, on_event=say)
    except (RunError, StoreError, TaskError, DataError) as e:
        raise CliError(str(e)) from e
    summary = report.summary() | {"results": str(args.results)}
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=1))
    elif not quiet:
        print(f"done: {report.completed} cells evaluated, {report.skipped} already finished, "
              f"{report.rows_written} rows written to {args.results}/rows.jsonl")
    for what, err in report.failures:
        print(f"failed: {what}: {err}", file=sys.stderr)
    return 1 if report.failures or scan.problems else 0


def run(args) -> int:
    tasks = parse_list(args.tasks)
    if not tasks:
        raise CliError("--tasks is empty: give comma-separated task names (see `evalsuite tasks`)")
    return execute(args.series, tasks, args)
