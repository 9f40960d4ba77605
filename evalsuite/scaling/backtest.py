"""Back-test: hold out the largest sizes of a series, fit on the rest, score the predictions.

For every task, the scaling law is fitted on the final checkpoints of the smaller sizes and
predicts the held-out sizes; the error and the coverage of the prediction interval are compared
with two naive baselines:

* B1: the largest fitted model's score (no scaling at all);
* B2: a straight line in log10(params) through the three largest fitted sizes (least squares).

Tasks are grouped (``core``, ``mmlu``, ``other``) and every figure is reported per group, never
only pooled: near-chance MMLU subjects and saturating core tasks behave differently.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .fit import FitError, ScalingLaw, select_points

__all__ = ["CORE_TASKS", "task_group", "backtest", "summarize_backtest", "calibration_table",
           "CALIBRATION_LEVELS"]

#: nominal levels of the calibration report
CALIBRATION_LEVELS = (0.5, 0.8, 0.9, 0.95)

CORE_TASKS = ("lambada_openai", "piqa", "winogrande", "arc_easy", "arc_challenge", "sciq")


def task_group(task: str) -> str:
    """``core`` (the six Pythia-paper tasks), ``mmlu`` (its subjects), else ``other``."""
    if task in CORE_TASKS:
        return "core"
    if task.startswith(("hendrycksTest-", "mmlu_", "mmlu")):
        return "mmlu"
    return "other"


def _baseline_line(x_fit: np.ndarray, y_fit: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    order = np.argsort(x_fit)
    xs, ys = np.log10(x_fit[order][-3:]), y_fit[order][-3:]
    if len(np.unique(xs)) < 2:
        return np.full(len(x_new), ys[-1])
    coef = np.polyfit(xs, ys, 1)
    return np.polyval(coef, np.log10(x_new))


def backtest(frame: pd.DataFrame, *, series: str, holdout: int | Sequence[str] = 2,
             tasks: Iterable[str] | None = None, exclude_sizes: Sequence[str] = (),
             num_fewshot: int | None = 0, metric: str | None = None, level: float = 0.9,
             law: ScalingLaw | None = None, groups: Sequence[str] = ("core", "mmlu", "other"),
             samples: pd.DataFrame | None = None,
             levels: Sequence[float] = CALIBRATION_LEVELS) -> pd.DataFrame:
    """Per task and held-out size: actual, prediction, interval, baselines B1 and B2.

    ``holdout``: the number of largest sizes to hold out, or their size labels (then the fit
    uses only sizes smaller than the smallest held-out one). Only final checkpoints are used.
    ``metric``: None for each task's primary metric. ``samples``: optional per-sample results
    (``checkpoint_id``, ``task``, ``value``) for the bootstrap over items. ``levels``: the
    intervals also given as ``lower_<pct>`` / ``upper_<pct>`` columns (calibration report);
    ``pit`` is each actual score's predictive probability (uniform when calibrated).
    """
    law = law or ScalingLaw(x="n_params")
    f = select_points(frame, series=series, metric=metric, step="final", num_fewshot=num_fewshot)
    f = f[~f["size"].isin(list(exclude_sizes))]
    if tasks is not None:
        f = f[f["task"].isin(list(tasks))]
    if f.empty:
        raise FitError(f"no final-checkpoint rows for series {series!r} (num_fewshot="
                       f"{num_fewshot}); import or run it first, or check the series name")
    sizes = (f[["size", "n_params"]].drop_duplicates().sort_values("n_params"))
    if isinstance(holdout, int):
        if holdout < 1 or holdout >= len(sizes):
            raise FitError(f"holdout={holdout}: the series has {len(sizes)} sizes; hold out "
                           f"between 1 and {len(sizes) - 1}")
        held = list(sizes["size"].iloc[-holdout:])
    else:
        held = list(holdout)
        missing = set(held) - set(sizes["size"])
        if missing:
            raise FitError(f"held-out sizes {sorted(missing)} are not in series {series!r} "
                           f"(sizes: {list(sizes['size'])})")
    cut = float(sizes[sizes["size"].isin(held)]["n_params"].min())
    out: list[dict[str, Any]] = []
    for task, g in f.groupby("task"):
        group = task_group(str(task))
        if group not in groups:
            continue
        fit_rows = g[g["n_params"].astype(float) < cut]
        test_rows = g[g["size"].isin(held)].sort_values("n_params")
        if test_rows.empty or fit_rows["n_params"].nunique() < 4:
            continue
        excluded = {z: "excluded by the caller" for z in exclude_sizes}
        excluded.update({z: "held out" for z in held})
        try:
            fit = law.fit(fit_rows, samples, excluded=excluded)
        except FitError:
            continue
        x_new = test_rows[law.x].to_numpy(float)
        pred = fit.predict(x_new, level=level, seed=law.seed)
        extra = {lv: fit.predict(x_new, level=lv, seed=law.seed) for lv in levels}
        pit = fit.pit(x_new, test_rows["value"].to_numpy(float), seed=law.seed)
        x_fit = fit_rows["n_params"].to_numpy(float)
        y_fit = fit_rows["value"].to_numpy(float)
        b1 = float(y_fit[np.argmax(x_fit)])
        b2 = _baseline_line(x_fit, y_fit, test_rows["n_params"].to_numpy(float))
        for i, (_, row) in enumerate(test_rows.iterrows()):
            actual = float(row["value"])
            out.append({
                "series": series, "split": f"fit<{_label(cut)}", "task": task, "group": group,
                "size": row["size"], "n_params": int(row["n_params"]), "actual": actual,
                "predicted": float(pred.mean[i]), "lower": float(pred.lower[i]),
                "upper": float(pred.upper[i]),
                "covered": bool(pred.lower[i] <= actual <= pred.upper[i]),
                "width": float(pred.upper[i] - pred.lower[i]),
                "distance_decades": float(pred.distance[i]),
                "b1": b1, "b2": float(b2[i]),
                "abs_error": abs(float(pred.mean[i]) - actual),
                "abs_error_b1": abs(b1 - actual), "abs_error_b2": abs(float(b2[i]) - actual),
                "form": fit.form, "n_fit": fit.n_points, "pit": float(pit[i]),
                "alt_weight": fit.alt_weight, "fit_flag": fit.fit_flag,
                **{f"lower_{_pct(lv)}": float(p.lower[i]) for lv, p in extra.items()},
                **{f"upper_{_pct(lv)}": float(p.upper[i]) for lv, p in extra.items()}})
    return pd.DataFrame(out)


def _pct(level: float) -> str:
    return f"{100 * level:g}"


def calibration_table(result: pd.DataFrame, levels: Sequence[float] = CALIBRATION_LEVELS,
                      by: Sequence[str] = ("series", "split", "group")) -> pd.DataFrame:
    """Coverage at each level with the share of misses below and above the interval, per
    ``by`` group, then per task group pooled over every series and split (``series`` = "all").

    A calibrated interval covers its level, and its misses fall on both sides alike: misses all
    above mean the law under-predicts (the score keeps rising where the fit flattens).
    """
    if result.empty:
        return pd.DataFrame()

    def row(g):
        out = {"n": len(g), "mae": float(g["abs_error"].mean())}
        for lv in levels:
            lo, hi = g[f"lower_{_pct(lv)}"], g[f"upper_{_pct(lv)}"]
            below = int((g["actual"] < lo).sum())
            above = int((g["actual"] > hi).sum())
            out[f"cover_{_pct(lv)}"] = round(1 - (below + above) / len(g), 3)
            out[f"miss_{_pct(lv)}_below_above"] = f"{below}/{above}"
        pit = g["pit"].to_numpy(float)
        out["pit_deciles"] = " ".join(str(int(c)) for c in
                                      np.histogram(pit, bins=10, range=(0, 1))[0])
        return out

    rows = []
    for key, g in result.groupby(list(by), sort=False):
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), **row(g)})
    for grp, g in result.groupby("group", sort=False):
        rows.append({**{b: "all" for b in by if b != "group"}, "group": grp, **row(g)})
    return pd.DataFrame(rows)


def _label(n: float) -> str:
    return f"{n / 1e9:.2g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def summarize_backtest(result: pd.DataFrame) -> pd.DataFrame:
    """Per series x split x group: MAE of the law and of B1, B2; interval coverage and width."""
    if result.empty:
        return pd.DataFrame(columns=["series", "split", "group", "n", "mae", "mae_b1", "mae_b2",
                                     "coverage", "mean_width", "beats_b1", "beats_b2"])
    g = result.groupby(["series", "split", "group"], sort=False)
    s = g.agg(n=("abs_error", "size"), mae=("abs_error", "mean"),
              mae_b1=("abs_error_b1", "mean"), mae_b2=("abs_error_b2", "mean"),
              coverage=("covered", "mean"), mean_width=("width", "mean")).reset_index()
    s["beats_b1"] = s["mae"] < s["mae_b1"]
    s["beats_b2"] = s["mae"] < s["mae_b2"]
    return s
