"""Predicted scores for sizes a series has not released (or that we hold out).

Per task: fit the scaling law (``fit.ScalingLaw``, saturating power law by default) to the final
checkpoints of a series, then predict each requested size with a 90% prediction interval, marked
as an extrapolation with its distance beyond the fitted range (in decades of the x axis).

With ``from_steps=True`` the intermediate checkpoints of the fitted sizes are used too, through a
two-variable law in parameters N and tokens D, the additive form of Hoffmann et al. 2022
("Training Compute-Optimal Large Language Models", eq. 2) applied to the error of a score:
y(N, D) = E - A (N/N_ref)^(-alpha) - B (D/D_ref)^(-beta); the prediction is at the new N and the
series' final token count. Steps before ``min_tokens`` are dropped (warm-up, chance level).

Sizes are given as labels. A label's parameter count comes from, in order: the rows (if the size
exists there), the ``params`` argument, or the number in the label (``6.9b`` -> 6.9e9; a nominal
count, flagged in the output as ``n_params_source = "label"``).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ..stats import bootstrap_refits, observation_interval
from .fit import FitError, Prediction, ScalingLaw, select_points

__all__ = ["predict_sizes", "resolve_size", "SizeTokenLaw", "SizeTokenFit"]


def resolve_size(label: str, frame: pd.DataFrame | None = None,
                 params: Mapping[str, float] | None = None) -> tuple[float, str]:
    """Parameter count of a size label and where it came from (``rows``, ``given``, ``label``)."""
    if frame is not None and "size" in frame.columns:
        hit = frame[frame["size"] == label]["n_params"].dropna()
        if len(hit):
            return float(hit.iloc[0]), "rows"
    if params and label in params:
        return float(params[label]), "given"
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmbt])", label.strip().lower())
    if m:
        scale = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]
        return float(m.group(1)) * scale, "label"
    try:
        return float(label), "given"
    except ValueError:
        raise FitError(f"size {label!r}: cannot tell its parameter count; write it like '6.9b' "
                       "or '410m', or pass params={label: count}") from None


@dataclass(frozen=True)
class SizeTokenFit:
    """y(N, D) = E - A (N/N_ref)^-alpha - B (D/D_ref)^-beta, fitted over sizes and steps."""

    params: Mapping[str, float]
    n_ref: float
    d_ref: float
    n_range: tuple[float, float]
    n_points: int
    noise_sd: float
    n_items: int | None
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 5)), repr=False,
                                    compare=False)

    @staticmethod
    def _f(theta, n, d, n_ref, d_ref):
        E, A, alpha, B, beta = theta
        return E - A * (n / n_ref) ** (-alpha) - B * (d / d_ref) ** (-beta)

    def predict(self, n_params, tokens_seen, level: float = 0.9, seed: int = 0) -> Prediction:
        n = np.atleast_1d(np.asarray(n_params, float))
        d = np.broadcast_to(np.asarray(tokens_seen, float), n.shape)
        theta = [self.params[k] for k in ("E", "A", "alpha", "B", "beta")]
        mean = np.clip(self._f(theta, n, d, self.n_ref, self.d_ref), 0, 1)
        boots = self.boot_params if self.boot_params.size else np.array([theta])
        curves = np.stack([self._f(t, n, d, self.n_ref, self.d_ref) for t in boots])
        rng = np.random.default_rng(seed)
        lo, hi = observation_interval(curves, mean, level, rng, n_items=self.n_items,
                                      noise_sd=self.noise_sd, bounded=True)
        un = np.log10(n)
        dist = (np.maximum(un - math.log10(self.n_range[1]), 0)
                + np.maximum(math.log10(self.n_range[0]) - un, 0))
        return Prediction(n, mean, lo, hi, dist > 1e-9, dist, level)

    def summary(self) -> dict[str, Any]:
        return {"form": "size_token", "params": dict(self.params), "n_ref": self.n_ref,
                "d_ref": self.d_ref, "n_range": list(self.n_range), "n_points": self.n_points}


class SizeTokenLaw:
    """Settings of the two-variable (params x tokens) fit; ``fit(frame)`` -> ``SizeTokenFit``."""

    def __init__(self, *, n_boot: int = 100, min_stderr: float = 0.005, seed: int = 0):
        self.n_boot = n_boot
        self.min_stderr = min_stderr
        self.seed = seed

    def fit(self, frame: pd.DataFrame) -> SizeTokenFit:
        for col in ("n_params", "tokens_seen", "value"):
            if col not in frame.columns or frame[col].isna().any():
                raise FitError(f"the size x tokens law needs {col!r} on every row; drop rows "
                               f"without it (frame.dropna(subset=[{col!r}]))")
        n = frame["n_params"].to_numpy(float)
        d = frame["tokens_seen"].to_numpy(float)
        y = frame["value"].to_numpy(float)
        if len(np.unique(n)) < 3 or len(np.unique(d)) < 3:
            raise FitError("the size x tokens law needs at least 3 sizes and 3 token counts")
        se = pd.to_numeric(frame.get("stderr"), errors="coerce").to_numpy(float)
        w = 1 / np.where(np.isfinite(se), np.maximum(se, self.min_stderr), self.min_stderr)
        n_ref, d_ref = float(n.min()), float(d.min())
        hi_y = float(y.max())
        lo = [hi_y, 0, 1e-3, 0, 1e-3]
        hi = [1.0, 10, 3, 10, 3]

        def solve(nn, dd, yy, ww, starts):
            best = None
            for p0 in starts:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = least_squares(lambda t: (SizeTokenFit._f(t, nn, dd, n_ref, d_ref) - yy) * ww,
                                      np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9),
                                      bounds=(lo, hi), loss="soft_l1", f_scale=2.0, max_nfev=300)
                if best is None or s.cost < best.cost:
                    best = s
            return best.x

        starts = [[min(hi_y + f, 1.0), 0.3, a, 0.1, b] for f in (0.05, 0.3)
                  for a in (0.2, 0.6) for b in (0.3,)]
        theta = solve(n, d, y, w, starts)
        rng = np.random.default_rng(self.seed)
        sizes = np.unique(n)

        def refit(pick):  # resample models (all steps of a size)
            idx = np.concatenate([np.nonzero(n == s)[0] for s in sizes[pick]])
            yb = y[idx] + rng.standard_normal(len(idx)) / w[idx]
            return solve(n[idx], d[idx], yb, w[idx], [theta])

        boots = bootstrap_refits(refit, len(sizes), self.n_boot, rng,
                                 accept=lambda pick: len(np.unique(pick)) >= 3)
        nitems = pd.to_numeric(frame.get("n_samples"), errors="coerce").dropna()
        return SizeTokenFit(
            params=dict(zip(("E", "A", "alpha", "B", "beta"), map(float, theta))), n_ref=n_ref,
            d_ref=d_ref, n_range=(float(n.min()), float(n.max())), n_points=len(y),
            noise_sd=float(np.median(1 / w)), n_items=int(nitems.median()) if len(nitems) else None,
            boot_params=np.array(boots) if boots else np.empty((0, 5)))


def predict_sizes(frame: pd.DataFrame, *, series: str, sizes: Sequence[str],
                  tasks: Sequence[str] | None = None, num_fewshot: int | None = 0,
                  level: float = 0.9, law: ScalingLaw | None = None,
                  params: Mapping[str, float] | None = None, max_params: float | None = None,
                  from_steps: bool = False, min_tokens: float = 2e10,
                  exclude_sizes: Sequence[str] = (),
                  samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per task x requested size: predicted score, interval, extrapolation distance.

    ``max_params``: fit only sizes up to this many parameters (for back-tests). ``actual`` is
    filled when the rows hold that size's final score (so a prediction can be checked).
    ``samples``: per-sample results (``checkpoint_id``, ``task``, ``value``) for the bootstrap
    over items; optional.
    """
    law = law or ScalingLaw(x="n_params")
    base = frame[frame["series"] == series]
    if num_fewshot is not None:
        base = base[base["num_fewshot"] == num_fewshot]
    if exclude_sizes:
        base = base[~base["size"].isin(list(exclude_sizes))]
    if base.empty:
        raise FitError(f"no rows for series {series!r} (num_fewshot={num_fewshot}); import or "
                       "run it first (evalsuite import PATH), or check the name")
    final = select_points(base, step="final")
    targets = [(s, *resolve_size(s, final, params)) for s in sizes]
    if max_params is None:
        max_params = min(n for _, n, _ in targets) * (1 - 1e-9)
    fit_rows_all = final[final["n_params"].astype(float) <= max_params]
    tokens_final = float(pd.to_numeric(fit_rows_all["tokens_seen"], errors="coerce").median()) \
        if "tokens_seen" in fit_rows_all else math.nan
    out: list[dict[str, Any]] = []
    task_list = sorted(fit_rows_all["task"].unique()) if tasks is None else list(tasks)
    for task in task_list:
        rows = fit_rows_all[fit_rows_all["task"] == task]
        if rows.empty:
            continue
        try:
            if from_steps:
                steps = select_points(base[base["task"] == task], step="all")
                steps = steps[(steps["n_params"].astype(float) <= max_params)
                              & (pd.to_numeric(steps["tokens_seen"], errors="coerce") >= min_tokens)]
                fit = SizeTokenLaw(n_boot=law.n_boot, seed=law.seed).fit(steps)
                pred = fit.predict([n for _, n, _ in targets], tokens_final, level=level)
                form, npts, flag = "size_token", fit.n_points, ""
            else:
                excluded = {str(z): f"above the fit's limit ({max_params:.3g} parameters)"
                            for z in final[(final["task"] == task) & (final["n_params"].astype(
                                float) > max_params)]["size"].unique()}
                excluded.update({z: "excluded by the caller" for z in exclude_sizes})
                fit = law.fit(rows, samples, excluded=excluded)
                xs = np.array([n for _, n, _ in targets], float)
                if law.x == "compute_flops":
                    xs = 6.0 * xs * tokens_final
                elif law.x not in ("n_params", "n_params_nonembedding"):
                    raise FitError(f"predict_sizes predicts new sizes on x = n_params or "
                                   f"compute_flops, not {law.x!r}")
                pred = fit.predict(xs, level=level, seed=law.seed)
                form, npts, flag = fit.form, fit.n_points, fit.fit_flag
        except FitError as e:
            out.append({"series": series, "task": task, "size": None, "error": str(e)})
            continue
        for i, (label, n, src) in enumerate(targets):
            actual = final[(final["task"] == task) & (final["size"] == label)]["value"]
            out.append({
                "series": series, "task": task, "metric": str(rows["metric"].iloc[0]),
                "size": label, "n_params": n, "n_params_source": src,
                "predicted": float(pred.mean[i]), "lower": float(pred.lower[i]),
                "upper": float(pred.upper[i]), "level": level,
                "extrapolated": bool(pred.extrapolated[i]),
                "distance_decades": float(pred.distance[i]),
                "fitted_up_to": float(rows["n_params"].max()), "form": form, "n_fit": npts,
                "fit_flag": flag, "actual": float(actual.iloc[0]) if len(actual) else None})
    return pd.DataFrame(out)
