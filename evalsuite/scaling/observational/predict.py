"""Observational scaling: downstream predictions from the capability space, with baselines.

Paper: Ruan, Maddison, Hashimoto, "Observational Scaling Laws and the Predictability of Language
Model Performance", NeurIPS 2024 (arXiv:2405.10938), sections 3.3-4.

- Target model (paper eq. 5 / issue 7): y = (1 - b)·σ(a + wᵀ·x) + b, x the K PC scores; the floor
  b is bounded to [0, chance] (fixed at 0 when chance is 0). Fitted by scipy's least_squares with a
  robust soft-L1 loss from several starting points (one from a logit-linear OLS fit, the others
  random), keeping the lowest robust cost. Features are standardised internally with the training
  mean and spread; the reported weights are on the raw scale.
- Baselines: the same sigmoid in log10 FLOPs alone and in log10 parameters alone.
- Equivalent compute (paper section 3.3): the log10 FLOPs at which the reference family's line
  PC(C) = slope·log10(C) + intercept reaches the same linear predictor a + wᵀ·x, i.e. the same
  fitted score (σ is monotone): log10 C* = wᵀ(x - intercept) / wᵀ·slope.
- Uncertainty: a nonparametric bootstrap over training models refits the sigmoid (the PCA and
  the standardisation are held fixed) and gives percentile intervals for the mean; adding a
  resampled training residual to each bootstrap prediction gives the interval for a new
  observation (the one to compare with a held-out model's score).
- Extrapolation: a prediction extrapolates when any feature lies outside the training range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.special import expit

from ...stats import bootstrap_refits, percentile_interval
from .capability import CapabilityPCA, FamilyEfficiency, FittedCapabilityPCA
from .data import ObsDataError

__all__ = ["SigmoidRegression", "FittedSigmoid", "ObservationalPredictor",
           "FittedObservationalPredictor", "BacktestResult", "backtest_target", "split_by_flops",
           "split_by_rank", "METHODS", "BacktestTable", "backtest_targets"]

#: Feature sets: the PC model and the two baselines.
METHODS: tuple[str, ...] = ("pc", "log_flops", "log_params")


def _sigmoid_curve(theta: np.ndarray, z: np.ndarray, floor_free: bool) -> np.ndarray:
    a, w = theta[0], theta[1:1 + z.shape[1]]
    b = theta[-1] if floor_free else 0.0
    return (1.0 - b) * expit(a + z @ w) + b


@dataclass(frozen=True)
class FittedSigmoid:
    """y = (1 - b)·σ(a + wᵀ·x) + b fitted on features x. Immutable."""

    feature_names: tuple[str, ...]
    intercept: float                 # a on the raw feature scale
    weights: np.ndarray              # w on the raw feature scale
    floor: float                     # b
    chance: float
    x_mean: np.ndarray
    x_scale: np.ndarray
    x_min: np.ndarray
    x_max: np.ndarray
    theta: np.ndarray                # (a, w, [b]) on the standardised scale
    boot_theta: np.ndarray           # (B, p); B = 0 without bootstrap
    residuals: np.ndarray            # training residuals y - fit
    n_train: int
    train_mse: float
    seed: int
    y_range: tuple[float, float] = (0.0, 1.0)
    #: how it was fitted (loss, scale, starts, bounds), for the fit report
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def floor_free(self) -> bool:
        return self.theta.shape[0] == len(self.feature_names) + 2

    def boot_weights(self) -> np.ndarray:
        """Bootstrap weights w on the raw feature scale, shape (B, d)."""
        d = len(self.feature_names)
        return self.boot_theta[:, 1:1 + d] / self.x_scale if len(self.boot_theta) else np.empty((0, d))

    def linear_predictor(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(x, float) @ self.weights

    def predict(self, x: np.ndarray, *, level: float = 0.9) -> pd.DataFrame:
        """Mean, bootstrap intervals (mean and new observation) and the extrapolation flag.

        Rows with a NaN feature get NaN predictions."""
        x = np.atleast_2d(np.asarray(x, float))
        ok = ~np.isnan(x).any(axis=1)
        z = (np.where(ok[:, None], x, 0.0) - self.x_mean) / self.x_scale
        mean = _sigmoid_curve(self.theta, z, self.floor_free)
        out = pd.DataFrame({"mean": mean})
        if self.boot_theta.shape[0]:
            boots = np.stack([_sigmoid_curve(t, z, self.floor_free) for t in self.boot_theta])
            rng = np.random.default_rng(self.seed + 1)
            noisy = boots + rng.choice(self.residuals, size=boots.shape, replace=True)
            # a new score cannot leave the scale: [min(0, lowest training y), max(1, highest)]
            noisy = np.clip(noisy, self.y_range[0], self.y_range[1])
            out["lower"], out["upper"] = percentile_interval(boots, level)
            out["obs_lower"], out["obs_upper"] = percentile_interval(noisy, level)
        else:
            for c in ("lower", "upper", "obs_lower", "obs_upper"):
                out[c] = np.nan
        out["extrapolated"] = ((x < self.x_min - 1e-12) | (x > self.x_max + 1e-12)).any(axis=1)
        out.loc[~ok, ["mean", "lower", "upper", "obs_lower", "obs_upper"]] = np.nan
        out.loc[~ok, "extrapolated"] = True
        return out

    def summary(self) -> dict[str, Any]:
        return {"kind": "sigmoid", "features": list(self.feature_names),
                "intercept": float(self.intercept),
                "weights": dict(zip(self.feature_names, map(float, self.weights))),
                "floor": float(self.floor), "chance": float(self.chance), "n_train": self.n_train,
                "train_mse": float(self.train_mse), "n_bootstrap": int(self.boot_theta.shape[0]),
                "feature_min": dict(zip(self.feature_names, map(float, self.x_min))),
                "feature_max": dict(zip(self.feature_names, map(float, self.x_max))),
                "seed": self.seed, "fit": dict(self.settings)}

    def report(self) -> str:
        terms = " + ".join(f"{w:.3f}·{n}" for n, w in zip(self.feature_names, self.weights))
        return (f"y = (1 - {self.floor:.3f})·σ({self.intercept:.3f} + {terms}) + {self.floor:.3f}; "
                f"n={self.n_train}, train MSE {self.train_mse:.4g}, "
                f"{self.boot_theta.shape[0]} bootstrap refits")

    def __repr__(self) -> str:
        return f"FittedSigmoid({self.report()})"


@dataclass(frozen=True, kw_only=True)
class SigmoidRegression:
    """Robust sigmoid regression with a bounded floor (paper eq. 5).

    Args:
        chance: upper bound of the floor b (the task's chance level on the target's scale).
        loss, robust_scale: scipy least_squares ``loss`` and ``f_scale`` (residual size where the
            soft-L1 loss turns from quadratic to linear).
        n_starts: starting points (1 data-driven, the rest random).
        weight_bound: bound on |a| and |w| on the standardised feature scale.
        n_bootstrap: bootstrap refits over training models (0: no intervals).
        seed: random seed of starts and bootstrap.
    """

    chance: float = 0.0
    loss: str = "soft_l1"
    robust_scale: float = 0.1
    n_starts: int = 3
    weight_bound: float = 30.0
    n_bootstrap: int = 200
    seed: int = 0

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: Sequence[str],
            source: str = "target") -> FittedSigmoid:
        x = np.atleast_2d(np.asarray(x, float))
        y = np.asarray(y, float)
        if x.shape[0] != y.shape[0]:
            raise ObsDataError(f"{source}: {x.shape[0]} feature rows but {y.shape[0]} targets")
        if np.isnan(x).any() or np.isnan(y).any():
            raise ObsDataError(f"{source}: NaN in training features or targets; drop those models")
        n, d = x.shape
        if n < d + 3:
            raise ObsDataError(f"{source}: {n} training models for {d} feature(s); need at least "
                               f"{d + 3}. Loosen the split or use fewer components")
        if not 0 <= self.chance < 1:
            raise ObsDataError(f"{source}: chance={self.chance} must be in [0, 1)")
        x_mean = x.mean(axis=0)
        x_scale = x.std(axis=0)
        x_scale = np.where(x_scale > 0, x_scale, 1.0)
        z = (x - x_mean) / x_scale
        rng = np.random.default_rng(self.seed)
        theta = self._fit_z(z, y, rng, n_starts=self.n_starts)
        boots = bootstrap_refits(lambda idx: self._fit_z(z[idx], y[idx], rng, n_starts=1, init=theta),
                                 n, self.n_bootstrap, rng)
        boot_theta = np.array(boots).reshape(len(boots), theta.shape[0])
        floor_free = self.chance > 0
        fit = _sigmoid_curve(theta, z, floor_free)
        a_s, w_s = theta[0], theta[1:1 + d]
        weights = w_s / x_scale
        intercept = a_s - float((w_s * x_mean / x_scale).sum())
        frz = lambda a: np.array(a, float, copy=True)  # noqa: E731
        res = dict(feature_names=tuple(feature_names), intercept=float(intercept),
                   weights=frz(weights), floor=float(theta[-1]) if floor_free else 0.0,
                   chance=float(self.chance), x_mean=frz(x_mean), x_scale=frz(x_scale),
                   x_min=frz(x.min(axis=0)), x_max=frz(x.max(axis=0)), theta=frz(theta),
                   boot_theta=frz(boot_theta), residuals=frz(y - fit), n_train=n,
                   train_mse=float(np.mean((y - fit) ** 2)), seed=self.seed,
                   y_range=(min(0.0, float(y.min())), max(1.0, float(y.max()))),
                   settings={"loss": self.loss, "f_scale": self.robust_scale,
                             "optimizer": "scipy.optimize.least_squares (bounded)",
                             "starts": self.n_starts, "features": "standardised",
                             "weight_bound": self.weight_bound,
                             "floor_bounds": [0.0, float(self.chance)] if floor_free else [0.0, 0.0],
                             "bootstrap": "pairs over training models, PCA held fixed"})
        for v in res.values():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
        return FittedSigmoid(**res)

    def _fit_z(self, z: np.ndarray, y: np.ndarray, rng, *, n_starts: int,
               init: np.ndarray | None = None) -> np.ndarray:
        d = z.shape[1]
        floor_free = self.chance > 0
        wb = self.weight_bound
        lo = np.r_[np.full(d + 1, -wb), [0.0] if floor_free else []]
        hi = np.r_[np.full(d + 1, wb), [self.chance] if floor_free else []]
        starts = [] if init is None else [init]
        if init is None:
            b0 = self.chance / 2 if floor_free else 0.0
            yn = np.clip((y - b0) / (1 - b0), 0.02, 0.98)
            design = np.column_stack([np.ones(len(y)), z])
            coef = np.linalg.solve(design.T @ design + 1e-3 * np.eye(d + 1),
                                   design.T @ np.log(yn / (1 - yn)))
            starts.append(np.r_[coef, [b0] if floor_free else []])
            for _ in range(max(n_starts - 1, 0)):
                starts.append(np.r_[rng.normal(0, 2, d + 1),
                                    [rng.uniform(0, self.chance)] if floor_free else []])
        best, best_cost = None, np.inf
        for s in starts:
            s = np.clip(s, lo + 1e-9, hi - 1e-9)
            r = least_squares(lambda t: _sigmoid_curve(t, z, floor_free) - y, s, bounds=(lo, hi),
                              jac=lambda t: _sigmoid_jac(t, z, floor_free),
                              loss=self.loss, f_scale=self.robust_scale, method="trf",
                              max_nfev=2000)
            if r.cost < best_cost:
                best, best_cost = r.x, r.cost
        return best


def _sigmoid_jac(theta: np.ndarray, z: np.ndarray, floor_free: bool) -> np.ndarray:
    """d/dθ of (1 - b)·σ(a + zᵀw) + b: columns a, w..., [b]."""
    d = z.shape[1]
    sig = expit(theta[0] + z @ theta[1:1 + d])
    b = theta[-1] if floor_free else 0.0
    g = (1.0 - b) * sig * (1.0 - sig)
    cols = [g[:, None], g[:, None] * z]
    if floor_free:
        cols.append((1.0 - sig)[:, None])
    return np.hstack(cols)


def _features(method: str, scores: pd.DataFrame, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Feature matrix aligned with ``frame['model']`` for one method."""
    if method == "pc":
        cols = [c for c in scores.columns if c.startswith("PC")]
        s = scores.set_index("model").reindex(frame["model"])
        return s[cols].to_numpy(float), cols
    if method == "log_flops":
        v = frame["compute_flops"].to_numpy(float)
        return np.log10(np.where(v > 0, v, np.nan))[:, None], ["log10_flops"]
    if method == "log_params":
        v = frame["n_params"].to_numpy(float)
        return np.log10(np.where(v > 0, v, np.nan))[:, None], ["log10_params"]
    raise ObsDataError(f"unknown method {method!r}; choose from {list(METHODS)}")


@dataclass(frozen=True)
class FittedObservationalPredictor:
    """Capability space + sigmoid (+ reference-family line for equivalent compute). Immutable."""

    method: str
    target: str
    pca: FittedCapabilityPCA | None
    sigmoid: FittedSigmoid
    train_models: tuple[str, ...]
    reference_family: str | None
    reference_slope: np.ndarray | None      # (K,) per-PC slope of the reference family
    reference_intercept: np.ndarray | None  # (K,)
    reference_range: tuple[float, float] | None  # log10 FLOPs range of the reference family

    def predict(self, frame: pd.DataFrame, *, level: float = 0.9) -> pd.DataFrame:
        """Per model: features, mean, intervals, extrapolated, and (PC model) equivalent compute."""
        scores = self.pca.transform(frame) if self.pca is not None else None
        x, names = _features(self.method, scores, frame)
        pred = self.sigmoid.predict(x, level=level)
        out = pd.DataFrame({"model": frame["model"].to_numpy()})
        for i, n in enumerate(names):
            out[n] = x[:, i]
        out = pd.concat([out, pred], axis=1)
        if self.method == "pc" and self.reference_slope is not None:
            w = self.sigmoid.weights
            denom = float(w @ self.reference_slope)
            eq = (x @ w - float(w @ self.reference_intercept)) / denom if denom != 0 else np.full(len(x), np.nan)
            out["equivalent_log10_flops"] = eq
            lo, hi = self.reference_range
            out["equivalent_extrapolated"] = ~((eq >= lo) & (eq <= hi))
            boots = self.sigmoid.boot_weights()
            if len(boots):
                d = boots @ self.reference_slope                       # (B,)
                num = x @ boots.T - (boots @ self.reference_intercept)  # (n, B)
                with np.errstate(divide="ignore", invalid="ignore"):
                    eqb = np.where(d != 0, num / d, np.nan)
                alpha = (1 - level) / 2
                out["equivalent_lower"] = np.nanquantile(eqb, alpha, axis=1)
                out["equivalent_upper"] = np.nanquantile(eqb, 1 - alpha, axis=1)
        return out

    def summary(self) -> dict[str, Any]:
        d = {"kind": "observational_predictor", "method": self.method, "target": self.target,
             "n_train": len(self.train_models), "train_models": list(self.train_models),
             "sigmoid": self.sigmoid.summary(), "reference_family": self.reference_family}
        if self.reference_slope is not None:
            d["reference_line"] = {"slope": self.reference_slope.tolist(),
                                   "intercept": self.reference_intercept.tolist(),
                                   "log10_flops_range": list(self.reference_range)}
        if self.pca is not None:
            d["pca"] = self.pca.summary()
            d["capability_space_models"] = list(self.pca.models)
        return d

    def report(self) -> str:
        lines = [f"{self.target}: {self.method} model on {len(self.train_models)} training models",
                 "  " + self.sigmoid.report()]
        if self.reference_family and self.reference_slope is not None:
            lines.append(f"  equivalent compute against {self.reference_family}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"FittedObservationalPredictor({self.method}, {self.target}, n={len(self.train_models)})"


@dataclass(frozen=True, kw_only=True)
class ObservationalPredictor:
    """Fit a target from PC scores (``method='pc'``) or a baseline (``log_flops``, ``log_params``).

    The PCA is fitted on the training models only, unless ``capability_space`` passes a space
    fitted elsewhere (e.g. on the 77 base models, to place instruct models in it). The reference
    family's line (for equivalent compute) is fitted on all its models in ``frame`` that have
    FLOPs (or, with no such family in ``frame``, in ``reference_frame``): it maps compute to
    capability and never sees the target.
    """

    method: str = "pc"
    n_components: int = 3
    benchmarks: Sequence[str] | None = None
    reference_family: str | None = "Llama-2"
    capability_space: FittedCapabilityPCA | None = None
    reference_frame: pd.DataFrame | None = None
    regression: SigmoidRegression = dataclasses.field(default_factory=SigmoidRegression)

    def fit(self, frame: pd.DataFrame, target: pd.Series, train_models: Sequence[str], *,
            target_name: str | None = None) -> FittedObservationalPredictor:
        if self.method not in METHODS:
            raise ObsDataError(f"method={self.method!r}; choose from {list(METHODS)}")
        name = target_name or str(getattr(target, "name", "target"))
        train_models = [m for m in train_models if m in set(frame["model"])]
        train = frame[frame["model"].isin(train_models)].reset_index(drop=True)
        y = target.reindex(train["model"]).to_numpy(float)
        pca = None
        scores = None
        if self.method == "pc":
            if self.capability_space is not None:
                pca = self.capability_space
            else:
                kw = {} if self.benchmarks is None else {"benchmarks": self.benchmarks}
                pca = CapabilityPCA(n_components=self.n_components, **kw).fit(
                    train, source=f"capability scores of the training models for {name}")
            scores = pca.transform(train)
        x, names = _features(self.method, scores, train)
        ok = ~np.isnan(x).any(axis=1) & ~np.isnan(y)
        sig = self.regression.fit(x[ok], y[ok], feature_names=names, source=name)
        ref = (None, None, None)
        if pca is not None and self.reference_family:
            ref = _reference_line(pca, frame, self.reference_family)
            if ref[0] is None and self.reference_frame is not None:
                ref = _reference_line(pca, self.reference_frame, self.reference_family)
        return FittedObservationalPredictor(
            method=self.method, target=name, pca=pca, sigmoid=sig,
            train_models=tuple(train["model"][ok]), reference_family=self.reference_family,
            reference_slope=ref[0], reference_intercept=ref[1], reference_range=ref[2])


def _reference_line(pca: FittedCapabilityPCA, frame: pd.DataFrame, family: str):
    fam = frame[frame["family"] == family]
    if fam["compute_flops"].notna().sum() < 2:
        return None, None, None
    scores = pca.transform(fam)
    eff = FamilyEfficiency(min_models=2).fit(scores, fam)
    comps = [f"PC{i + 1}" for i in range(pca.n_components)]
    lines = [eff.line(family, c) for c in comps]
    slope = np.array([ln.slope for ln in lines])
    inter = np.array([ln.intercept for ln in lines])
    return slope, inter, (lines[0].log10_flops_min, lines[0].log10_flops_max)


# ---- holdout splits -----------------------------------------------------------------------

def split_by_flops(frame: pd.DataFrame, cutoff_flops: float) -> tuple[list[str], list[str]]:
    """(train, test): train = FLOPs <= cutoff; test = above it or unknown (paper section 4)."""
    c = frame["compute_flops"].to_numpy(float)
    train = frame["model"][c <= cutoff_flops].tolist()
    test = frame["model"][~(c <= cutoff_flops)].tolist()
    return train, test


def split_by_rank(target: pd.Series, top_fraction: float) -> tuple[list[str], list[str]]:
    """(train, test): test = the top ``top_fraction`` of models by the target (paper section 4)."""
    if not 0 < top_fraction < 1:
        raise ObsDataError(f"top_fraction={top_fraction} must be in (0, 1)")
    t = target.dropna().sort_values(ascending=False)
    n_test = max(1, int(round(top_fraction * len(t))))
    return t.index[n_test:].tolist(), t.index[:n_test].tolist()


# ---- backtests ----------------------------------------------------------------------------

@dataclass(frozen=True)
class BacktestResult:
    """Train/test MSE of the PC model and the baselines on one target and split. Immutable."""

    target: str
    split: str
    chance: float
    metrics: tuple[Mapping[str, Any], ...]   # one per method
    predictions: pd.DataFrame                # model, family, role, y, pred_<method>, intervals
    level: float

    def metric(self, method: str, key: str) -> float:
        for m in self.metrics:
            if m["method"] == method:
                return m[key]
        raise KeyError(method)

    def summary(self) -> dict[str, Any]:
        preds = self.predictions.replace({np.nan: None}).to_dict(orient="records")
        return {"kind": "backtest", "target": self.target, "split": self.split,
                "chance": self.chance, "level": self.level,
                "metrics": [dict(m) for m in self.metrics], "predictions": preds}

    def report(self) -> str:
        lines = [f"{self.target} ({self.split}):"]
        for m in self.metrics:
            lines.append(f"  {m['method']:<10} train MSE {m['train_mse']:.4g} (n={m['n_train']})  "
                         f"test MSE {m['test_mse']:.4g} (n={m['n_test']})  common-test MSE "
                         f"{m['test_mse_common']:.4g} (n={m['n_common']})")
        return "\n".join(lines)


def backtest_target(frame: pd.DataFrame, target: pd.Series, train_models: Sequence[str],
                    test_models: Sequence[str], *, split: str, chance: float = 0.0,
                    methods: Sequence[str] = METHODS, n_components: int = 3,
                    benchmarks: Sequence[str] | None = None, reference_family: str | None = "Llama-2",
                    n_bootstrap: int = 0, level: float = 0.9, seed: int = 0,
                    robust_scale: float = 0.1,
                    capability_space: FittedCapabilityPCA | None = None,
                    reference_frame: pd.DataFrame | None = None) -> BacktestResult:
    """Fit each method on ``train_models`` and score it on ``test_models``.

    The capability space (PC model) is fitted on every training model in ``frame`` (benchmark
    scores only; one space per split, whatever the target), the sigmoid on the training models
    that have a target score. Test models need a target score.

    ``target`` is indexed by model and already on the fitting scale (see normalize_target).
    ``test_mse_common`` is over the test models every method can predict (known FLOPs and size),
    the fair comparison; ``test_mse`` is over all test models the method can predict.
    """
    target = target.dropna()
    known = set(target.index)
    frame = frame.reset_index(drop=True)
    # the capability space is fitted on every training model (benchmarks only, no target);
    # the sigmoid on the training models that have a target score
    space_models = [m for m in train_models if m in set(frame["model"])]
    train_models = [m for m in space_models if m in known]
    test_models = [m for m in test_models if m in known and m not in set(space_models)]
    if not test_models:
        raise ObsDataError(f"{target.name}: no test model with a target score for split {split}")
    if len(train_models) < 5:
        raise ObsDataError(f"{target.name}: {len(train_models)} training model(s) with a target "
                           f"score for split {split}; loosen the split (e.g. a higher FLOPs cutoff)")
    reg = SigmoidRegression(chance=chance, n_bootstrap=n_bootstrap, seed=seed,
                            robust_scale=robust_scale)
    rows = frame[frame["model"].isin(train_models + test_models)].reset_index(drop=True)
    pred = pd.DataFrame({"model": rows["model"], "family": rows["family"],
                         "role": np.where(rows["model"].isin(test_models), "test", "train"),
                         "y": target.reindex(rows["model"]).to_numpy(float)})
    per_method = {}
    for method in methods:
        est = ObservationalPredictor(method=method, n_components=n_components,
                                     benchmarks=benchmarks, reference_family=reference_family,
                                     capability_space=capability_space,
                                     reference_frame=reference_frame, regression=reg)
        fitted = est.fit(frame, target, space_models, target_name=str(target.name))
        p = fitted.predict(rows, level=level)
        per_method[method] = (fitted, p)
        pred[f"pred_{method}"] = p["mean"].to_numpy()
        for c in ("lower", "upper", "obs_lower", "obs_upper", "extrapolated"):
            if method == "pc" or n_bootstrap > 0 or c == "extrapolated":
                pred[f"{method}_{c}"] = p[c].to_numpy()
        if method == "pc":
            for c in ("equivalent_log10_flops", "equivalent_lower", "equivalent_upper"):
                if c in p:
                    pred[c] = p[c].to_numpy()
    is_test = pred["role"] == "test"
    common = is_test & pred[[f"pred_{m}" for m in methods]].notna().all(axis=1)
    metrics = []
    for method in methods:
        fitted, _ = per_method[method]
        e2 = (pred[f"pred_{method}"] - pred["y"]) ** 2
        te = is_test & pred[f"pred_{method}"].notna()
        metrics.append({"method": method, "n_train": fitted.sigmoid.n_train,
                        "train_mse": fitted.sigmoid.train_mse,
                        "n_test": int(te.sum()), "test_mse": float(e2[te].mean()) if te.any() else float("nan"),
                        "n_common": int(common.sum()),
                        "test_mse_common": float(e2[common].mean()) if common.any() else float("nan")})
        if method == "pc" and n_bootstrap > 0:
            t = pred[te]
            metrics[-1]["coverage_obs"] = float(((t["y"] >= t["pc_obs_lower"])
                                                 & (t["y"] <= t["pc_obs_upper"])).mean())
            metrics[-1]["coverage_mean"] = float(((t["y"] >= t["pc_lower"])
                                                  & (t["y"] <= t["pc_upper"])).mean())
            metrics[-1]["n_extrapolated"] = int(t["pc_extrapolated"].sum())
    return BacktestResult(target=str(target.name), split=split, chance=float(chance),
                          metrics=tuple(metrics), predictions=pred, level=level)


@dataclass(frozen=True)
class BacktestTable:
    """Backtests of several targets on one split: the PC model against the baselines."""

    results: tuple[BacktestResult, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per target. ``mse_<method>`` are over the common test models (fair
        comparison); ``pc_mse_all`` is the PC model over every test model it can place."""
        rows = []
        for r in self.results:
            m = {d["method"]: d for d in r.metrics}
            row = {"target": r.target, "split": r.split, "n_train": m["pc"]["n_train"],
                   "n_test": m["pc"]["n_test"], "n_common": m["pc"]["n_common"],
                   "pc_mse_all": m["pc"]["test_mse"]}
            for meth in m:
                row[f"mse_{meth}"] = m[meth]["test_mse_common"]
            for meth in m:
                row[f"train_mse_{meth}"] = m[meth]["train_mse"]
            if "log_flops" in m:
                a, b = row["mse_pc"], row["mse_log_flops"]
                row["pc_beats_log_flops"] = (bool(a < b) if np.isfinite(a) and np.isfinite(b)
                                             else None)
            for k in ("coverage_obs", "coverage_mean", "n_extrapolated"):
                if k in m["pc"]:
                    row[k] = m["pc"][k]
            rows.append(row)
        return pd.DataFrame(rows)

    def wins(self) -> tuple[int, int]:
        """(targets where the PC model beats log-FLOPs, targets where both could be compared)."""
        f = self.to_frame()
        known = f["pc_beats_log_flops"].dropna()
        return int(known.astype(bool).sum()), int(len(known))

    def summary(self) -> dict[str, Any]:
        w, n = self.wins()
        return {"kind": "backtest_table", "pc_beats_log_flops": w, "comparable_targets": n,
                "rows": self.to_frame().replace({np.nan: None}).to_dict(orient="records"),
                "results": [r.summary() for r in self.results]}

    def report(self) -> str:
        w, n = self.wins()
        f = self.to_frame()
        lines = [f"PC model beats the log-FLOPs baseline on {w} of {n} comparable targets"]
        for _, r in f.iterrows():
            lines.append(f"  {r['target']:<34} {r['split']:<18} n={r['n_train']}/{r['n_common']}  "
                         f"PC {r['mse_pc']:.4g}  logFLOPs {r.get('mse_log_flops', float('nan')):.4g}  "
                         f"logN {r.get('mse_log_params', float('nan')):.4g}")
        return "\n".join(lines)


def backtest_targets(frame: pd.DataFrame, targets: Mapping[str, tuple[pd.Series, float]],
                     train_models: Sequence[str], test_models: Sequence[str], *, split: str,
                     **kwargs: Any) -> BacktestTable:
    """:func:`backtest_target` over ``targets`` (name -> (values indexed by model, chance))."""
    results = []
    for name, (values, chance) in targets.items():
        results.append(backtest_target(frame, values.rename(name), train_models, test_models,
                                       split=split, chance=chance, **kwargs))
    return BacktestTable(results=tuple(results))
