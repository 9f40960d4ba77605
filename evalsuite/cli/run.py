"""`evalsuite run SERIES --tasks a,b`: evaluate a checkpoint series, resumable."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ._common import (CliError, add_data_args, add_flops_arg, add_json_arg, add_results_arg,
                      data_dir_from, iter_progress, parse_list)


def register(sub) -> None:
    p = sub.add_parser("run", help="evaluate a checkpoint series on tasks (resumable)")
    p.add_argument("series", help="folder of checkpoints, a model folder or a manifest")
    p.add_argument("--tasks", required=True, help="comma-separated task names (`evalsuite tasks`)")
    add_results_arg(p)
    add_data_args(p)
    add_scoring_args(p)
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="score only shard I of N (0 <= I < N) of the grid, split by checkpoint "
                        "(the same split in every process), for array jobs: docs/distributed.md")
    add_executor_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``--shard I/N`` -> (I, N); errors name the flag and the fix."""
    if value is None:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError as e:
        raise CliError(f"--shard {value!r}: give I/N, e.g. 0/4 (shard 0 of 4)") from e
    if n < 1 or not 0 <= i < n:
        raise CliError(f"--shard {value}: need N >= 1 and 0 <= I < N (shards are numbered "
                       "from 0, as in a Slurm array --array=0-(N-1))")
    return i, n


def add_scoring_args(p) -> None:
    """How each checkpoint is scored: shared by `run` and `watch`."""
    p.add_argument("--limit", type=int, default=None, help="first N items of each task")
    p.add_argument("--num-fewshot", type=int, default=None, help="shots (default: the task's)")
    p.add_argument("--precisions", default="auto",
                   help="comma-separated: auto (bf16 on CUDA, fp32 on CPU), fp32,bf16,fp16, "
                        "int3..int8,nf4,fp4 with an optional -bN block size (e.g. int4-b64); see "
                        "docs/precision.md")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", default="8", help="an integer, or auto (CUDA batch-size search)")
    p.add_argument("--engine", default="evalsuite", choices=["hf", "evalsuite"],
                   help="scoring engine: lm-eval's hf model (reference) or evalsuite's fast engine")
    p.add_argument("--seed", type=int, default=1234, help="few-shot/numpy/torch seed")
    p.add_argument("--bootstrap-iters", type=int, default=1000,
                   help="bootstrap resamples for stderr of corpus-level metrics (perplexity)")
    p.add_argument("--tokens-per-step", type=int, default=None, metavar="N",
                   help="training tokens per optimizer step (tokens seen = N x step), for "
                        "compute (FLOPs); not needed where trainer_state.json or a manifest "
                        "gives the tokens")
    p.add_argument("--skip-bad-items", action="store_true",
                   help="drop malformed data records (each logged with its file and line, "
                        "counted in the rows' n_skipped_items) instead of stopping")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model code from the checkpoint folder/hub (off by default)")
    add_flops_arg(p, recorded=True)
    p.add_argument("--no-tuning", dest="tuning", action="store_false",
                   help="leave the process as it is: no glibc allocator tuning, no compiled-"
                        "template cache in lm-eval, no request memo (slower, same numbers; "
                        "docs/engine.md)")


def add_executor_args(p) -> None:
    g = p.add_argument_group("executor (docs/distributed.md)")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: one process evaluates the groups in turn; ray: each checkpoint x "
                        "precision group is a Ray task (pip install 'evalsuite[ray]')")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="with --executor ray: a running cluster's head (HOST:PORT, auto, or "
                        "ray://HOST:10001); default: start a local Ray instance on 127.0.0.1")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local Ray instance: groups evaluated at once (default: CPU cores)")
    g.add_argument("--worker-cpus", type=float, default=1.0, metavar="N",
                   help="CPUs (and torch threads) each Ray group task asks for (default 1)")
    g.add_argument("--worker-gpus", type=float, default=None, metavar="N",
                   help="GPUs each Ray group task asks for (default: 1 with --device cuda, else 0)")
    g.add_argument("--max-retries", type=int, default=3, metavar="N",
                   help="times Ray re-runs a group whose worker process died (default 3)")
    g.add_argument("--trace-workers", default=None, metavar="DIR",
                   help="diagnostics: each Ray worker process logs the groups it starts and "
                        "ends to DIR/<pid>.log")


#: Environment variables handed to Ray worker processes (offline switches, caches, threads).
WORKER_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "EVALSUITE_", "TOKENIZERS_", "OMP_", "MKL_")


def ray_options_from(args):
    """RayOptions for --executor ray, None for local; errors name the flag and the fix."""
    executor = getattr(args, "executor", "local")
    if executor != "ray":
        for flag in ("address", "workers", "worker_gpus", "trace_workers"):
            if getattr(args, flag, None) is not None:
                raise CliError(f"--{flag.replace('_', '-')} applies to --executor ray; add "
                               "--executor ray or drop it")
        return None
    from ..run.executors.ray import RayOptions, import_ray
    from ..run import RunError

    try:
        import_ray()
    except RunError as e:
        raise CliError(str(e)) from e
    if args.address is not None and args.workers is not None:
        raise CliError("--workers sizes a local Ray instance; with --address the cluster's "
                       "resources decide how many groups run at once: drop --workers")
    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.worker_cpus <= 0:
        raise CliError("--worker-cpus must be positive")
    if args.max_retries < 0:
        raise CliError("--max-retries must be 0 or more")
    cuda = args.device.startswith("cuda")
    if cuda and args.device != "cuda":
        raise CliError(f"--device {args.device} with --executor ray: Ray gives each worker its "
                       "own GPU (CUDA_VISIBLE_DEVICES); pass --device cuda")
    gpus = args.worker_gpus if args.worker_gpus is not None else (1.0 if cuda else 0.0)
    if cuda and gpus <= 0:
        raise CliError("--device cuda needs --worker-gpus above 0 (the default is 1)")
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}
    if not cuda:
        env.setdefault("OMP_NUM_THREADS", str(max(1, int(args.worker_cpus))))
    if args.trace_workers:
        Path(args.trace_workers).mkdir(parents=True, exist_ok=True)
    return RayOptions(address=args.address, workers=args.workers, num_cpus=args.worker_cpus,
                      num_gpus=gpus, max_retries=args.max_retries, env_vars=env,
                      trace_dir=str(Path(args.trace_workers).resolve()) if args.trace_workers
                      else None)


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
                     trust_remote_code=args.trust_remote_code,
                     skip_bad_items=bool(getattr(args, "skip_bad_items", False)),
                     tuning=bool(getattr(args, "tuning", True)),
                     flops_basis=getattr(args, "flops_params", "total"))


def execute(series_path, task_names, args, *, quiet=False) -> int:
    """Shared by `run` and `demo`."""
    from ..tasks.adapters import DataError
    from ..tasks.registry import TaskError
    from ..run import RunError, run_series
    from ..store import ResultStore, StoreError
    from .series import report_problems, scan_series
    from .tasks import make_registry, resolve_specs

    args.path, args.series_name, args.no_hash = series_path, None, False
    registry = make_registry(args.include_path, data_dir_from(args),
                             skip_bad_items=bool(getattr(args, "skip_bad_items", False)))
    specs = resolve_specs(registry, task_names)
    config = build_config(args, task_names)
    shard = parse_shard(getattr(args, "shard", None))
    ray_options = ray_options_from(args)
    scan = scan_series(args)
    report_problems(scan)
    if not scan.checkpoints:
        raise CliError(f"no loadable checkpoints in {series_path}; see the warnings above")
    unknown = [c.id for c in scan.checkpoints if c.tokens_seen is None]
    if unknown and not quiet:
        print(f"warning: {len(unknown)} of {len(scan.checkpoints)} checkpoint(s) have no tokens "
              f"seen (e.g. {unknown[0]}): no trainer_state.json, manifest tokens_seen or "
              "--tokens-per-step, so their rows get no compute_flops and compute plots and fits "
              "leave them out. Fix it later without re-scoring: evalsuite series "
              f"{series_path} --tokens-per-step N --annotate --results {args.results}",
              file=sys.stderr)

    def progress(finished, n_groups):
        return iter_progress(finished, n_groups, "checkpoint x precision groups")

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    try:
        report = run_series(scan.checkpoints, specs, registry, ResultStore(args.results), config,
                            progress=progress, on_event=say, ray_options=ray_options,
                            shard=shard)
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
