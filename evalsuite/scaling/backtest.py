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

__all__ = ["CORE_TASKS", "task_group", "backtest", "summarize_backtest"]

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
             samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per task and held-out size: actual, prediction, interval, baselines B1 and B2.

    ``holdout``: the number of largest sizes to hold out, or their size labels (then the fit
    uses only sizes smaller than the smallest held-out one). Only final checkpoints are used.
    ``metric``: None for each task's primary metric. ``samples``: optional per-sample results
    (``checkpoint_id``, ``task``, ``value``) for the bootstrap over items.
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
        try:
            fit = law.fit(fit_rows, samples)
        except FitError:
            continue
        x_new = test_rows[law.x].to_numpy(float)
        pred = fit.predict(x_new, level=level)
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
                "form": fit.form, "n_fit": fit.n_points})
    return pd.DataFrame(out)


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
