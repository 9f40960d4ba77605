"""Forecast a training run's final score from the checkpoints seen so far (docs/watch.md).

For one curve (a series, size, task, metric and shot count across training steps), the score is
fitted against training steps with the saturating power law of :mod:`evalsuite.scaling.laws`
(``y = E - A (step / step_0)^-alpha`` for a score that rises; the same fit, bootstrap and
prediction interval as ``evalsuite fit``), on the checkpoints past the first
:data:`WARMUP_FRACTION` of the planned steps (before that a curve sits at chance and then turns,
which no power law follows). Steps are the axis, so a run that logs no token counts forecasts the
same way (tokens per step are taken as constant).

Two naive forecasts are computed beside it (:func:`forecast_backtest` compares all three): the
latest score, and a straight line in log steps through the checkpoints of the last decade of
steps seen. Measured on the Pythia evals (docs/watch.md): the latest score under-predicts and the
line over-predicts; the power law sits between them. The interval is the power law's bootstrap
prediction interval widened, where needed, to hold both naive forecasts: the bootstrap alone
assumes the form is right and covered 80% of Pythia's final scores at the 10% cut-off (4
checkpoints); with the naive forecasts as bounds of what the curve can do, 90% (and 93% / 89% at
25% / 50%, at about the same width as the bootstrap's there).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["Forecast", "forecast_final", "forecast_curves", "forecast_backtest",
           "summarize_forecast_backtest", "WARMUP_FRACTION", "MIN_POINTS", "FORECAST_LEVEL",
           "CUTOFFS"]

#: Checkpoints before this fraction of the planned final step are left out of the fit.
WARMUP_FRACTION = 1 / 300
#: Fewest distinct steps (after the warm-up) a forecast needs: the power law has 3 parameters.
MIN_POINTS = 4
FORECAST_LEVEL = 0.9
#: Back-test cut-offs: fractions of the final step seen.
CUTOFFS = (0.1, 0.25, 0.5)
#: Bootstrap replicates of a forecast's interval.
FORECAST_BOOT = 100
_CURVE = ["series", "size", "precision", "task", "metric", "num_fewshot"]


@dataclass(frozen=True)
class Forecast:
    """A forecast of one curve's score at ``final_step`` from checkpoints up to ``last_step``."""

    final_step: int
    last_step: int
    latest: float
    mean: float | None = None
    lower: float | None = None
    upper: float | None = None
    level: float = FORECAST_LEVEL
    decades: float = 0.0  # extrapolation distance, log10(final_step / last_step)
    n_points: int = 0
    note: str = ""  # why there is no forecast, or what to keep in mind

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.mean is None:
            return f"no forecast ({self.note})"
        return (f"step {self.final_step}: {self.mean:.3f} [{self.lower:.3f}, {self.upper:.3f}] "
                f"(+{self.decades:.2f} decades)")


def _one_curve(curve: pd.DataFrame) -> pd.DataFrame:
    """The curve's checkpoints past step 0 with a finite score, one per step, in step order
    (a NaN score, which the leaderboard leaves out too, is no evidence about the curve)."""
    values = pd.to_numeric(curve["value"], errors="coerce")
    c = curve[pd.to_numeric(curve["step"], errors="coerce").notna()
              & np.isfinite(values.astype(float))].copy()
    c["step"] = c["step"].astype(int)
    c = c[c["step"] > 0].sort_values("step")
    return c.drop_duplicates("step", keep="last")


def forecast_final(curve: pd.DataFrame, final_step: int, *, level: float = FORECAST_LEVEL,
                   n_boot: int = FORECAST_BOOT, seed: int = 0) -> Forecast:
    """The score at ``final_step`` forecast from ``curve`` (rows of one curve across steps)."""
    from .fit import FitError, fit_scaling_law

    final_step = int(final_step)
    c = _one_curve(curve)
    if not len(c):
        raise ValueError("forecast_final needs rows with a step above 0 and a finite score")
    last = c.iloc[-1]
    base = dict(final_step=final_step, last_step=int(last["step"]), latest=float(last["value"]),
                level=level)
    if final_step == int(last["step"]):
        return Forecast(**base, mean=float(last["value"]), note="the final step is reached")
    if final_step < int(last["step"]):
        return Forecast(**base, note=f"the planned final step {final_step} is before the last "
                                     f"checkpoint seen ({int(last['step'])}): check --final-step")
    decades = math.log10(final_step / int(last["step"]))
    pts = c[c["step"] >= final_step * WARMUP_FRACTION].copy()
    if len(pts) < MIN_POINTS:
        return Forecast(**base, decades=decades, n_points=len(pts),
                        note=f"needs {MIN_POINTS} checkpoints past step "
                             f"{math.ceil(final_step * WARMUP_FRACTION)}; has {len(pts)}")
    pts["tokens_seen"] = pts["step"].astype(float)  # the fit's axis: steps
    try:
        fit = fit_scaling_law(pts, x="tokens_seen", form="power", n_boot=n_boot, seed=seed,
                              compare_forms=False, interval="form")
        p = fit.predict(float(final_step), level=level)
    except (FitError, ValueError) as e:
        return Forecast(**base, decades=decades, n_points=len(pts), note=f"fit failed: {e}")
    # The interval also holds both naive forecasts: the latest score (the curve stops) and the
    # log-steps line (it keeps its recent slope) bracket most final scores (module docstring).
    latest, line = _naive(c, final_step)
    lo, hi = min(float(p.lower), latest, line), max(float(p.upper), latest, line)
    if fit.bounded:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return Forecast(**base, mean=float(p.mean), lower=lo, upper=hi, decades=decades,
                    n_points=len(pts))


def _naive(c: pd.DataFrame, final_step: int) -> tuple[float, float]:
    """(latest score, a line in log10 steps over the last decade of steps seen)."""
    last = c.iloc[-1]
    d = c[c["step"] >= int(last["step"]) / 10]
    latest = float(last["value"])
    if d["step"].nunique() < 2:
        return latest, latest
    b, a = np.polyfit(np.log10(d["step"].to_numpy(float)), d["value"].to_numpy(float), 1)
    return latest, float(a + b * math.log10(final_step))


def forecast_curves(frame: pd.DataFrame, final_steps: dict[tuple[str, str], int], *,
                    level: float = FORECAST_LEVEL, n_boot: int = FORECAST_BOOT,
                    seed: int = 0) -> pd.DataFrame:
    """A forecast per curve of the primary rows in ``frame`` whose (series, size) has a planned
    final step in ``final_steps``; one row per curve, sorted."""
    f = frame[frame["is_primary"].astype(bool)] if "is_primary" in frame.columns else frame
    out = []
    for key, g in f.groupby(_CURVE, dropna=False, sort=True):
        fs = final_steps.get((key[0], key[1]))
        if fs is None or not len(_one_curve(g)):
            continue
        fc = forecast_final(g, fs, level=level, n_boot=n_boot, seed=seed)
        out.append(dict(zip(_CURVE, key)) | fc.to_dict())
    return pd.DataFrame(out)


def forecast_backtest(frame: pd.DataFrame, *, series: Sequence[str], tasks: Sequence[str] | None = None,
                      final_step: int | None = None, cutoffs: Sequence[float] = CUTOFFS,
                      level: float = FORECAST_LEVEL, n_boot: int = FORECAST_BOOT,
                      seed: int = 0) -> pd.DataFrame:
    """Forecast each curve's final score from the checkpoints up to each cut-off.

    ``final_step`` (default: each curve's last step) is the target; a cut-off of 0.25 keeps the
    checkpoints with step at most 0.25 x final. One row per curve and cut-off with the actual
    final score, the forecast and its interval, and the two naive forecasts.
    """
    f = frame[frame["series"].isin(list(series))]
    if tasks is not None:
        f = f[f["task"].isin(list(tasks))]
    f = f[f["is_primary"].astype(bool)] if "is_primary" in f.columns else f
    out = []
    for key, g in f.groupby(_CURVE, dropna=False, sort=True):
        c = _one_curve(g)
        if not len(c):
            continue
        target = int(final_step or c["step"].max())
        if target not in set(c["step"]):
            continue
        actual = float(c[c["step"] == target]["value"].iloc[0])
        for cut in cutoffs:
            seen = c[c["step"] <= cut * target]
            if not len(seen):
                continue
            fc = forecast_final(seen, target, level=level, n_boot=n_boot, seed=seed)
            latest, line = _naive(seen, target)
            out.append(dict(zip(_CURVE, key)) | {
                "cutoff": cut, "last_step": fc.last_step, "final_step": target, "actual": actual,
                "forecast": fc.mean, "lower": fc.lower, "upper": fc.upper, "latest": latest,
                "log_line": line, "decades": fc.decades, "note": fc.note})
    return pd.DataFrame(out)


def summarize_forecast_backtest(result: pd.DataFrame) -> pd.DataFrame:
    """Per cut-off: curves forecast, MAE of the forecast and of both naive forecasts, the
    forecast's interval coverage and median width."""
    r = result[result["forecast"].notna()]
    rows = []
    for cut, g in r.groupby("cutoff", sort=True):
        cover = (g["lower"] <= g["actual"]) & (g["actual"] <= g["upper"])
        rows.append({"cutoff": cut, "curves": len(g), "skipped": int(
            (result["cutoff"] == cut).sum() - len(g)),
            "mae_forecast": float((g["forecast"] - g["actual"]).abs().mean()),
            "mae_latest": float((g["latest"] - g["actual"]).abs().mean()),
            "mae_log_line": float((g["log_line"] - g["actual"]).abs().mean()),
            "bias_forecast": float((g["forecast"] - g["actual"]).mean()),
            "coverage": float(cover.mean()),
            "actual_below": int((g["actual"] < g["lower"]).sum()),
            "actual_above": int((g["actual"] > g["upper"]).sum()),
            "median_width": float((g["upper"] - g["lower"]).median())})
    return pd.DataFrame(rows)
