"""``evalsuite obs``: observational scaling laws (Ruan, Maddison & Hashimoto 2024) from the CLI.

Subcommands: ``pca``, ``families`` (alias ``efficiency``), ``predict``, ``backtest``, ``select``,
``place``. Data: ``--data DIR`` (the ObsScaling ``eval_results`` folder; default
``$EVALSUITE_OBS_DATA`` or ``../shared/data/obsscaling``) or ``--data FILE.csv`` (a capability
table in the ObsScaling layout, or Sloth's ``data_v2.csv``, recognised by its columns).
This module is the only place that reads the environment, argv and the CSV files.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import (CliError, add_json_arg, add_results_arg, emit_records, frame_records,
                      parse_list)

BASE_FILE = "base_llm_benchmark_eval.csv"
EMERGENT_FILE = "base_llm_emergent_capability_eval.csv"
V2_FILE = "base_llm_leaderboard_v2_eval.csv"
INSTRUCT_FILE = "instruct_llm_benchmark_eval.csv"
AGENT_FILE = "instruct_llm_agent_eval.csv"
SLOTH_V2_TARGETS = ("IFEval", "BBH", "MATH Lvl 5", "GPQA", "MUSR", "MMLU-PRO")
SLOTH_BENCHMARKS = ("MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K")
AGENT_TARGETS = ("ABench-OA", "ABoard-Avg_PR", "ABoard-Avg_SR")
DEFAULT_CUTOFF_FLOPS = 84e21  # Llama-2-7B's 6·N·D, the paper's cutoff for the emergent backtests


# ---- reading the data ---------------------------------------------------------------------

@dataclass
class _Data:
    frame: Any                 # canonical frame of the chosen sample
    full: Any                  # canonical frame of every row in the table
    source: str                # file the capability table came from
    kind: str                  # "obsscaling" or "sloth" or "table"
    folder: Path | None        # ObsScaling folder (for target files), None for a single file
    benchmarks: tuple[str, ...]
    reference_family: str
    raw: Any                   # the raw capability table (targets may live in it)
    sample: str = "all"


def _default_data() -> str:
    return os.environ.get("EVALSUITE_OBS_DATA") or str(Path("..") / "shared" / "data" / "obsscaling")


def _read_csv(path: Path):
    import pandas as pd

    if not path.exists():
        raise CliError(f"{path}: file not found. Point --data at the ObsScaling eval_results folder "
                       "(or set EVALSUITE_OBS_DATA)")
    try:
        return pd.read_csv(path)
    except Exception as e:  # pandas raises several types for unreadable CSV
        raise CliError(f"{path}: cannot read as CSV ({e})") from e


def _load(args) -> _Data:
    from ..scaling import observational as obs

    data = Path(args.data)
    folder = data if data.is_dir() else None
    path = data / BASE_FILE if folder else data
    raw = _read_csv(path)
    if "Family" in raw.columns and "ARC" in raw.columns:
        kind, mapping, bench, ref = "sloth", obs.SLOTH_COLUMN_MAPPING, SLOTH_BENCHMARKS, "llama-2"
        keep = [c for c in ("Instruct", *SLOTH_V2_TARGETS) if c in raw.columns]
    else:
        kind = "obsscaling" if folder else "table"
        mapping, bench, ref, keep = obs.OBS_COLUMN_MAPPING, obs.OBS_BENCHMARKS, "Llama-2", []
    try:
        full = obs.standardize_frame(raw, mapping=mapping, source=str(path), keep=keep)
    except obs.ObsDataError as e:
        raise CliError(str(e)) from e
    if getattr(args, "benchmarks", None):
        bench = tuple(parse_list(args.benchmarks))
    sample = args.sample or ("paper" if kind == "obsscaling" else "all")
    if sample == "paper":
        frame = obs.select_paper_models(full)
    elif sample == "preregistered":
        frame = obs.select_preregistered(full)
    elif sample == "base":
        if "Instruct" not in full.columns:
            raise CliError(f"{path}: --sample base needs an 'Instruct' column; use paper or all")
        frame = full[~full["Instruct"].astype(bool)]
    else:
        frame = full
    absent = [b for b in bench if b not in full.columns]
    if absent:
        known = [c for c in full.columns if c not in ("model", "family", "n_params", "tokens_seen",
                                                      "compute_flops", "compute_flops_reported")]
        raise CliError(f"{path}: --benchmarks names {absent}, which the table (after the column "
                       f"mapping) does not have; available: {', '.join(map(str, known))}")
    k = getattr(args, "components", 3)
    observed = frame[list(bench)].notna().sum(axis=1)
    dropped = frame["model"][observed < k].tolist()
    if dropped:
        print(f"note: {len(dropped)} model(s) with fewer than {k} of {list(bench)} observed are "
              f"left out ({', '.join(dropped[:3])}{', ...' if len(dropped) > 3 else ''})",
              file=sys.stderr)
    frame = frame[observed >= k].reset_index(drop=True)
    if frame.empty:
        raise CliError(f"{path}: no model left in sample {sample!r}")
    return _Data(frame=frame, full=full, source=str(path), kind=kind, folder=folder,
                 benchmarks=tuple(bench), reference_family=args.reference or ref, raw=raw,
                 sample=sample)


def _fit_pca(d: _Data, k: int, preset: str = "ours"):
    from ..scaling import observational as obs

    kw = {} if preset != "paper" else {k_: v for k_, v in obs.PAPER_PCA.items()
                                       if k_ != "n_components"}
    try:
        return obs.CapabilityPCA(n_components=k, benchmarks=d.benchmarks, **kw).fit(
            d.frame, source=d.source)
    except obs.ObsDataError as e:
        raise CliError(str(e)) from e


def _print_json(obj: Any) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item") and not isinstance(v, str):
            try:
                return clean(v.item())
            except (ValueError, AttributeError):
                return str(v)
        return v

    json.dump(clean(obj), sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")


# ---- subcommands --------------------------------------------------------------------------

def _cmd_pca(args) -> int:
    d = _load(args)
    pca = _fit_pca(d, args.components, getattr(args, 'preset', 'ours'))
    if args.scores:
        recs = frame_records(pca.transform(d.frame).merge(
            d.frame[["model", "family", "compute_flops"]], on="model"))
        emit_records(recs, as_json=args.json)
        return 0
    if args.json:
        _print_json({"data": d.source, "sample": d.sample, **pca.summary()})
        return 0
    recs = [{"benchmark": b, **{f"PC{i + 1}": float(pca.components[i, j])
                                for i in range(pca.n_components)}}
            for j, b in enumerate(pca.benchmarks)]
    recs.append({"benchmark": "explained variance ratio",
                 **{f"PC{i + 1}": float(v) for i, v in enumerate(pca.explained_variance_ratio)}})
    print(f"{d.source}: {len(pca.models)} models, {pca.n_imputed} scores imputed")
    emit_records(recs, float_fmt="{:.3f}")
    return 0


def _cmd_families(args) -> int:
    from ..scaling import observational as obs

    d = _load(args)
    pca = _fit_pca(d, args.components, getattr(args, 'preset', 'ours'))
    try:
        eff = obs.FamilyEfficiency(min_models=args.min_models, level=args.level).fit(
            pca.transform(d.frame), d.frame, source=d.source)
    except obs.ObsDataError as e:
        raise CliError(str(e)) from e
    mismatch = obs.check_flops(d.frame)
    if args.json:
        _print_json({"data": d.source, "sample": d.sample,
                     "flops_check": {"compared": int(d.frame[["compute_flops",
                                                              "compute_flops_reported"]].notna().all(axis=1).sum()),
                                     "mismatches": frame_records(mismatch)},
                     **eff.summary()})
        return 0
    if not mismatch.empty:
        print(f"warning: 6·N·D differs from the table's FLOPs column for {len(mismatch)} model(s): "
              f"{', '.join(mismatch['model'].head(5))}; the fits use 6·N·D", file=sys.stderr)
    comps = parse_list(args.component) or [f"PC{i + 1}" for i in range(pca.n_components)]
    lines = [ln for ln in eff.lines if ln.component in comps]
    lines.sort(key=lambda ln: (ln.component, -ln.slope))
    emit_records([{"component": ln.component, "family": ln.family, "n": ln.n_models,
                   "slope": ln.slope, "slope_lower": ln.slope_lower, "slope_upper": ln.slope_upper,
                   "intercept": ln.intercept, "r2": ln.r2} for ln in lines], float_fmt="{:.3f}")
    for fam, why in eff.skipped:
        print(f"skipped {fam}: {why}", file=sys.stderr)
    return 0


def _target(d: _Data, spec: str):
    """``FILE:COLUMN`` (FILE relative to the data folder) or ``COLUMN`` of the capability table."""
    import pandas as pd

    from ..scaling import observational as obs

    if ":" in spec:
        file, column = spec.rsplit(":", 1)
        path = Path(file)
        if not path.exists() and d.folder is not None:
            path = d.folder / file
        raw = _read_csv(path)
        source = str(path)
    else:
        raw, column, source = d.raw, spec, d.source
    model_col = "Model" if "Model" in raw.columns else None
    if model_col is None:
        raise CliError(f"{source}: no 'Model' column to join targets on")
    if column not in raw.columns:
        raise CliError(f"{source}: no column {column!r}; columns are {list(raw.columns)[:12]}...")
    values = pd.Series(raw[column].to_numpy(), index=raw[model_col].astype(str).str.strip(),
                       name=column)
    y, chance = obs.normalize_target(values, column)
    return y.rename(column), chance, source


def _split(spec: str, frame, y, d: _Data):
    from ..scaling import observational as obs

    kind, _, arg = spec.partition(":")
    if kind == "flops":
        cutoff = float(arg) if arg else DEFAULT_CUTOFF_FLOPS
        tr, te = obs.split_by_flops(frame, cutoff)
        return tr, te, f"flops<={cutoff:.3g}"
    if kind == "rank":
        frac = float(arg) if arg else 0.2
        known = y[y.index.isin(frame["model"])]
        tr, te = obs.split_by_rank(known, frac)
        return tr, te, f"top {frac:.0%} of target"
    if kind == "closed":
        tr, te = obs.split_by_flops(frame, math.inf)
        return tr, te, "closed (no public FLOPs)"
    if kind == "preregistered":
        pre = set(obs.PREREGISTERED_MODELS)
        return ([m for m in frame["model"] if m not in pre],
                [m for m in frame["model"] if m in pre], "preregistered")
    raise CliError(f"--split {spec!r}: use flops[:CUTOFF], rank[:FRACTION], closed or preregistered")


def _predict_setup(d: _Data, target_source: str, split: str, k: int):
    """(frame, capability_space, reference_frame) for a target file.

    Instruct targets are placed in the space of the 77 base models (the instruct table has only
    27 models); pre-registered models join the paper sample as test rows.
    """
    from ..scaling import observational as obs

    if Path(target_source).name.startswith("instruct_") and d.folder is not None:
        raw = _read_csv(d.folder / INSTRUCT_FILE)
        frame = obs.standardize_frame(raw, mapping=obs.INSTRUCT_COLUMN_MAPPING,
                                      source=str(d.folder / INSTRUCT_FILE))
        space = _fit_pca(d, k)
        return frame, space, d.frame
    if split == "preregistered":
        import pandas as pd

        frame = pd.concat([d.frame, obs.select_preregistered(d.full)], ignore_index=True)
        return frame.drop_duplicates("model").reset_index(drop=True), None, None
    return d.frame, None, None


def _cmd_predict(args) -> int:
    from ..scaling import observational as obs

    d = _load(args)
    y, chance, tsource = _target(d, args.target)
    split = args.split or ("closed" if Path(tsource).name.startswith("instruct_") else "flops")
    frame, space, ref_frame = _predict_setup(d, tsource, split.partition(":")[0], args.components)
    tr, te, split_name = _split(split, frame, y, d)
    if args.method == "all":
        methods = obs.METHODS
    else:  # the PC model always runs: its predictions are the point of the command
        methods = ("pc",) if args.method == "pc" else ("pc", args.method)
    try:
        res = obs.backtest_target(frame, y, tr, te, split=split_name, chance=chance,
                                  methods=methods, n_components=args.components,
                                  benchmarks=None if space is not None else d.benchmarks,
                                  reference_family=d.reference_family, n_bootstrap=args.bootstrap,
                                  level=args.level, seed=args.seed, capability_space=space,
                                  reference_frame=ref_frame)
    except obs.ObsDataError as e:
        raise CliError(str(e)) from e
    if args.json:
        _print_json({"data": d.source, "target_file": tsource, **res.summary()})
        return 0
    p = res.predictions
    if not args.all_rows:
        p = p[p["role"] == "test"]
    cols = ["model", "role", "y", "pred_pc", "pc_obs_lower", "pc_obs_upper", "pc_extrapolated",
            "equivalent_log10_flops"] + [f"pred_{m}" for m in methods if m != "pc"]
    cols = [c for c in cols if c in p.columns]
    emit_records(frame_records(p[cols]), columns=cols, float_fmt="{:.3f}")
    print(res.report())
    return 0


def _suite_targets(d: _Data, suite: str):
    """[(suite name, target file, {column: (values, chance)}, split spec)] for ``obs backtest``."""
    import pandas as pd

    from ..scaling import observational as obs

    out = []
    names = parse_list(suite)
    if d.kind == "sloth":
        targets = {}
        for c in SLOTH_V2_TARGETS:
            values = pd.Series(d.raw[c].to_numpy(), index=d.raw["Model"].astype(str), name=c)
            targets[c] = obs.normalize_target(values, c)
        return [("leaderboard-v2", d.source, targets, "flops")]
    if d.folder is None:
        raise CliError("obs backtest needs --data DIR (the ObsScaling folder) or Sloth's data_v2.csv")
    files = {"emergent": EMERGENT_FILE, "v2": V2_FILE, "agent": AGENT_FILE,
             "preregistered": EMERGENT_FILE}
    for name in names:
        if name not in files:
            raise CliError(f"--suite {name!r}: choose from {sorted(files)}")
        raw = _read_csv(d.folder / files[name])
        cols = [c for c in raw.columns if c != "Model"]
        if name == "agent":
            cols = [c for c in AGENT_TARGETS if c in raw.columns]
        targets = {}
        for c in cols:
            values = pd.Series(raw[c].to_numpy(), index=raw["Model"].astype(str), name=c)
            targets[c] = obs.normalize_target(values, c)
        split = {"agent": "closed", "preregistered": "preregistered"}.get(name, "flops")
        out.append((name, str(d.folder / files[name]), targets, split))
    return out


def _cmd_backtest(args) -> int:
    from ..scaling import observational as obs

    d = _load(args)
    rows, summaries = [], []
    for name, tsource, targets, split in _suite_targets(d, args.suite):
        if args.split and split not in ("closed", "preregistered"):
            split = args.split
        elif split == "flops" and args.cutoff is not None:
            split = f"flops:{args.cutoff}"
        frame, space, ref_frame = _predict_setup(d, tsource, split.partition(":")[0], args.components)
        kw = dict(n_components=args.components,
                  benchmarks=None if space is not None else d.benchmarks,
                  reference_family=d.reference_family, n_bootstrap=args.bootstrap,
                  level=args.level, seed=args.seed, capability_space=space,
                  reference_frame=ref_frame)
        try:
            if split.partition(":")[0] == "rank":  # the top fraction differs per target
                results = []
                for col, (y, chance) in targets.items():
                    tr, te, split_name = _split(split, frame, y, d)
                    results.append(obs.backtest_target(frame, y.rename(col), tr, te,
                                                       split=split_name, chance=chance, **kw))
                table = obs.BacktestTable(results=tuple(results))
            else:
                any_y = next(iter(targets.values()))[0]
                tr, te, split_name = _split(split, frame, any_y, d)
                table = obs.backtest_targets(frame, targets, tr, te, split=split_name, **kw)
        except obs.ObsDataError as e:
            raise CliError(str(e)) from e
        f = table.to_frame()
        f.insert(0, "suite", name)
        rows.extend(frame_records(f))
        summaries.append({"suite": name, "target_file": tsource, **table.summary()})
    if args.json:
        _print_json({"data": d.source, "suites": summaries})
        return 0
    cols = ["suite", "target", "split", "n_train", "n_common", "mse_pc", "mse_log_flops",
            "mse_log_params", "pc_beats_log_flops", "n_test", "pc_mse_all"]
    if any("coverage_obs" in r for r in rows):
        cols += ["coverage_obs"]
    emit_records(rows, columns=cols)
    known = [r["pc_beats_log_flops"] for r in rows if r.get("pc_beats_log_flops") is not None]
    print(f"PC model beats log-FLOPs on {sum(known)} of {len(known)} comparable targets "
          f"(MSE over test models both can predict)")
    return 0


def _cmd_select(args) -> int:
    from ..scaling import observational as obs

    d = _load(args)
    pca = _fit_pca(d, args.components, getattr(args, 'preset', 'ours'))
    scores = pca.transform(d.frame)
    try:
        sel = obs.select_families(scores, d.frame, budget=args.budget,
                                  target_quantile=args.target_quantile,
                                  max_combinations=args.max_combinations)
    except obs.ObsDataError as e:
        raise CliError(str(e)) from e
    if args.json:
        _print_json({"data": d.source, **sel.summary()})
        return 0
    emit_records(frame_records(sel.to_frame().head(args.top)), float_fmt="{:.4g}")
    print(sel.report().splitlines()[0])
    return 0


def _cmd_place(args) -> int:
    from ..scaling import observational as obs
    from ..store import ResultStore

    d = _load(args)
    pca = _fit_pca(d, args.components, getattr(args, 'preset', 'ours'))
    rows = ResultStore(args.results).to_frame()
    ours = obs.capability_frame_from_results(rows)
    if ours.empty:
        raise CliError(f"{args.results}: no primary-metric rows for the capability benchmarks "
                       f"({', '.join(obs.DEFAULT_TASK_BENCHMARKS)}); run those tasks first")
    placed = obs.place_models(pca, ours, d.frame, reference_family=d.reference_family)
    if args.target:
        # fit the PC model on every public model with a target score, then predict ours
        y, chance, _ = _target(d, args.target)
        train = [m for m in d.frame["model"] if m in set(y.dropna().index)]
        est = obs.ObservationalPredictor(
            method="pc", n_components=args.components, benchmarks=d.benchmarks,
            reference_family=d.reference_family,
            regression=obs.SigmoidRegression(chance=chance, n_bootstrap=args.bootstrap,
                                             seed=args.seed))
        try:
            fitted = est.fit(d.frame, y, train, target_name=str(y.name))
        except obs.ObsDataError as e:
            raise CliError(str(e)) from e
        pred = fitted.predict(ours, level=args.level)
        keep = ["model", "mean", "lower", "upper", "obs_lower", "obs_upper", "extrapolated",
                "equivalent_log10_flops"]
        pred = pred[[c for c in keep if c in pred.columns]].rename(columns={
            "mean": f"pred_{y.name}", "extrapolated": "pred_extrapolated"})
        placed = placed.merge(pred, on="model", how="left")
    if args.plot:
        _plot_capability_map(pca, d, placed, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    emit_records(frame_records(placed), as_json=args.json, float_fmt="{:.4g}")
    return 0


def _plot_capability_map(pca, d: _Data, placed, path: str) -> None:
    """PC1 against log10 FLOPs: public families (points and their fitted lines) and our
    checkpoints (stars), the leaderboard view of issue 7."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..scaling import observational as obs

    scores = pca.transform(d.frame).merge(d.frame[["model", "family", "compute_flops"]], on="model")
    scores = scores[scores["compute_flops"] > 0]
    eff = obs.FamilyEfficiency(min_models=2).fit(scores[["model", "PC1"]], d.frame)
    fig, ax = plt.subplots(figsize=(9, 6))
    cmap = plt.get_cmap("tab20")
    for i, (fam, g) in enumerate(scores.groupby("family")):
        color = cmap(i % 20)
        x = np.log10(g["compute_flops"].to_numpy(float))
        ax.scatter(x, g["PC1"], s=18, color=color, label=fam)
        if fam in eff.families():
            ln = eff.line(fam, "PC1")
            xs = np.array([ln.log10_flops_min, ln.log10_flops_max])
            ax.plot(xs, ln.slope * xs + ln.intercept, color=color, lw=1)
    ours = placed.dropna(subset=["PC1"])
    if len(ours):
        x = ours["log10_flops"].to_numpy(float)
        ax.scatter(x, ours["PC1"], marker="*", s=160, color="black", label="ours", zorder=5)
        for xi, yi, name in zip(x, ours["PC1"], ours["model"]):
            if np.isfinite(xi):
                ax.annotate(name, (xi, yi), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("log10 training FLOPs (6·N·D)")
    ax.set_ylabel("PC1 (general capability)")
    ax.set_title("Capability space (Ruan et al. 2024): public families and our checkpoints")
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- parser -------------------------------------------------------------------------------

def _common(p, *, components: bool = True) -> None:
    p.add_argument("--data", default=_default_data(), metavar="DIR|FILE",
                   help="ObsScaling eval_results folder or a capability CSV (Sloth data_v2.csv "
                        "is recognised); default $EVALSUITE_OBS_DATA or ../shared/data/obsscaling")
    p.add_argument("--sample", choices=["paper", "all", "preregistered", "base"], default=None,
                   help="models to fit on: the paper's 77 (default for ObsScaling), all rows "
                        "(default for other tables), the 20 pre-registered, or base (non-instruct)")
    p.add_argument("--benchmarks", default=None, metavar="A,B,...",
                   help="capability columns (default: the paper's 8; Sloth: the 6 of leaderboard v1)")
    p.add_argument("--reference", default=None, metavar="FAMILY",
                   help="reference family for equivalent compute (default Llama-2)")
    if components:
        p.add_argument("--components", type=int, default=3, metavar="K",
                       help="principal components (default 3)")
    p.add_argument("--preset", choices=["ours", "paper"], default="ours",
                   help="capability space: ours (regularised rank-K imputation, loadings summing "
                        ">= 0) or paper (the authors' code: rank-1 imputation on standardised "
                        "scores, 1000 iterations, clipped to [0, 1]; sklearn's sign). The "
                        "per-experiment choices of the paper are not in the preset yet "
                        "(docs/observational.md)")
    add_json_arg(p)


def register(subparsers) -> None:
    obs = subparsers.add_parser(
        "obs", help="observational scaling laws (capability PCA, family efficiency, predictions)",
        description="Observational scaling laws (Ruan, Maddison & Hashimoto, NeurIPS 2024).")
    sub = obs.add_subparsers(dest="obs_command", metavar="SUBCOMMAND")

    p = sub.add_parser("pca", help="explained variance and loadings of the capability space")
    _common(p)
    p.add_argument("--scores", action="store_true", help="print per-model PC scores instead")
    p.set_defaults(func=_cmd_pca)

    for name in ("families", "efficiency"):
        p = sub.add_parser(name, help="per-family slope of each PC against log10 FLOPs")
        _common(p)
        p.add_argument("--component", default=None, metavar="PC1,...", help="components to show")
        p.add_argument("--min-models", type=int, default=2, help="skip smaller families (default 2)")
        p.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
        p.set_defaults(func=_cmd_families)

    p = sub.add_parser("predict", help="fit a target from the PCs (and baselines) and predict held-out models")
    _common(p)
    p.add_argument("--target", required=True, metavar="FILE:COLUMN",
                   help="target column; FILE relative to --data DIR, or COLUMN of the --data table")
    p.add_argument("--split", default=None,
                   help="flops[:CUTOFF] (default, cutoff 8.4e22), rank[:FRACTION], closed, preregistered")
    p.add_argument("--method", choices=["pc", "log_flops", "log_params", "all"], default="all",
                   help="predictor: capability PCs (the paper's), log FLOPs or log params "
                        "baselines, or all (default)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits (default 200)")
    p.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap refits (default 0)")
    p.add_argument("--all-rows", action="store_true", help="show training models too")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("backtest", help="test MSE of the PC model vs log-FLOPs and log-size baselines")
    _common(p)
    p.add_argument("--suite", default="emergent,v2,agent",
                   help="comma list of emergent, v2, agent, preregistered (ObsScaling folder); "
                        "a Sloth table always runs its leaderboard-v2 columns")
    p.add_argument("--cutoff", type=float, default=None, help="FLOPs cutoff (default 8.4e22)")
    p.add_argument("--split", default=None, metavar="SPEC",
                   help="override the split of the emergent/v2/Sloth suites: flops[:CUTOFF] or "
                        "rank[:FRACTION] (agent stays 'closed', preregistered stays itself)")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits for coverage (default 0)")
    p.add_argument("--level", type=float, default=0.9,
                   help="level of every printed interval (default 0.9: a 90%% interval)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap refits (default 0)")
    p.set_defaults(func=_cmd_backtest)

    p = sub.add_parser("select", help="which families to evaluate under a budget (V-optimality)")
    _common(p)
    p.add_argument("--budget", type=int, required=True, metavar="N", help="most models to evaluate")
    p.add_argument("--target-quantile", type=float, default=0.9,
                   help="predict for models above this PC1 quantile (default 0.9)")
    p.add_argument("--max-combinations", type=int, default=200_000,
                   help="most family subsets to score (default 200000)")
    p.add_argument("--top", type=int, default=10, help="rows to show")
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser("place", help="place our own checkpoints (results store) in the space")
    _common(p)
    add_results_arg(p)
    p.add_argument("--target", default=None, metavar="FILE:COLUMN",
                   help="also predict this target for our checkpoints (PC model fitted on every "
                        "public model with the target)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits (default 200)")
    p.add_argument("--level", type=float, default=0.9,
                   help="level of every printed interval (default 0.9: a 90%% interval)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap refits (default 0)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="write PC1 vs log10 FLOPs with the public families and our checkpoints")
    p.set_defaults(func=_cmd_place)

    obs.set_defaults(func=lambda args: (obs.print_help(), 2)[1])
