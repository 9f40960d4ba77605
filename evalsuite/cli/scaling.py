"""`evalsuite fit | emergence | predict | backtest`: scaling laws over the results store."""

from __future__ import annotations

import sys

from ..scaling.fit import DEFAULT_N_BOOT
from ._common import (CliError, add_flops_arg, add_json_arg, add_results_arg, emit_records,
                      frame_records, parse_list)


def _common_args(p, *, series_required: bool = False) -> None:
    add_results_arg(p)
    p.add_argument("--series", required=series_required, metavar="NAME",
                   help="series name (as in the rows: pythia, pythia-deduped, ladder, ...)")
    p.add_argument("--tasks", metavar="A,B", help="comma-separated tasks (default: all scored)")
    p.add_argument("--group", choices=["core", "mmlu", "other"],
                   help="only this task group (core: lambada_openai piqa winogrande arc_easy "
                        "arc_challenge sciq; mmlu: its subjects)")
    p.add_argument("--num-fewshot", type=int, default=0,
                   help="shots of the rows to use (default 0; -1 for any)")
    p.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT,
                   help=f"bootstrap replicates (default {DEFAULT_N_BOOT}, as in the leaderboard)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    add_flops_arg(p)
    p.add_argument("--no-samples", action="store_true",
                   help="ignore per-sample files (results/samples/): bootstrap items from the "
                        "stderr instead, and no log-probability companion for emergence")
    add_json_arg(p)


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit a scaling law per task (final checkpoints of a series)")
    _common_args(p, series_required=True)
    p.add_argument("--form", default="auto",
                   choices=["auto", "aicc", "bic", "power", "sigmoid", "linear", "flat"],
                   help="functional form (docs/scaling.md); auto/aicc/bic choose one by the "
                        "criterion (default auto)")
    p.add_argument("--x", default="compute_flops",
                   choices=["compute_flops", "n_params", "n_params_nonembedding", "tokens_seen",
                            "model_bits"], help="x axis of the fit (default compute_flops)")
    p.add_argument("--max-params", type=float, help="fit only sizes up to this many parameters")
    p.add_argument("--exclude-sizes", metavar="A,B", help="size labels to leave out")
    p.add_argument("--report", action="store_true", help="print each fit's full report")
    p.set_defaults(func=run_fit)

    p = sub.add_parser("emergence", help="classify each task's curve: flat, smooth, emergent, "
                                         "peaked or inverse (criterion: docs/scaling.md, Emergence)")
    _common_args(p)
    p.add_argument("--across", choices=["sizes", "steps"], default="sizes",
                   help="final checkpoints across sizes (x = compute), or training steps of "
                        "each size (x = tokens seen)")
    p.add_argument("--size", help="with --across steps: only this size")
    p.add_argument("--x", help="x axis (default compute_flops across sizes, tokens_seen across "
                               "steps)")
    p.add_argument("--explain", action="store_true", help="print each verdict's explanation")
    p.set_defaults(func=run_emergence)

    p = sub.add_parser("predict", help="predicted scores with 90%% intervals for new sizes")
    _common_args(p, series_required=True)
    p.add_argument("--sizes", required=True, metavar="A,B", help="size labels, e.g. 6.9b,12b")
    p.add_argument("--params", metavar="LABEL=N,...",
                   help="parameter counts for labels that are not in the rows (e.g. 7b=6.7e9)")
    p.add_argument("--max-params", type=float,
                   help="fit only sizes up to this many parameters (default: below the smallest "
                        "requested size)")
    p.add_argument("--exclude-sizes", metavar="A,B", help="size labels to leave out of the fit")
    p.add_argument("--from-steps", action="store_true",
                   help="also use intermediate checkpoints (size x tokens law)")
    p.add_argument("--level", type=float, default=0.9,
                   help="level of the prediction interval (default 0.9: a 90%% interval)")
    p.set_defaults(func=run_predict)

    p = sub.add_parser("backtest", help="hold out the largest sizes, predict them, compare with "
                                        "baselines (B1 last score, B2 line in log-params)")
    _common_args(p)
    p.add_argument("--holdout", default="2", metavar="K|A,B",
                   help="number of largest sizes to hold out, or their labels (default 2)")
    p.add_argument("--exclude-sizes", metavar="A,B", help="size labels to leave out")
    p.add_argument("--level", type=float, default=0.9,
                   help="level of the prediction interval (default 0.9: a 90%% interval)")
    p.add_argument("--detail", action="store_true", help="one row per task and held-out size")
    p.add_argument("--calibration", action="store_true",
                   help="coverage of the 50/80/90/95%% intervals with the misses below/above "
                        "and a PIT histogram, per series, split and group, then pooled")
    p.set_defaults(func=run_backtest)


def _load(args):
    from pathlib import Path

    from ..records import rebase_flops_frame
    from ..store import ResultStore

    if not Path(args.results).is_dir():
        raise CliError(f"results folder {args.results} does not exist: run `evalsuite run` or "
                       "`evalsuite import PATH` first, or pass --results DIR")
    frame = ResultStore(args.results).to_frame()
    if frame.empty:
        raise CliError(f"no rows in {args.results}: run `evalsuite run` or `evalsuite import PATH`")
    frame = rebase_flops_frame(frame, getattr(args, "flops_params", "total"))
    if getattr(args, "num_fewshot", -1) is not None and args.num_fewshot >= 0:
        frame = frame[frame["num_fewshot"] == args.num_fewshot]
    series = getattr(args, "series", None)
    if series:
        names = parse_list(series)
        missing = set(names) - set(frame["series"].unique())
        if missing:
            raise CliError(f"series {sorted(missing)} not in {args.results} (has: "
                           f"{sorted(frame['series'].unique())})")
        frame = frame[frame["series"].isin(names)]
    return frame


def _cells_with_samples(args, rows):
    """cell_key -> per-sample DataFrame for the rows whose per-sample file exists."""
    import pandas as pd
    from pathlib import Path

    root = Path(args.results) / "samples"
    if getattr(args, "no_samples", False) or not root.is_dir() or rows.empty:
        return {}
    out = {}
    for key in rows["cell_key"].dropna().unique():
        path = root / f"{key}.parquet"
        if key and path.exists():
            try:
                out[key] = pd.read_parquet(path)
            except (OSError, ValueError) as e:
                raise CliError(f"cannot read per-sample file {path}: {e}. Delete it to re-run "
                               "that cell, or pass --no-samples") from e
    return out


def _item_samples(args, frame, tasks):
    """Per-item scores (checkpoint_id, task, value) of the final checkpoints, when on disk."""
    import pandas as pd

    from ..scaling import select_points

    rows = select_points(frame[frame["task"].isin(tasks)], step="final")
    cells = _cells_with_samples(args, rows)
    parts = []
    for _, r in rows.iterrows():
        f = cells.get(r["cell_key"])
        col = f"metric_{r['metric']}"
        if f is not None and col in f.columns:
            parts.append(pd.DataFrame({"checkpoint_id": r["checkpoint_id"], "task": r["task"],
                                       "value": f[col].to_numpy(float)}))
    return pd.concat(parts, ignore_index=True) if parts else None


def _tasks(args, frame):
    from ..scaling import task_group

    tasks = parse_list(args.tasks) or sorted(frame.loc[frame["is_primary"].astype(bool), "task"]
                                             .unique())
    if args.group:
        tasks = [t for t in tasks if task_group(t) == args.group]
    if not tasks:
        raise CliError("no tasks selected: check --tasks / --group against `evalsuite results`")
    return tasks


def run_fit(args) -> int:
    from ..scaling import FitError, ScalingLaw, select_points

    frame = _load(args)
    law = ScalingLaw(form=args.form, x=args.x, n_boot=args.n_boot, seed=args.seed)
    records, reports = [], []
    tasks = _tasks(args, frame)
    samples = _item_samples(args, frame, tasks)
    for task in tasks:
        rows = select_points(frame, task=task, step="final")
        excluded = {}
        if args.max_params is not None:
            big = rows[rows["n_params"].astype(float) > args.max_params]
            excluded.update({str(z): f"above --max-params {args.max_params:g}"
                             for z in big["size"].unique()})
            rows = rows[rows["n_params"].astype(float) <= args.max_params]
        if args.exclude_sizes:
            drop = parse_list(args.exclude_sizes)
            excluded.update({z: "--exclude-sizes" for z in drop if z in set(rows["size"])})
            rows = rows[~rows["size"].isin(drop)]
        try:
            fit = law.fit(rows, samples, excluded=excluded)
        except FitError as e:
            records.append({"task": task, "error": str(e)})
            continue
        s = fit.summary()
        rec = {"task": task, "metric": s["metric"], "form": s["form"], "n": s["n_points"]}
        rec.update({k: v for k, v in s["params"].items()})
        rec.update({"aicc": s["aicc"], "bic": s["bic"],
                    "chi2_p": s["goodness_of_fit"]["p"], "flag": s["fit_flag"]})
        records.append(rec if not args.json else {**rec, "summary": s})
        reports.append(fit.report())
    if args.json:
        emit_records(records, as_json=True)
    elif args.report:
        print("\n\n".join(reports))
    else:
        emit_records(records)
    failed = [r for r in records if r.get("error")]
    for r in failed:  # a partly failed command says what failed and exits non-zero
        print(f"{'warning' if len(failed) < len(records) else 'error'}: no fit for {r['task']}: "
              f"{r['error']}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(records)} fit(s) failed (listed above)", file=sys.stderr)
    return 1 if failed else 0


def run_emergence(args) -> int:
    from ..scaling import emergence_table

    import pandas as pd

    from ..scaling import brier_rows, logprob_rows

    frame = _load(args)
    tasks = _tasks(args, frame)
    prim = frame[frame["is_primary"].astype(bool) & frame["task"].isin(tasks)]
    cells = _cells_with_samples(args, prim)
    if cells:
        with_samples = prim[prim["cell_key"].isin(list(cells))]
        for comp in (logprob_rows(with_samples, cells), brier_rows(with_samples, cells)):
            if len(comp):
                frame = pd.concat([frame, comp], ignore_index=True)
    table = emergence_table(frame, across=args.across, size=args.size, x=args.x, tasks=tasks,
                            num_fewshot=None, n_boot=args.n_boot)
    if table.empty:
        raise CliError("nothing to classify (need at least 4 distinct x values per curve)")
    records = frame_records(table)
    if args.json:
        emit_records(records, as_json=True)
        return 0
    cols = ["series", "size", "task", "verdict", "onset_x", "onset_lower", "onset_upper", "rise",
            "rise_decades", "within_gap_decades", "delta_bic", "ramp_p", "companion_verdict",
            "sensitivity"]
    emit_records(records, columns=[c for c in cols if c in table.columns])
    print("onset_lower/onset_upper: 90% bootstrap interval of the onset; within_gap_decades: a "
          "rise no measured point resolves (its width is at most that gap); sensitivity: the "
          "verdict at half / one / two times the sharpness threshold (docs/scaling.md)")
    if args.explain:
        print()
        for r in records:
            print(f"{r['series']} {r['size']} {r['task']}: {r['verdict']}: {r['explanation']}")
    return 0


def run_predict(args) -> int:
    from ..scaling import FitError, ScalingLaw, predict_sizes

    frame = _load(args)
    params = {}
    for item in parse_list(args.params):
        label, _, value = item.partition("=")
        try:
            params[label.strip()] = float(value)
        except ValueError:
            raise CliError(f"--params {item!r}: write LABEL=COUNT, e.g. 7b=6.7e9") from None
    tasks = _tasks(args, frame)
    try:
        table = predict_sizes(frame, series=args.series, sizes=parse_list(args.sizes),
                              tasks=tasks, samples=_item_samples(args, frame, tasks),
                              num_fewshot=None, level=args.level,
                              law=ScalingLaw(x="n_params", n_boot=args.n_boot, seed=args.seed,
                                             compare_forms=False),
                              params=params, max_params=args.max_params,
                              from_steps=args.from_steps,
                              exclude_sizes=parse_list(args.exclude_sizes))
    except FitError as e:
        raise CliError(str(e)) from e
    records = frame_records(table)
    for r in records:
        r["level"] = args.level
        if r.get("error"):
            r["error"] = _predict_reason(str(r["error"]))
    done = [r for r in records if not r.get("error")]
    failed = [r for r in records if r.get("error")]
    if not records:
        raise CliError(f"nothing to predict for series {args.series}: none of the tasks "
                       f"({', '.join(tasks)}) has a final checkpoint to fit on (the fit uses the "
                       "sizes below the smallest requested one, or those up to --max-params N); "
                       "evaluate smaller sizes, or let larger ones in with --max-params N")
    cols = ["task", "size", "n_params", "predicted", "lower", "upper", "extrapolated",
            "distance_decades", "actual", "form", "n_fit", "fit_flag"]
    if args.json:
        emit_records(records, as_json=True)
    elif done:
        emit_records(done, columns=[c for c in cols if c in table.columns])
        print(f"lower/upper: the {args.level:.0%} prediction interval of a new measurement at that "
              "size (docs/scaling.md)")
    for r in failed:  # every task a law could not be fitted to, on stderr, with the reason
        print(f"{'warning' if done else 'error'}: no prediction for {args.series} {r['task']}: "
              f"{r['error']}", file=sys.stderr)
    return 0 if done else 1


def _predict_reason(message: str) -> str:
    """A fit error as ``predict`` should show it: ScalingLaw's hint to pass ``form=...`` names
    an option ``predict`` has no flag for, so that sentence gives way to advice it can take."""
    sentences = message.split(". ")
    kept = [s for s in sentences if "form=" not in s]
    if len(kept) == len(sentences):
        return message
    return (". ".join(kept).rstrip(".") + ". Evaluate more sizes below the smallest requested "
            "one, or let larger sizes into the fit with --max-params N")


def run_backtest(args) -> int:
    import pandas as pd

    from ..scaling import FitError, ScalingLaw, backtest, calibration_table, summarize_backtest

    frame = _load(args)
    tasks = _tasks(args, frame)
    holdout: int | list[str]
    holdout = int(args.holdout) if args.holdout.isdigit() else parse_list(args.holdout)
    groups = [args.group] if args.group else ["core", "mmlu", "other"]
    samples = _item_samples(args, frame, tasks)
    results = []
    for series in sorted(frame["series"].unique()):
        try:
            results.append(backtest(frame, series=series, holdout=holdout, tasks=tasks,
                                    exclude_sizes=parse_list(args.exclude_sizes), num_fewshot=None,
                                    level=args.level, groups=groups, samples=samples,
                                    law=ScalingLaw(x="n_params", n_boot=args.n_boot,
                                                   seed=args.seed, compare_forms=False)))
        except FitError as e:
            if args.series:
                raise CliError(f"{series}: {e}") from e
    result = pd.concat(results) if results else pd.DataFrame()
    if result.empty:
        raise CliError("no task could be back-tested (each needs 4 fitted sizes and the "
                       "held-out sizes); check --series and --holdout")
    if args.calibration:
        table = calibration_table(result)
    else:
        table = result if args.detail else summarize_backtest(result)
    emit_records(frame_records(table), as_json=args.json)
    if args.calibration and not args.json:
        print("cover_P: share of held-out scores inside the P% interval; miss_P_below_above: "
              "scores under / over it; pit_deciles: counts of the predictive probability of "
              "each actual score in tenths (flat when calibrated). Method: docs/scaling.md")
    return 0
