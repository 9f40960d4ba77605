"""`evalsuite watch PATH --tasks a,b`: score a training run's checkpoints as they are saved.

`evalsuite forecast`: each curve's score at the planned final step, and its back-test.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ._common import (CliError, add_data_args, add_json_arg, add_results_arg, data_dir_from,
                      emit_records, frame_records, parse_list)


def register(sub) -> None:
    # (nothing from evalsuite.run is imported here: that would load tqdm before main() quiets it)
    from .run import add_scoring_args

    p = sub.add_parser("watch", help="poll a checkpoint folder and score each checkpoint once "
                                     "it is completely written (docs/watch.md)")
    p.add_argument("path", help="the folder a training run saves checkpoints into")
    p.add_argument("--tasks", required=True, help="comma-separated task names (`evalsuite tasks`)")
    add_results_arg(p)
    add_data_args(p)
    p.add_argument("--interval", type=float, default=30.0, metavar="S",
                   help="seconds between polls (default 30)")
    p.add_argument("--settle", type=float, default=None, metavar="S",
                   help="seconds a complete-looking checkpoint must stay unchanged before it is "
                        "scored (default 10: evalsuite.run.watch.DEFAULT_SETTLE_S)")
    p.add_argument("--marker", default=None, metavar="NAME",
                   help="score a checkpoint only once this file exists in its folder (what "
                        "evalsuite's Trainer callback writes: evalsuite.ready)")
    stop = p.add_argument_group("when to stop (default: run until interrupted)")
    stop.add_argument("--until-step", type=int, default=None, metavar="N",
                      help="exit once a checkpoint at step N or later is scored")
    stop.add_argument("--idle-exit", type=float, default=None, metavar="S",
                      help="exit when no checkpoint appeared or changed for S seconds")
    stop.add_argument("--once", action="store_true",
                      help="score what is complete now, then exit")
    p.add_argument("--final-step", type=int, default=None, metavar="N",
                   help="the run's planned last step, for the forecast of the final score "
                        "(default: max_steps in the checkpoints' trainer_state.json)")
    p.add_argument("--leaderboards", default="leaderboards", metavar="DIR",
                   help="rebuilt after each poll that scored a checkpoint (default leaderboards/)")
    p.add_argument("--no-leaderboards", action="store_true", help="do not rebuild leaderboards")
    p.add_argument("--nice", type=int, default=10, metavar="N",
                   help="lower this process's CPU priority by N (default 10; 0 to keep it), so "
                        "training beside it keeps the CPU")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads for scoring (default: torch's choice)")
    add_scoring_args(p)
    add_json_arg(p)
    p.set_defaults(func=run_watch, executor="local")

    p = sub.add_parser("forecast", help="forecast each curve's score at the planned final step "
                                        "from the checkpoints so far; --backtest checks it")
    add_results_arg(p)
    p.add_argument("--series", metavar="A,B", help="series (default: all with a plan)")
    p.add_argument("--tasks", metavar="A,B", help="comma-separated tasks (default: all)")
    p.add_argument("--group", choices=["core", "mmlu", "other"], help="only this task group")
    p.add_argument("--final-step", type=int, default=None, metavar="N",
                   help="the planned final step (default: what `evalsuite watch` recorded; with "
                        "--backtest: each curve's last step)")
    p.add_argument("--backtest", action="store_true",
                   help="forecast each curve's last step from the checkpoints up to 10%%, 25%% "
                        "and 50%% of it, against the latest score and a line in log steps")
    p.add_argument("--detail", action="store_true", help="with --backtest: one row per curve")
    p.add_argument("--n-boot", type=int, default=None, metavar="N",
                   help="bootstrap replicates of each interval (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    add_json_arg(p)
    p.set_defaults(func=run_forecast)


def _metric_line(record) -> str:
    parts = []
    for task, m in sorted(record["metrics"].items()):
        s = f"{task} {m['metric']} " + ("nan" if m["value"] is None else f"{m['value']:.4f}")
        if m.get("stderr") is not None:
            s += f" ±{m['stderr']:.4f}"
        fc = record["forecast"].get(task)
        if fc and fc.get("mean") is not None and fc["final_step"] > fc["last_step"]:
            s += (f" -> step {fc['final_step']}: {fc['mean']:.3f} [{fc['lower']:.3f}, "
                  f"{fc['upper']:.3f}] (+{fc['decades']:.2f} dec)")
        parts.append(s)
    return f"{record['checkpoint']} (step {record['step']}): " + "; ".join(parts)


def run_watch(args) -> int:
    from ..run import RunError
    from ..run.watch import DEFAULT_SETTLE_S, CheckpointWatcher, watch_series
    from ..store import ResultStore, StoreError
    from ..tasks.adapters import DataError
    from ..tasks.registry import TaskError
    from .run import build_config
    from .tasks import make_registry, resolve_specs

    root = Path(args.path)
    if not root.is_dir():
        raise CliError(f"{root} is not a folder: pass the folder the training run saves "
                       "checkpoints into (it may be empty when the watch starts)")
    for flag in ("final_step", "until_step"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise CliError(f"--{flag.replace('_', '-')} must be a positive step")
    for flag in ("interval", "settle", "idle_exit"):
        v = getattr(args, flag)
        if v is not None and v < 0:
            raise CliError(f"--{flag.replace('_', '-')} must be 0 or more seconds")
    tasks = parse_list(args.tasks)
    if not tasks:
        raise CliError("--tasks is empty: give comma-separated task names (see `evalsuite tasks`)")
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    registry = make_registry(args.include_path, data_dir_from(args),
                             skip_bad_items=args.skip_bad_items)
    specs = resolve_specs(registry, tasks)
    config = build_config(args, tasks)
    store = ResultStore(args.results)
    watcher = CheckpointWatcher(root, settle_s=DEFAULT_SETTLE_S if args.settle is None else
                                args.settle, marker=args.marker)

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    def on_scored(record):
        if args.json:
            print(json.dumps(record, sort_keys=True, default=str), flush=True)
        else:
            print(_metric_line(record), flush=True)

    def rebuild():
        if args.no_leaderboards:
            return
        from ..leaderboard import build_leaderboard

        try:
            build_leaderboard(store.read_rows(), args.leaderboards, plans=store.read_plans())
        except Exception as e:  # noqa: BLE001 - the scores are saved; the page can be rebuilt
            say(f"warning: leaderboards not rebuilt in {args.leaderboards} ({e}); the scores are "
                f"saved: rebuild with `evalsuite leaderboard --results {args.results} --out "
                f"{args.leaderboards}`")

    try:
        report = watch_series(watcher, specs, registry, store, config,
                              interval_s=args.interval, until_step=args.until_step,
                              idle_exit_s=0.0 if args.once else args.idle_exit,
                              final_step=args.final_step, tokens_per_step=args.tokens_per_step,
                              on_scored=on_scored, on_event=say, after_batch=rebuild,
                              sleep=time.sleep)
    except (RunError, StoreError, TaskError, DataError) as e:
        raise CliError(str(e)) from e
    for what, err in report.failures:
        print(f"failed: {what}: {err}", file=sys.stderr)
    for folder, why in sorted(report.pending.items()):
        print(f"not scored: {folder}: {why}", file=sys.stderr)
    say(f"watch ended ({report.stopped_because}): {len(report.scored)} checkpoint(s) scored")
    return 1 if report.failures or report.pending else 0


def run_forecast(args) -> int:
    import pandas as pd

    from ..scaling import task_group
    from ..scaling.forecast import (FORECAST_BOOT, forecast_backtest, forecast_curves,
                                    summarize_forecast_backtest)
    from ..store import ResultStore

    if not Path(args.results).is_dir():
        raise CliError(f"results folder {args.results} does not exist: run `evalsuite watch`, "
                       "`evalsuite run` or `evalsuite import PATH` first, or pass --results DIR")
    store = ResultStore(args.results)
    frame = store.to_frame()
    if frame.empty:
        raise CliError(f"no rows in {args.results}")
    series = parse_list(args.series) or sorted(frame["series"].unique())
    missing = set(series) - set(frame["series"].unique())
    if missing:
        raise CliError(f"series {sorted(missing)} not in {args.results} (has: "
                       f"{sorted(frame['series'].unique())})")
    frame = frame[frame["series"].isin(series)]
    tasks = parse_list(args.tasks)
    if tasks:
        frame = frame[frame["task"].isin(tasks)]
    if args.group:
        frame = frame[frame["task"].map(task_group) == args.group]
    if frame.empty:
        raise CliError("no rows left after --series / --tasks / --group")
    n_boot = FORECAST_BOOT if args.n_boot is None else args.n_boot
    if args.backtest:
        result = forecast_backtest(frame, series=series, final_step=args.final_step,
                                   n_boot=n_boot, seed=args.seed)
        if result.empty:
            raise CliError("no curve to back-test: each needs its final step and checkpoints "
                           "before the cut-offs")
        table = result if args.detail else summarize_forecast_backtest(result)
        emit_records(frame_records(table), as_json=args.json)
        if not args.json and not args.detail:
            print("mae_*: mean absolute error of the forecast, the latest score and a line in "
                  "log steps; coverage: share of final scores inside the 90% interval; "
                  "actual_below/above: final scores under / over it (docs/watch.md)")
        return 0
    plans = store.read_plans()
    if args.final_step is not None:
        plans = {(s, z): args.final_step for s, z in
                 frame[["series", "size"]].drop_duplicates().itertuples(index=False)}
    if not plans:
        raise CliError(f"no planned final step in {args.results}: pass --final-step N (or let "
                       "`evalsuite watch` record the Trainer's max_steps)")
    table = forecast_curves(frame, plans, n_boot=n_boot, seed=args.seed)
    if table.empty:
        raise CliError("no curve of the selected rows has a planned final step")
    cols = ["series", "size", "task", "metric", "num_fewshot", "last_step", "latest", "final_step",
            "mean", "lower", "upper", "decades", "note"]
    emit_records(frame_records(pd.DataFrame(table)[cols]), as_json=args.json)
    return 0
