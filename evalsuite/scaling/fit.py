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

``bootstrap="both"`` (default) does both in each replicate.

The prediction interval (``interval="bma"``, the default) is a Bayesian model average of two
forms' predictive distributions: the chosen form and a straight line in log x (the form that
does not saturate), weighted by their BIC posterior probabilities, p(f) ~ exp(-BIC_f / 2)
(Raftery 1995, "Bayesian Model Selection in Social Research"; Burnham & Anderson 2002, ch. 4).
When the chosen form has a parameter on its bound (the data do not pin it, e.g. a ceiling at
1.0 or at the highest fitted score), the line gets at least half the weight. Each form's
bootstrap curves are spread about its fit by sqrt(n / (n - k)) for n points and k parameters,
the usual correction for the shrinkage of bootstrap residuals (Davison & Hinkley 1997,
"Bootstrap Methods and their Application", eq. 6.9, with the average leverage k / n): with
n = k + 1 points the pairs bootstrap can only permute the models and is otherwise far too
narrow. The mean stays the chosen form's (the back-test's best point prediction); the interval
is widened to contain it. A new observation adds its sampling noise: binomial
sqrt(p(1-p)/n_items) when the item count is known, else the median stderr of the fitted
points, drawn from a generator seeded by (seed, x), so a size gets the same interval whatever
else is predicted with it. ``interval="form"``: the chosen form's bootstrap alone (the
behaviour before 2026-12, for comparison). Measured coverage: docs/scaling.md, benchmarks/RESULTS.md.

Goodness of fit: chi2 = sum(((y - fit) / se)^2) with the floored stderrs, on n - k degrees of
freedom; a fit with p(chi2) < ``POOR_FIT_P`` misses its own points by more than their noise and
is flagged (``ScalingFit.poor_fit``), on every output that shows its predictions.
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

from ..records import final_step_mask, metric_higher_is_better
from ..stats import bootstrap_refits, observation_interval, percentile_interval
from .laws import LAWS, Law, get_law

__all__ = ["ScalingLaw", "ScalingFit", "Prediction", "FitError", "fit_scaling_law",
           "select_points", "X_COLUMNS", "DEFAULT_N_BOOT", "INTERVALS", "POOR_FIT_P"]

#: bootstrap replicates of every fit unless asked otherwise (CLI, predictions, leaderboard)
DEFAULT_N_BOOT = 100
#: how a prediction interval is built (module docstring)
INTERVALS = ("bma", "form")
#: the form averaged with the chosen one in a ``bma`` interval
ALTERNATIVE_FORM = "linear"
#: the least weight of the alternative form when the chosen form has a parameter on a bound
ACTIVE_MIN_WEIGHT = 0.5
#: noise draws of a new observation per bootstrap curve
NOISE_DRAWS = 20
#: a fit whose chi-square p-value is below this misses its points by more than their noise
POOR_FIT_P = 0.01
#: the robust loss of every fit (scipy least_squares ``loss`` and ``f_scale``)
LOSS = ("soft_l1", 2.0)

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
    alt_params: Mapping[str, float] = field(default_factory=dict)
    #: BIC posterior weight of the alternative form in the interval (0: the chosen form alone)
    alt_weight: float = 0.0
    interval: str = "bma"
    seed: int = 0
    #: parameter -> (lower, upper) bound of the fit, and the parameters that sit on one
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    active_bounds: tuple[str, ...] = ()
    starts: int = 0
    min_stderr: float = 0.005
    chi2: float = math.nan
    chi2_p: float = math.nan
    #: labels (size or checkpoint) of the fitted points, in the order of ``points``
    labels: tuple[str, ...] = ()
    #: labels the caller left out of the fit, with why (``{"1b": "excluded by --exclude-sizes"}``)
    excluded: Mapping[str, str] = field(default_factory=dict)

    @property
    def _n_distinct(self) -> int:
        """Distinct x among the fitted points (several precisions of a size share one)."""
        return len({round(math.log10(p[0]), 9) for p in self.points}) if self.points \
            else self.n_points

    @property
    def poor_fit(self) -> bool:
        """The fit misses its own points by more than their noise (chi-square p < POOR_FIT_P)."""
        return bool(math.isfinite(self.chi2_p) and self.chi2_p < POOR_FIT_P)

    @property
    def fit_flag(self) -> str:
        """One line for tables: empty for a good fit, else why its predictions are suspect."""
        notes = []
        if self.poor_fit:
            dof = max(self.n_points - self.law.n_params, 1)
            notes.append(f"poor fit: chi2 {self.chi2:.1f} on {dof} dof (p {self.chi2_p:.2g})")
        if self.active_bounds:
            notes.append("on bound: " + ", ".join(self.active_bounds))
        return "; ".join(notes)

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

    def predict(self, x, level: float = 0.9, seed: int | None = None) -> Prediction:
        """Mean and ``level`` prediction interval at x (raw units of ``x_name``); the noise of
        a new observation is drawn with ``seed`` (default: the fit's seed)."""
        seed = self.seed if seed is None else seed
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        scalar = np.ndim(x) == 0
        xa = np.atleast_1d(np.asarray(x, float))
        if np.any(~np.isfinite(xa)) or np.any(xa <= 0):
            raise ValueError(f"predict: x ({self.x_name}) must be finite and > 0, got {x!r}")
        u = np.log10(xa)
        mean = self._clip(self.law(u, self.theta, self.u_ref, self.sign))
        curves = self._draws(u)
        lower, upper = np.empty_like(u), np.empty_like(u)
        for j, xj in enumerate(xa):
            # one generator per x: a size's interval does not depend on what else is asked
            rng = _x_rng(seed, xj)
            lo, hi = observation_interval(curves[:, j:j + 1], mean[j:j + 1], level, rng,
                                          n_items=self.n_items, noise_sd=self.noise_sd,
                                          bounded=self.bounded, draws_per_curve=NOISE_DRAWS)
            lower[j], upper[j] = lo[0], hi[0]
        dist = np.maximum(u - self.u_range[1], 0.0) + np.maximum(self.u_range[0] - u, 0.0)
        extrap = dist > 1e-9
        if scalar:
            return Prediction(float(xa[0]), float(mean[0]), float(lower[0]), float(upper[0]),
                              bool(extrap[0]), float(dist[0]), level)
        return Prediction(xa, mean, lower, upper, extrap, dist, level)

    def pit(self, x, actual, seed: int | None = None) -> np.ndarray:
        """Probability integral transform: the predictive probability of a score below
        ``actual`` at each x (uniform on [0, 1] when the intervals are calibrated), from the
        same draws as ``predict``'s interval (clipped to [0, 1] for a bounded score)."""
        seed = self.seed if seed is None else seed
        xa = np.atleast_1d(np.asarray(x, float))
        act = np.broadcast_to(np.asarray(actual, float), xa.shape)
        curves = self._draws(np.log10(xa))
        out = np.empty(len(xa))
        for j, xj in enumerate(xa):
            rng = _x_rng(seed, xj)
            c = np.repeat(curves[:, j], NOISE_DRAWS)
            if self.bounded and self.n_items:
                p = np.clip(c, 1e-3, 1 - 1e-3)
                sd = np.sqrt(p * (1 - p) / self.n_items)
            else:
                sd = np.full_like(c, self.noise_sd)
            d = c + rng.standard_normal(c.shape) * sd
            if self.bounded:
                d = np.clip(d, 0.0, 1.0)
            out[j] = float(np.mean(d < act[j]) + 0.5 * np.mean(d == act[j]))
        return out

    def _draws(self, u: np.ndarray) -> np.ndarray:
        """Bootstrap curves at u (one row per replicate): the chosen form's and, in a ``bma``
        interval, the alternative's in proportion to its weight, each spread about its fit by
        sqrt(n / (n - k))."""
        center = self.law(u, self.theta, self.u_ref, self.sign)
        if not self.boot_params.size:
            return np.repeat(center[None, :], 200, axis=0)
        curves = np.stack([self.law(u, t, self.u_ref, self.sign) for t in self.boot_params])
        curves = center + (curves - center) * _spread(self._n_distinct, self.law.n_params)
        n_alt = int(round(self.alt_weight * len(curves)))
        if not (self.alt_form and self.alt_boot_params.size and n_alt):
            return curves
        alt = get_law(self.alt_form)
        a_theta = np.array([self.alt_params[p] for p in alt.params], float)
        a_center = alt(u, a_theta, self.u_ref, self.sign)
        a_curves = np.stack([alt(u, t, self.u_ref, self.sign) for t in self.alt_boot_params])
        a_curves = a_center + (a_curves - a_center) * _spread(self._n_distinct, alt.n_params)
        pick = np.arange(n_alt) % len(a_curves)
        return np.concatenate([curves[: len(curves) - n_alt], a_curves[pick]])

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
            "seed": self.seed,
            "uncertainty": self._uncertainty(),
            "loss": {"name": "soft_l1 (pseudo-Huber)", "f_scale": LOSS[1],
                     "weights": f"1 / max(stderr, {self.min_stderr})", "scale": "score units"},
            "optimizer": {"name": "scipy.optimize.least_squares (trf, bounded)",
                          "starts": self.starts, "rule": "best of the data-derived starts"},
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "active_bounds": list(self.active_bounds),
            "points": [{"label": lab, "x": x, "value": y, "stderr_used": se,
                        **({"note": _STAND_IN} if _STAND_IN_RE.match(lab) else {})}
                       for lab, (x, y, se) in sorted(zip(self.labels or [""] * len(self.points),
                                                         self.points), key=lambda t: t[1][0])],
            "excluded": dict(self.excluded),
            "goodness_of_fit": {"chi2": self.chi2,
                                "dof": max(self.n_points - self.law.n_params, 1),
                                "p": self.chi2_p, "poor_fit": self.poor_fit,
                                "rule": f"poor when p(chi2) < {POOR_FIT_P}"},
            "fit_flag": self.fit_flag,
            "candidates": [dict(c) for c in self.candidates],
        }

    def _uncertainty(self) -> dict[str, Any]:
        forms = {self.form: round(1.0 - self.alt_weight, 6)}
        if self.alt_form and self.alt_weight > 0:
            forms[self.alt_form] = round(self.alt_weight, 6)
        return {"interval": self.interval, "forms": forms,
                "weights": "BIC posterior, the alternative >= 0.5 when a bound is active",
                "spread": {f: round(_spread(self._n_distinct, get_law(f).n_params), 4)
                           for f in forms},
                "bootstrap": self.bootstrap, "seed": self.seed,
                "observation_noise": ("binomial over %d items" % self.n_items if self.n_items
                                      else f"normal, sd {self.noise_sd:.3g}")}

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
        g = s["goodness_of_fit"]
        if math.isfinite(g["chi2"]):
            lines.append(f"  goodness of fit: chi2 {g['chi2']:.2f} on {g['dof']} dof, p "
                         f"{g['p']:.3g}" + ("  POOR FIT: the law misses its points by more than "
                                           "their noise" if g["poor_fit"] else ""))
        else:
            lines.append("  goodness of fit: not judged (the points have no stderr)")
        lines.append(f"  loss soft_l1 (f_scale {LOSS[1]}), weights 1/max(stderr, "
                     f"{self.min_stderr}); least_squares from {self.starts} starts; bounds "
                     + ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in
                                 self.bounds.items())
                     + (f"; ACTIVE: {', '.join(self.active_bounds)}" if self.active_bounds
                        else "; none active"))
        u = s["uncertainty"]
        lines.append("  interval: " + " + ".join(f"{w:.2f} x {f}" for f, w in u["forms"].items())
                     + f" ({self.interval}; {s['n_bootstrap']} replicates, seed {self.seed}, "
                     f"{u['observation_noise']})")
        pts = ", ".join((p["label"] or f"{p['x']:.3g}") + (" (stand-in)" if "note" in p else "")
                        for p in s["points"])
        lines.append(f"  points used: {pts}")
        if self.excluded:
            lines.append("  excluded: " + ", ".join(f"{k} ({v})" for k, v in
                                                   self.excluded.items()))
        for c in self.candidates:
            if c["form"] != self.form:
                aicc = "n/a" if c["aicc"] is None else f"{c['aicc']:.2f}"
                lines.append(f"  alternative {c['form']:>8}: AICc {aicc}  BIC {c['bic']:.2f}")
        return "\n".join(lines)


#: a size label with a suffix (``1b-bf16``): a different run standing in for that size
_STAND_IN_RE = re.compile(r"^\d+(\.\d+)?[kmbt]-\S+$", re.I)
_STAND_IN = "stand-in: another run of this size (its label carries a suffix)"


def _x_rng(seed: int, x: float) -> np.random.Generator:
    """The noise generator of one x: seeded by (seed, the bits of x)."""
    return np.random.default_rng([int(seed), *np.frombuffer(np.float64(x).tobytes(),
                                                             np.uint32).tolist()])


def _spread(n: int, k: int) -> float:
    """sqrt(n / (n - k)): the bootstrap spread correction for n points and k parameters."""
    return math.sqrt(n / max(n - k, 1))


def _active_bounds(law: Law, theta, lo, hi) -> tuple[str, ...]:
    """Names of the parameters that sit on a bound (within 1e-6 of its width)."""
    out = []
    for name, t, a, b in zip(law.params, theta, lo, hi):
        tol = 1e-6 * max(b - a, 1e-9)
        if t <= a + tol or t >= b - tol:
            out.append(name)
    return tuple(out)


def _bic_weight(bic_form: float, bic_alt: float) -> float:
    """BIC posterior probability of the alternative form against the chosen one."""
    d = (bic_alt - bic_form) / 2.0
    return 0.0 if d > 700 else 1.0 / (1.0 + math.exp(d))


def _information(rss: float, n: int, k: int) -> tuple[float, float, float]:
    rss = max(rss, 1e-12)
    aic = n * math.log(rss / n) + 2 * k
    aicc = aic + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    bic = n * math.log(rss / n) + k * math.log(n)
    return aic, aicc, bic


def _fit_once(law: Law, u, y, w, u_ref, sign, chance, bounded, starts=None, max_nfev=400,
              noise=None):
    lo, hi = law.bounds(u, y, sign, chance, bounded, noise)
    starts = starts if starts is not None else law.starts(u, y, sign, chance, bounded, noise)
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
                sol = least_squares(resid, p0, jac=jac, bounds=(lo, hi), loss=LOSS[0],
                                    f_scale=LOSS[1], max_nfev=max_nfev)
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
        interval: ``bma`` (default): the prediction interval averages the chosen form and a
            straight line in log x by BIC weight, each bootstrap spread by sqrt(n / (n - k));
            ``form``: the chosen form's bootstrap alone (module docstring).
        compare_forms: also fit every other form and list AIC/AICc/BIC in ``summary()``
            (off saves time in back-tests).
    """

    def __init__(self, *, form: str = "auto", x: str = "compute_flops",
                 n_boot: int = DEFAULT_N_BOOT, bootstrap: str = "both",
                 min_stderr: float = 0.005, seed: int = 0, interval: str = "bma",
                 compare_forms: bool = True):
        self.form = form
        self.x = x
        self.n_boot = n_boot
        self.bootstrap = bootstrap
        self.min_stderr = min_stderr
        self.seed = seed
        self.interval = interval
        self.compare_forms = compare_forms

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("form", "x", "n_boot", "bootstrap", "min_stderr",
                                              "seed", "interval", "compare_forms")}

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
        if self.interval not in INTERVALS:
            raise FitError(f"interval={self.interval!r}: use one of {INTERVALS}")
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

    def fit(self, frame: pd.DataFrame, samples: pd.DataFrame | None = None, *,
            excluded: Mapping[str, str] | None = None) -> ScalingFit:
        """Fit the law to the rows of one task and metric.

        ``excluded``: labels the caller left out, with why; reported in ``summary()``.

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
        noise = float(np.median(se_eff))
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
        if form == "sigmoid" and not bounded:
            raise FitError("the sigmoid form is for scores in [0, 1] where higher is better; "
                           f"{metric or 'this metric'} is not one: use form='power' or 'linear'")

        candidates = []
        theta = None
        for name, cand in LAWS.items():
            if n_distinct < cand.n_params + 1 or (name == "sigmoid" and not bounded):
                continue
            if not self.compare_forms and name != form and not selecting:
                continue
            th = _fit_once(cand, u, y, w, u_ref, sign, chance, bounded, noise=noise)
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

        lo_b, hi_b = law.bounds(u, y, sign, chance, bounded, noise)
        active = _active_bounds(law, theta, lo_b, hi_b)
        resid = (law(u, theta, u_ref, sign) - y) / se_eff
        chi2 = float(np.sum(resid ** 2))
        from scipy.stats import chi2 as chi2_dist
        chi2_p = float(chi2_dist.sf(chi2, max(len(y) - law.n_params, 1)))
        if not np.isfinite(se).any():   # no stderr known: no noise to judge the fit against
            chi2, chi2_p = math.nan, math.nan

        boot = self._bootstrap(law, frame, u, y, se_eff, w, u_ref, sign, chance, bounded, theta,
                               samples)
        alt_form, alt_boot, alt_params, alt_weight = None, np.empty((0, 0)), {}, 0.0
        if self.interval == "bma" and self.n_boot and form not in (ALTERNATIVE_FORM, "flat"):
            alt = get_law(ALTERNATIVE_FORM)
            alt_theta = _fit_once(alt, u, y, w, u_ref, sign, chance, bounded, noise=noise)
            alt_rss = float(np.sum((alt(u, alt_theta, u_ref, sign) - y) ** 2))
            alt_weight = _bic_weight(bic, _information(alt_rss, len(y), alt.n_params)[2])
            if active:
                alt_weight = max(alt_weight, ACTIVE_MIN_WEIGHT)
            alt_form, alt_params = ALTERNATIVE_FORM, dict(zip(alt.params, map(float, alt_theta)))
            alt_boot = self._bootstrap(alt, frame, u, y, se_eff, w, u_ref, sign, chance, bounded,
                                       alt_theta, samples)
        series = tuple(sorted(map(str, frame["series"].unique()))) if "series" in frame else ()
        task = str(frame["task"].iloc[0]) if "task" in frame.columns else None
        label_col = "size" if "size" in frame.columns else (
            "checkpoint_id" if "checkpoint_id" in frame.columns else None)
        labels = tuple(map(str, frame[label_col])) if label_col else ()
        if label_col == "size" and "step" in frame.columns and frame["size"].duplicated().any():
            labels = tuple(f"{a}@{b}" for a, b in zip(frame["size"], frame["step"]))
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
            boot_params=boot, alt_form=alt_form, alt_boot_params=alt_boot, alt_params=alt_params,
            alt_weight=float(alt_weight), interval=self.interval, seed=self.seed,
            bounds={k: (float(a), float(b)) for k, a, b in zip(law.params, lo_b, hi_b)},
            active_bounds=active, starts=len(law.starts(u, y, sign, chance, bounded, noise)),
            min_stderr=self.min_stderr, chi2=chi2, chi2_p=chi2_p, labels=labels,
            excluded=dict(excluded or {}))

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
                             starts=[theta], max_nfev=100, noise=float(np.median(se_eff)))

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
