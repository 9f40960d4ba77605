"""Fit a scaling law to result rows: robust least squares, bootstrap intervals, AIC/BIC.

``ScalingLaw(form=..., x=...)`` only stores its settings; ``.fit(frame)`` validates the rows and
returns an immutable ``ScalingFit``, whose ``predict(x, level=0.9)`` gives a ``Prediction`` with
the mean, a prediction interval for a *new observation* (a model of that size, scored on the same
items) and whether, and how far, it extrapolates.

Fitting
-------
Points are weighted by their standard error (floored at ``min_stderr`` so that a point with a
tiny or missing stderr does not dominate) and fitted with a robust ``soft_l1`` (pseudo-Huber)
loss (scipy ``least_squares``), from several starting values derived from the data, within the
bounds of ``laws.Law.bounds``. AIC, AICc and BIC use the Gaussian likelihood with the residual
variance estimated (n log(RSS/n) + penalty); every candidate form that has enough points is
fitted and listed in ``summary()["candidates"]``.

Model selection (``form="auto"``; ``"aicc"`` and ``"bic"`` select by that criterion instead): a series has few sizes (Pythia: 5 or 6 points up to 2.8B),
where AICc is dominated by its small-sample penalty and picks a flat line for curves that
clearly rise, and cross-validation can pick a step function. So ``auto`` uses the saturating
power law for scores and losses (the form whose extrapolations held up in the Pythia back-test,
docs/scaling.md) and the AICc table is reported for inspection, not used to choose.

Uncertainty
-----------
Bootstrap replicates refit the law on resampled data (Efron & Tibshirani 1993, ch. 9):

* over items: when per-sample results are given (a DataFrame with ``checkpoint_id``, ``value``
  per item), each model's score is recomputed on items resampled with replacement; without them,
  each score is drawn from N(value, stderr^2), the normal approximation of the same thing;
* over models: the fitted models are resampled with replacement (pairs bootstrap), which
  captures misspecification and the leverage of the largest models.

``bootstrap="both"`` (default) does both in each replicate. With only ``k + 1`` models for a
``k``-parameter form (e.g. 4 sizes for the power law) the pairs bootstrap can only permute them,
so the interval then reflects item noise alone: expect it to be too narrow. With
``form_uncertainty=True`` the draws of a straight line in log x are mixed into the interval. A prediction interval adds the
sampling noise of the new observation: binomial sqrt(p(1-p)/n_items) when the item count is
known, else the median stderr of the fitted points. Percentile intervals.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ..records import final_step_mask, metric_higher_is_better
from ..stats import bootstrap_refits, observation_interval, percentile_interval
from .laws import LAWS, Law, get_law

__all__ = ["ScalingLaw", "ScalingFit", "Prediction", "FitError", "fit_scaling_law",
           "select_points", "X_COLUMNS"]

#: horizontal axes a fit can use (ResultRow columns)
#: form names that choose a form rather than name one
SELECTORS = ("auto", "aicc", "bic")
X_COLUMNS = ("compute_flops", "n_params", "n_params_nonembedding", "tokens_seen", "model_bits")


class FitError(ValueError):
    """Rows that cannot be fitted; the message names the field and the fix."""


@dataclass(frozen=True)
class Prediction:
    """Predicted score(s): mean, interval for a new observation, extrapolation flags.

    ``distance`` is how far beyond the fitted range the point lies, in decades of x (log10);
    0 inside the range. Scalars in, scalars out; arrays in, arrays out.
    """

    x: Any
    mean: Any
    lower: Any
    upper: Any
    extrapolated: Any
    distance: Any
    level: float

    def to_dict(self) -> dict[str, Any]:
        def clean(v):
            if isinstance(v, np.ndarray):
                return v.tolist()
            return v.item() if hasattr(v, "item") else v
        return {k: clean(getattr(self, k)) for k in
                ("x", "mean", "lower", "upper", "extrapolated", "distance", "level")}


@dataclass(frozen=True)
class ScalingFit:
    """A fitted scaling law (immutable). Create with ``ScalingLaw(...).fit(frame)``."""

    form: str
    x_name: str
    params: Mapping[str, float]
    u_ref: float
    sign: float
    bounded: bool
    u_range: tuple[float, float]
    n_points: int
    rss: float
    aic: float
    aicc: float
    bic: float
    noise_sd: float
    n_items: int | None
    chance: float | None
    bootstrap: str
    task: str | None = None
    metric: str | None = None
    series: tuple[str, ...] = ()
    candidates: tuple[Mapping[str, Any], ...] = ()
    points: tuple[tuple[float, float, float], ...] = ()
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False,
                                    compare=False)
    #: bootstrap replicates of the alternative form whose draws widen the prediction interval
    #: (form uncertainty); empty when not used
    alt_form: str | None = None
    alt_boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False,
                                        compare=False)

    @property
    def law(self) -> Law:
        return get_law(self.form)

    @property
    def theta(self) -> np.ndarray:
        return np.array([self.params[p] for p in self.law.params], float)

    def curve(self, x) -> np.ndarray:
        """The fitted mean curve at x (raw units, e.g. FLOPs)."""
        u = np.log10(np.asarray(x, float))
        return self._clip(self.law(u, self.theta, self.u_ref, self.sign))

    def _clip(self, y):
        return np.clip(y, 0.0, 1.0) if self.bounded else y

    def predict(self, x, level: float = 0.9, seed: int = 0) -> Prediction:
        """Mean and ``level`` prediction interval at x (raw units of ``x_name``)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        scalar = np.ndim(x) == 0
        xa = np.atleast_1d(np.asarray(x, float))
        if np.any(~np.isfinite(xa)) or np.any(xa <= 0):
            raise ValueError(f"predict: x ({self.x_name}) must be finite and > 0, got {x!r}")
        u = np.log10(xa)
        mean = self._clip(self.law(u, self.theta, self.u_ref, self.sign))
        rng = np.random.default_rng(seed)
        if self.boot_params.size:
            curves = np.stack([self.law(u, t, self.u_ref, self.sign) for t in self.boot_params])
        else:
            curves = np.repeat(mean[None, :], 200, axis=0)
        if self.alt_form and self.alt_boot_params.size:
            alt = get_law(self.alt_form)
            alt_curves = np.stack([alt(u, t, self.u_ref, self.sign) for t in self.alt_boot_params])
            curves = np.concatenate([curves, alt_curves])
        lower, upper = observation_interval(curves, mean, level, rng, n_items=self.n_items,
                                            noise_sd=self.noise_sd, bounded=self.bounded)
        dist = np.maximum(u - self.u_range[1], 0.0) + np.maximum(self.u_range[0] - u, 0.0)
        extrap = dist > 1e-9
        if scalar:
            return Prediction(float(xa[0]), float(mean[0]), float(lower[0]), float(upper[0]),
                              bool(extrap[0]), float(dist[0]), level)
        return Prediction(xa, mean, lower, upper, extrap, dist, level)

    def param_intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of each parameter."""
        if not self.boot_params.size:
            return {p: (math.nan, math.nan) for p in self.law.params}
        lo, hi = percentile_interval(self.boot_params, level)
        return {p: (float(lo[i]), float(hi[i])) for i, p in enumerate(self.law.params)}

    def summary(self, level: float = 0.9) -> dict[str, Any]:
        """JSON-ready description of the fit."""
        return {
            "task": self.task, "metric": self.metric, "series": list(self.series),
            "form": self.form, "formula": self._formula(), "x": self.x_name,
            "params": {k: float(v) for k, v in self.params.items()},
            "param_intervals": {k: list(v) for k, v in self.param_intervals(level).items()},
            "level": level, "x_ref": float(10 ** self.u_ref),
            "x_range": [float(10 ** self.u_range[0]), float(10 ** self.u_range[1])],
            "n_points": self.n_points, "rss": self.rss, "aic": self.aic, "aicc": self.aicc,
            "bic": self.bic, "noise_sd": self.noise_sd, "n_items": self.n_items,
            "chance": self.chance, "bootstrap": self.bootstrap,
            "n_bootstrap": int(self.boot_params.shape[0]) if self.boot_params.size else 0,
            "interval_forms": [self.form] + ([self.alt_form] if self.alt_form else []),
            "candidates": [dict(c) for c in self.candidates],
        }

    def _formula(self) -> str:
        if self.form == "power":
            return ("y = E - A * (x/x_ref)^(-alpha)   (E: the ceiling the score saturates to)"
                    if self.sign < 0 else
                    "y = E + A * (x/x_ref)^(-alpha)   (E: the irreducible loss)")
        return self.law.formula

    def report(self, level: float = 0.9) -> str:
        """Human-readable summary."""
        s = self.summary(level)
        lines = [f"{self.task or '?'} / {self.metric or '?'}: {self.form} law in {self.x_name} "
                 f"({self.n_points} points, x from {s['x_range'][0]:.3g} to {s['x_range'][1]:.3g})",
                 f"  {self._formula()}   (x_ref = {s['x_ref']:.3g})"]
        for name, v in s["params"].items():
            lo, hi = s["param_intervals"][name]
            lines.append(f"  {name:>8} = {v:.4g}   [{lo:.4g}, {hi:.4g}] ({level:.0%} bootstrap, "
                         f"{self.bootstrap})")
        lines.append(f"  AIC {self.aic:.2f}  AICc {self.aicc:.2f}  BIC {self.bic:.2f}  "
                     f"residual RSS {self.rss:.3g}")
        for c in self.candidates:
            if c["form"] != self.form:
                lines.append(f"  alternative {c['form']:>8}: AICc {c['aicc']:.2f}  BIC {c['bic']:.2f}")
        return "\n".join(lines)


def _information(rss: float, n: int, k: int) -> tuple[float, float, float]:
    rss = max(rss, 1e-12)
    aic = n * math.log(rss / n) + 2 * k
    aicc = aic + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    bic = n * math.log(rss / n) + k * math.log(n)
    return aic, aicc, bic


def _fit_once(law: Law, u, y, w, u_ref, sign, chance, bounded, starts=None, max_nfev=400):
    lo, hi = law.bounds(u, y, sign, chance, bounded)
    starts = starts if starts is not None else law.starts(u, y, sign, chance, bounded)
    best = None

    def resid(theta):
        return (law(u, theta, u_ref, sign) - y) * w

    jac = "2-point"
    if law.jacobian is not None:
        def jac(theta):
            return law.jacobian(u, theta, u_ref, sign) * w[:, None]

    for p0 in starts:
        p0 = np.clip(np.asarray(p0, float), np.array(lo) + 1e-12, np.array(hi) - 1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                sol = least_squares(resid, p0, jac=jac, bounds=(lo, hi), loss="soft_l1",
                                    f_scale=2.0, max_nfev=max_nfev)
            except ValueError:
                continue
        if best is None or sol.cost < best.cost:
            best = sol
    if best is None:
        raise FitError(f"the {law.name} law could not be fitted to these points")
    return best.x


class ScalingLaw:
    """Settings of a scaling-law fit. ``fit(frame)`` returns an immutable ``ScalingFit``.

    Keyword arguments:
        form: ``power``, ``sigmoid``, ``linear``, ``flat``; ``auto`` (the power law, see the
            module docstring); or ``aicc`` / ``bic``: the form with the lowest AICc / BIC
            among those with enough points (reported in the back-test notes as unreliable at
            4 to 6 sizes).
        x: horizontal axis, one of ``X_COLUMNS`` (default training compute in FLOPs).
        n_boot: bootstrap replicates (0: no intervals beyond the noise of a new observation).
        bootstrap: ``both`` (default), ``items`` or ``models``.
        min_stderr: floor on the per-point standard error used as weight.
        seed: random seed of the bootstrap.
        form_uncertainty: for the power and sigmoid forms, mix the bootstrap draws of a straight
            line in log x into the prediction interval (the mean stays the chosen form's). Off
            by default: in the Pythia back-test it doubled the width of the core intervals
            (0.06 -> 0.11) for little coverage gain (40/48 -> 41/48 held-out points covered).
        compare_forms: also fit every other form and list AIC/AICc/BIC in ``summary()``
            (off saves time in back-tests).
    """

    def __init__(self, *, form: str = "auto", x: str = "compute_flops", n_boot: int = 200,
                 bootstrap: str = "both", min_stderr: float = 0.005, seed: int = 0,
                 form_uncertainty: bool = False, compare_forms: bool = True):
        self.form = form
        self.x = x
        self.n_boot = n_boot
        self.bootstrap = bootstrap
        self.min_stderr = min_stderr
        self.seed = seed
        self.form_uncertainty = form_uncertainty
        self.compare_forms = compare_forms

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("form", "x", "n_boot", "bootstrap", "min_stderr",
                                              "seed", "form_uncertainty", "compare_forms")}

    def __repr__(self) -> str:
        return "ScalingLaw(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    # ---------------------------------------------------------------------------------
    def _validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise FitError("fit expects a pandas DataFrame with the ResultRow columns "
                           "(ResultStore.to_frame()); got " + type(frame).__name__)
        if self.form not in SELECTORS:
            get_law(self.form)
        if self.x not in X_COLUMNS:
            raise FitError(f"x={self.x!r} is not a known axis; use one of {X_COLUMNS}")
        if self.bootstrap not in ("both", "items", "models"):
            raise FitError(f"bootstrap={self.bootstrap!r}: use 'both', 'items' or 'models'")
        for col in (self.x, "value"):
            if col not in frame.columns:
                raise FitError(f"the rows have no {col!r} column; pass rows with the ResultRow "
                               f"columns (missing: {col})")
        if "metric" in frame.columns and frame["metric"].nunique() > 1:
            if "is_primary" in frame.columns and frame["is_primary"].any():
                frame = frame[frame["is_primary"].astype(bool)]
            if frame["metric"].nunique() > 1:
                raise FitError(f"rows hold several metrics {sorted(frame['metric'].unique())}: "
                               "select one (frame[frame.metric == 'acc']) before fitting")
        if "task" in frame.columns and frame["task"].nunique() > 1:
            raise FitError(f"rows hold several tasks ({frame['task'].nunique()}): fit one task at "
                           "a time (frame[frame.task == NAME]) or use fit_tasks()")
        for col in (self.x, "value"):
            vals = pd.to_numeric(frame[col], errors="coerce")
            bad = frame[~np.isfinite(vals.astype(float))]
            if len(bad):
                who = (", ".join(map(str, bad["checkpoint_id"].head(3)))
                       if "checkpoint_id" in bad.columns else f"{len(bad)} rows")
                raise FitError(f"{len(bad)} rows have a missing or non-finite {col!r} ({who}); "
                               f"drop them (frame.dropna(subset=[{col!r}])) or fill {col} "
                               "before fitting")
        if (frame[self.x].astype(float) <= 0).any():
            raise FitError(f"{self.x!r} must be > 0 for a fit in log10({self.x}); "
                           "drop rows at step 0 or with zero compute")
        return frame

    def fit(self, frame: pd.DataFrame, samples: pd.DataFrame | None = None) -> ScalingFit:
        """Fit the law to the rows of one task and metric.

        ``samples``: optional per-sample results (columns ``checkpoint_id``, ``value`` and
        optionally ``task``; one row per item) for the bootstrap over items; without it the items are resampled through
        the normal approximation N(value, stderr^2).
        """
        frame = self._validate(frame)
        u = np.log10(frame[self.x].to_numpy(float))
        y = frame["value"].to_numpy(float)
        se = (pd.to_numeric(frame["stderr"], errors="coerce").to_numpy(float)
              if "stderr" in frame.columns else np.full_like(y, np.nan))
        se = np.where(np.isfinite(se), se, np.nan)
        se_eff = np.where(np.isfinite(se), np.maximum(se, self.min_stderr), self.min_stderr)
        w = 1.0 / se_eff
        metric = str(frame["metric"].iloc[0]) if "metric" in frame.columns else None
        higher = bool(frame["higher_is_better"].iloc[0]) if "higher_is_better" in frame.columns \
            else metric_higher_is_better(metric)
        sign = -1.0 if higher else 1.0
        bounded = bool(np.all((y >= 0) & (y <= 1))) and metric_higher_is_better(metric)
        chance = None
        if "chance" in frame.columns:
            c = pd.to_numeric(frame["chance"], errors="coerce").dropna()
            chance = float(c.iloc[0]) if len(c) else None
        n_items = None
        if "n_samples" in frame.columns:
            n = pd.to_numeric(frame["n_samples"], errors="coerce").dropna()
            n_items = int(n.median()) if len(n) else None
        u_ref = float(np.min(u))
        n_distinct = len(np.unique(np.round(u, 9)))
        selecting = self.form in ("aicc", "bic")
        form = "power" if self.form in SELECTORS else self.form
        law = get_law(form)
        if n_distinct < law.n_params + 1 and not selecting:
            raise FitError(f"the {form} law has {law.n_params} parameters and needs at least "
                           f"{law.n_params + 1} distinct {self.x} values; got {n_distinct}. Add "
                           "sizes or checkpoints, or use the form linear (2) or flat (1): "
                           "form='linear' here, --form linear in the CLI")

        candidates = []
        theta = None
        for name, cand in LAWS.items():
            if n_distinct < cand.n_params + 1 or (name == "sigmoid" and not bounded):
                continue
            if not self.compare_forms and name != form and not selecting:
                continue
            th = _fit_once(cand, u, y, w, u_ref, sign, chance, bounded)
            rss = float(np.sum((cand(u, th, u_ref, sign) - y) ** 2))
            aic, aicc, bic = _information(rss, len(y), cand.n_params)
            candidates.append({"form": name, "params": dict(zip(cand.params, map(float, th))),
                               "rss": rss, "aic": aic, "aicc": aicc if math.isfinite(aicc) else None,
                               "bic": bic})
            if name == form:
                theta = th
        if selecting:
            key = self.form
            scored = [c for c in candidates if c[key] is not None and math.isfinite(c[key])]
            if not scored:
                raise FitError(f"form={self.form!r}: no form has enough points for a finite "
                               f"{key.upper()} ({n_distinct} distinct {self.x} values)")
            best = min(scored, key=lambda c: c[key])
            form, law = best["form"], get_law(best["form"])
            theta = np.array([best["params"][p] for p in law.params], float)
        rss = float(np.sum((law(u, theta, u_ref, sign) - y) ** 2))
        aic, aicc, bic = _information(rss, len(y), law.n_params)
        dof = max(len(y) - law.n_params, 1)
        resid_sd = math.sqrt(rss / dof)
        med_se = float(np.nanmedian(se)) if np.isfinite(se).any() else resid_sd
        noise_sd = med_se if np.isfinite(med_se) else resid_sd

        boot = self._bootstrap(law, frame, u, y, se_eff, w, u_ref, sign, chance, bounded, theta,
                               samples)
        alt_form, alt_boot = None, np.empty((0, 0))
        if self.form_uncertainty and self.n_boot and form in ("power", "sigmoid"):
            alt = get_law("linear")
            alt_theta = _fit_once(alt, u, y, w, u_ref, sign, chance, bounded)
            alt_form = "linear"
            alt_boot = self._bootstrap(alt, frame, u, y, se_eff, w, u_ref, sign, chance, bounded,
                                       alt_theta, samples)
        series = tuple(sorted(map(str, frame["series"].unique()))) if "series" in frame else ()
        task = str(frame["task"].iloc[0]) if "task" in frame.columns else None
        return ScalingFit(
            form=form, x_name=self.x, params=dict(zip(law.params, map(float, theta))),
            u_ref=u_ref, sign=sign, bounded=bounded, u_range=(float(u.min()), float(u.max())),
            n_points=len(y), rss=rss, aic=aic, aicc=aicc, bic=bic, noise_sd=float(noise_sd),
            n_items=n_items, chance=chance,
            bootstrap=("none" if not self.n_boot else
                       self.bootstrap + (" (items from samples)" if samples is not None and
                                         self.bootstrap != "models" else "")),
            task=task, metric=metric, series=series, candidates=tuple(candidates),
            points=tuple(zip(map(float, 10 ** u), map(float, y), map(float, se_eff))),
            boot_params=boot, alt_form=alt_form, alt_boot_params=alt_boot)

    def _bootstrap(self, law, frame, u, y, se_eff, w, u_ref, sign, chance, bounded, theta,
                   samples) -> np.ndarray:
        if not self.n_boot:
            return np.empty((0, law.n_params))
        rng = np.random.default_rng(self.seed)
        n = len(y)
        item_values = None
        if samples is not None and "checkpoint_id" in frame.columns:
            if not {"checkpoint_id", "value"} <= set(samples.columns):
                raise FitError("samples need the columns 'checkpoint_id' and 'value' (one row per "
                               "item and checkpoint, e.g. from results/samples/<cell>.parquet)")
            if "task" in samples.columns and "task" in frame.columns:
                samples = samples[samples["task"] == frame["task"].iloc[0]]
            groups = {k: g["value"].to_numpy(float) for k, g in samples.groupby("checkpoint_id")}
            item_values = [groups.get(c) for c in frame["checkpoint_id"]]
        resample = self.bootstrap in ("both", "models")

        def enough_sizes(idx):
            return len(np.unique(np.round(u[idx], 9))) >= law.n_params + 1

        def refit(idx):
            yb = y[idx].copy()
            if self.bootstrap in ("both", "items"):
                for j, i in enumerate(idx):
                    vals = item_values[i] if item_values is not None else None
                    if vals is not None and len(vals):
                        yb[j] = float(np.mean(vals[rng.integers(0, len(vals), len(vals))]))
                    else:
                        yb[j] = y[i] + rng.standard_normal() * se_eff[i]
            return _fit_once(law, u[idx], yb, w[idx], u_ref, sign, chance, bounded,
                             starts=[theta], max_nfev=100)

        out = bootstrap_refits(refit, n, self.n_boot, rng, resample=resample,
                               accept=enough_sizes if resample else None,
                               max_tries=5 * self.n_boot, skip=(FitError,))
        return np.array(out) if out else np.empty((0, law.n_params))


def select_points(frame: pd.DataFrame, *, task: str | None = None, series: str | Sequence[str] | None = None,
                  metric: str | None = None, step: str | int | None = "final",
                  num_fewshot: int | None = None, max_params: float | None = None,
                  sizes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of one task/metric to fit: ``step='final'`` keeps each size's last step.

    metric None: the primary metric. ``max_params``: keep sizes with n_params at most this.
    """
    f = frame
    if task is not None:
        f = f[f["task"] == task]
    if series is not None:
        f = f[f["series"].isin([series] if isinstance(series, str) else list(series))]
    if metric is None:
        f = f[f["is_primary"].astype(bool)]
    else:
        f = f[f["metric"] == metric]
    if num_fewshot is not None:
        f = f[f["num_fewshot"] == num_fewshot]
    if sizes is not None:
        f = f[f["size"].isin(list(sizes))]
    if max_params is not None:
        f = f[f["n_params"].astype(float) <= max_params]
    if step == "final" and len(f):
        f = f[final_step_mask(f)]
    elif step not in (None, "all", "final"):
        f = f[f["step"] == int(step)]
    return f


def fit_scaling_law(frame: pd.DataFrame, *, samples: pd.DataFrame | None = None,
                    **settings: Any) -> ScalingFit:
    """Shortcut: ``ScalingLaw(**settings).fit(frame, samples)``."""
    return ScalingLaw(**settings).fit(frame, samples)
