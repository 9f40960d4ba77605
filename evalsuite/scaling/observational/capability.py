"""Observational scaling: the low-dimensional capability space and per-family compute efficiency.

Paper: Ruan, Maddison, Hashimoto, "Observational Scaling Laws and the Predictability of Language
Model Performance", NeurIPS 2024 (arXiv:2405.10938).

- Capability space (paper section 3.2): benchmark scores B (models x benchmarks, in [0, 1]) are
  approximated by a low-rank linear map of capability scores, B ≈ S·Vᵀ + mean; S are the first K
  principal components of the centred (not standardised) score matrix. Missing scores are imputed
  by iterative low-rank PCA (fill with column means, reconstruct at rank K, refill, repeat), with
  the singular values shrunk as in regularised iterative PCA (Josse & Husson 2012), fitted on the
  training models only. Explained-variance ratios are eigenvalues over the total variance of
  the completed, centred matrix. Signs: each component is oriented so that its loadings sum to a
  non-negative number, so PC1 grows with capability.
- Family efficiency (paper eq. 4, section 3.3): within a family, S_k ≈ β_k·log10(C) + α_k, with C
  the training compute 6·N·D. β is how efficiently the family turns compute into capability.
  Intervals are classical OLS t-intervals (few models per family make a bootstrap unreliable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .data import OBS_BENCHMARKS, ObsDataError

__all__ = ["CapabilityPCA", "FittedCapabilityPCA", "impute_low_rank", "impute_paper", "PAPER_PCA",
           "FamilyEfficiency",
           "FittedFamilyEfficiency", "FamilyLine"]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


def impute_low_rank(scores: np.ndarray, *, rank: int, regularized: bool = True,
                    max_iter: int = 5000, tol: float = 1e-10) -> tuple[np.ndarray, int]:
    """Iterative low-rank PCA imputation. Returns (completed matrix, iterations used).

    Fill missing entries with column means, then repeat: SVD of the centred completed matrix,
    reconstruct at rank ``rank``, refill the missing entries. Observed entries are kept; at
    convergence the missing ones equal the reconstruction of the completed matrix (a fixed point).

    ``regularized`` (default) shrinks the kept singular values as in regularised iterative PCA
    (Josse & Husson 2012, "Handling missing values in exploratory multivariate data analysis
    methods", J. SFdS 153(2); the missMDA ``imputePCA`` method): s_k -> (s_k² - n·σ²)/s_k with
    σ² = Σ_{j>rank} s_j² / (n·(B - rank)), the noise variance left outside the kept components.
    Without it, rank-3 EM overfits when few models miss a benchmark: on the 44 paper models below
    8.4e22 FLOPs it imputes HumanEval = -0.58 for falcon-rw-1b.
    """
    x = np.asarray(scores, dtype=float)
    mask = np.isnan(x)
    filled = np.where(mask, np.nanmean(x, axis=0), x)
    if not mask.any():
        return filled, 0
    n, nb = x.shape
    for it in range(1, max_iter + 1):
        mean = filled.mean(axis=0)
        u, s, vt = np.linalg.svd(filled - mean, full_matrices=False)
        sk = s[:rank]
        if regularized and nb > rank:
            sigma2 = float((s[rank:] ** 2).sum()) / (n * (nb - rank))
            sk = np.maximum(sk ** 2 - n * sigma2, 0.0) / np.where(sk > 0, sk, 1.0)
        recon = mean + (u[:, :rank] * sk) @ vt[:rank]
        new = np.where(mask, recon, x)
        delta = np.linalg.norm(new - filled) / max(np.linalg.norm(filled), 1e-300)
        filled = new
        if delta < tol:
            return filled, it
    return filled, max_iter


def impute_paper(scores: np.ndarray, *, max_iter: int = 1000) -> tuple[np.ndarray, int]:
    """The imputation of Ruan et al.'s public code (ryoungj/ObsScaling ``utils/data.py``
    ``pca_impute`` with its default settings), reimplemented: standardise each benchmark over
    its observed models (population sd), fill missing cells with 0 (the column mean), then
    ``max_iter`` times (their stopping test, allclose at 1e-4 over every cell, never holds on
    this data) reconstruct at rank 1 (centred PCA) and refill the missing cells; undo the
    standardisation and clip to [0, 1]. Observed cells are kept. Returns (completed, iterations).
    """
    x = np.asarray(scores, dtype=float)
    mask = np.isnan(x)
    if not mask.any():
        return x.copy(), 0
    mu = np.nanmean(x, axis=0)
    sd = np.nanstd(x, axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = np.where(mask, 0.0, (x - mu) / sd)
    for _ in range(max_iter):
        m = z.mean(axis=0)
        u, sv, vt = np.linalg.svd(z - m, full_matrices=False)
        recon = m + np.outer(u[:, 0] * sv[0], vt[0])
        z = np.where(mask, recon, z)
    completed = np.clip(z * sd + mu, 0.0, 1.0)
    return np.where(mask, completed, x), max_iter


#: the capability-space settings of the paper's code (``CapabilityPCA(**PAPER_PCA)``)
PAPER_PCA = {"n_components": 3, "imputation": "paper", "orientation": "max"}


@dataclass(frozen=True)
class FittedCapabilityPCA:
    """A fitted capability space. Immutable; ``transform`` places any model in it."""

    benchmarks: tuple[str, ...]
    mean: np.ndarray                  # (B,) column means of the completed training matrix
    components: np.ndarray            # (K, B) loadings, rows unit-norm, oriented
    explained_variance: np.ndarray    # (K,) eigenvalues (ddof=1)
    explained_variance_ratio: np.ndarray  # (K,)
    all_variance_ratio: np.ndarray    # (min(n, B),) ratios of all components
    models: tuple[str, ...]           # training models, in order
    train_scores: np.ndarray          # (n, K) PC scores of the training models
    completed: np.ndarray             # (n, B) training matrix with imputed entries
    n_imputed: int
    impute_iterations: int
    imputation: str = "regularized"
    orientation: str = "sum"

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, frame: pd.DataFrame, *, min_observed: int | None = None) -> pd.DataFrame:
        """PC scores of the models in ``frame`` (columns ``PC1``.. indexed by ``model``).

        Training models get their fitted scores. Other models are projected by least squares on
        their observed benchmarks (x_obs - mean_obs ≈ V_obsᵀ·s); a model needs at least
        ``min_observed`` (default K) observed benchmarks, else its scores are NaN and ``n_observed``
        says why.
        """
        k = self.n_components
        min_observed = k if min_observed is None else min_observed
        missing = [b for b in self.benchmarks if b not in frame.columns]
        x = np.column_stack([pd.to_numeric(frame[b], errors="coerce").to_numpy(float)
                             if b not in missing else np.full(len(frame), np.nan)
                             for b in self.benchmarks])
        out = np.full((len(frame), k), np.nan)
        nobs = np.zeros(len(frame), dtype=int)
        index = {m: i for i, m in enumerate(self.models)}
        for r, (model, row) in enumerate(zip(frame["model"], x)):
            obs = ~np.isnan(row)
            nobs[r] = int(obs.sum())
            if model in index:
                out[r] = self.train_scores[index[model]]
                continue
            if nobs[r] < min_observed:
                continue
            v = self.components[:, obs].T  # (n_obs, K)
            out[r] = np.linalg.lstsq(v, row[obs] - self.mean[obs], rcond=None)[0]
        res = pd.DataFrame(out, columns=[f"PC{i + 1}" for i in range(k)])
        res.insert(0, "model", frame["model"].to_numpy())
        res["n_observed"] = nobs
        return res

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "capability_pca",
            "benchmarks": list(self.benchmarks),
            "n_models": len(self.models),
            "n_components": self.n_components,
            "n_imputed": self.n_imputed,
            "impute_iterations": self.impute_iterations,
            "imputation": self.imputation, "orientation": self.orientation,
            "models": list(self.models),
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "all_variance_ratio": [float(v) for v in self.all_variance_ratio],
            "mean": dict(zip(self.benchmarks, map(float, self.mean))),
            "loadings": {f"PC{i + 1}": dict(zip(self.benchmarks, map(float, row)))
                         for i, row in enumerate(self.components)},
        }

    def report(self) -> str:
        lines = [f"Capability PCA: {len(self.models)} models x {len(self.benchmarks)} benchmarks, "
                 f"{self.n_imputed} scores imputed ({self.impute_iterations} iterations)"]
        lines.append("explained variance ratio: " + ", ".join(
            f"PC{i + 1} {v:.3f}" for i, v in enumerate(self.explained_variance_ratio))
            + f" (cumulative {self.explained_variance_ratio.sum():.3f})")
        width = max(len(b) for b in self.benchmarks)
        lines.append(" " * width + "  " + "  ".join(f"{f'PC{i + 1}':>7}" for i in range(self.n_components)))
        for j, b in enumerate(self.benchmarks):
            lines.append(b.ljust(width) + "  " + "  ".join(f"{self.components[i, j]:7.3f}"
                                                          for i in range(self.n_components)))
        return "\n".join(lines)

    def __repr__(self) -> str:  # arrays make the dataclass repr unreadable
        return (f"FittedCapabilityPCA(models={len(self.models)}, benchmarks={list(self.benchmarks)}, "
                f"evr={np.round(self.explained_variance_ratio, 4).tolist()})")


@dataclass(frozen=True, kw_only=True)
class CapabilityPCA:
    """PCA capability space (paper section 3.2). Keyword-only hyperparameters; ``fit`` validates.

    Args:
        n_components: K, the number of principal components kept (paper default 3).
        benchmarks: score columns; default the paper's eight.
        impute_rank: rank of the imputation model (default K).
        regularized: shrink singular values in the imputation (regularised iterative PCA,
            Josse & Husson 2012); default True.
        max_iter, tol: imputation stopping rule.
        imputation: ``regularized`` (default: regularised rank-K iterative PCA on the raw
            scores) or ``paper`` (the authors' code: ``impute_paper``, rank 1 on standardised
            scores, 1000 iterations, clipped to [0, 1]).
        orientation: sign of each component: ``sum`` (default: loadings sum >= 0) or ``max``
            (the largest-magnitude loading positive, which is what the authors' sklearn PCA
            returns on their data; ``sum`` flips PC3 on their 44-model emergent split).
    """

    n_components: int = 3
    benchmarks: Sequence[str] = OBS_BENCHMARKS
    impute_rank: int | None = None
    regularized: bool = True
    max_iter: int = 5000
    tol: float = 1e-10
    imputation: str = "regularized"
    orientation: str = "sum"


    def fit(self, frame: pd.DataFrame, *, source: str = "capability table") -> FittedCapabilityPCA:
        benchmarks = list(self.benchmarks)
        if "model" not in frame.columns:
            raise ObsDataError(f"{source}: no 'model' column; build the frame with standardize_frame")
        absent = [b for b in benchmarks if b not in frame.columns]
        if absent:
            raise ObsDataError(f"{source}: benchmark columns {absent} are absent; pass "
                               "benchmarks=... naming columns the table has, or map them")
        x = np.column_stack([pd.to_numeric(frame[b], errors="coerce").to_numpy(float)
                             for b in benchmarks])
        n, nb = x.shape
        if n < 2:
            raise ObsDataError(f"{source}: {n} model(s); the capability space needs at least "
                               "n_components + 1 models")
        k = int(self.n_components)
        if not 1 <= k <= min(n - 1, nb):
            raise ObsDataError(f"{source}: n_components={k} must be between 1 and "
                               f"min(models - 1, benchmarks) = {min(n - 1, nb)}")
        empty_cols = [b for b, c in zip(benchmarks, np.isnan(x).all(axis=0)) if c]
        if empty_cols:
            raise ObsDataError(f"{source}: benchmark columns {empty_cols} have no scores; drop them "
                               "from benchmarks=")
        nobs = (~np.isnan(x)).sum(axis=1)
        few = frame["model"][nobs < max(k, 1)].tolist()
        if few:
            raise ObsDataError(f"{source}: models {few[:5]} have fewer than {k} observed benchmark "
                               "scores; drop them before fitting")
        finite = x[~np.isnan(x)]
        if finite.size and (finite.min() < -0.5 or finite.max() > 1.5):
            raise ObsDataError(f"{source}: benchmark scores must be fractions in [0, 1] (found "
                               f"{finite.min():.3g}..{finite.max():.3g}); divide percentages by 100")
        rank = k if self.impute_rank is None else int(self.impute_rank)
        if self.imputation not in ("regularized", "paper"):
            raise ObsDataError(f"imputation={self.imputation!r}: use 'regularized' or 'paper'")
        if self.orientation not in ("sum", "max"):
            raise ObsDataError(f"orientation={self.orientation!r}: use 'sum' or 'max'")
        if self.imputation == "paper":
            completed, iters = impute_paper(x)
        else:
            completed, iters = impute_low_rank(x, rank=rank, regularized=self.regularized,
                                               max_iter=self.max_iter, tol=self.tol)
        imputed = completed[np.isnan(x)]
        if imputed.size and (imputed.min() < -0.5 or imputed.max() > 1.5):
            frac = {b: round(float(f), 2) for b, f in zip(benchmarks, np.isnan(x).mean(axis=0)) if f}
            raise ObsDataError(
                f"{source}: low-rank imputation diverged (imputed scores "
                f"{imputed.min():.3g}..{imputed.max():.3g}, outside [0, 1]; missing fractions "
                f"{frac}). Drop the sparsely observed benchmarks from benchmarks=, or lower "
                "impute_rank")
        mean = completed.mean(axis=0)
        centred = completed - mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        eig = s ** 2 / (n - 1)
        comps = vt[:k].copy()
        for i in range(k):  # orientation: PC1 grows with capability
            flip = (comps[i].sum() < 0 if self.orientation == "sum"
                    else comps[i][np.argmax(np.abs(comps[i]))] < 0)
            if flip:
                comps[i] = -comps[i]
        return FittedCapabilityPCA(
            benchmarks=tuple(benchmarks), mean=_frozen(mean), components=_frozen(comps),
            explained_variance=_frozen(eig[:k]), explained_variance_ratio=_frozen(eig[:k] / eig.sum()),
            all_variance_ratio=_frozen(eig / eig.sum()), models=tuple(frame["model"].astype(str)),
            train_scores=_frozen(centred @ comps.T), completed=_frozen(completed),
            n_imputed=int(np.isnan(x).sum()), impute_iterations=int(iters),
            imputation=self.imputation, orientation=self.orientation)


@dataclass(frozen=True)
class FamilyLine:
    """One family's fit of one PC against log10 FLOPs: pc ≈ slope·log10(C) + intercept."""

    family: str
    component: str
    n_models: int
    slope: float
    intercept: float
    r2: float
    slope_lower: float
    slope_upper: float
    intercept_lower: float
    intercept_upper: float
    log10_flops_min: float
    log10_flops_max: float

    def predict(self, log10_flops: float) -> float:
        return self.slope * log10_flops + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FittedFamilyEfficiency:
    """Per-family linear maps from log10 FLOPs to each PC. ``lines`` is (family, component)-keyed."""

    lines: tuple[FamilyLine, ...]
    level: float
    skipped: tuple[tuple[str, str], ...]  # (family, reason)

    def line(self, family: str, component: str = "PC1") -> FamilyLine:
        for ln in self.lines:
            if ln.family == family and ln.component == component:
                return ln
        known = sorted({ln.family for ln in self.lines})
        raise KeyError(f"no fitted line for family {family!r} ({component}); fitted: {known}")

    def families(self) -> list[str]:
        return sorted({ln.family for ln in self.lines})

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([ln.to_dict() for ln in self.lines])

    def summary(self) -> dict[str, Any]:
        return {"kind": "family_efficiency", "level": self.level,
                "lines": [ln.to_dict() for ln in self.lines],
                "skipped": [{"family": f, "reason": r} for f, r in self.skipped]}

    def report(self) -> str:
        lines = [f"Family efficiency: PC ≈ slope·log10(FLOPs) + intercept, {self.level:.0%} t-intervals"]
        for ln in sorted(self.lines, key=lambda l: (l.component, -l.slope)):
            lines.append(f"{ln.component} {ln.family:<16} n={ln.n_models:<2} slope {ln.slope:7.3f} "
                         f"[{ln.slope_lower:7.3f}, {ln.slope_upper:7.3f}]  intercept "
                         f"{ln.intercept:8.3f}  R² {ln.r2:.3f}")
        for f, r in self.skipped:
            lines.append(f"skipped {f}: {r}")
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class FamilyEfficiency:
    """Fit PC_k = slope·log10(FLOPs) + intercept per family (paper eq. 4).

    Args:
        min_models: families with fewer models with known FLOPs are skipped (default 2; intervals
            need 3 and are NaN below that).
        level: confidence level of the t-intervals.
    """

    min_models: int = 2
    level: float = 0.9


    def fit(self, scores: pd.DataFrame, frame: pd.DataFrame, *,
            source: str = "capability table") -> FittedFamilyEfficiency:
        """``scores``: output of ``FittedCapabilityPCA.transform``; ``frame``: canonical frame
        (for ``family`` and ``compute_flops``), joined on ``model``."""
        if not 0 < self.level < 1:
            raise ObsDataError(f"level={self.level} must be in (0, 1)")
        pcs = [c for c in scores.columns if c.startswith("PC")]
        merged = scores.merge(frame[["model", "family", "compute_flops"]], on="model", how="inner")
        if merged.empty:
            raise ObsDataError(f"{source}: no model in the scores matches the frame's 'model' column")
        lines, skipped = [], []
        for family, g in merged.groupby("family", sort=True):
            g = g.dropna(subset=["compute_flops", *pcs])
            g = g[g["compute_flops"] > 0]
            if len(g) < self.min_models:
                skipped.append((str(family), f"{len(g)} model(s) with known FLOPs"))
                continue
            x = np.log10(g["compute_flops"].to_numpy(float))
            if np.ptp(x) == 0:
                skipped.append((str(family), "all models have the same FLOPs"))
                continue
            for pc in pcs:
                lines.append(_ols_line(str(family), pc, x, g[pc].to_numpy(float), self.level))
        return FittedFamilyEfficiency(lines=tuple(lines), level=self.level, skipped=tuple(skipped))


def _ols_line(family: str, component: str, x: np.ndarray, y: np.ndarray, level: float) -> FamilyLine:
    n = len(x)
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    resid = y - (slope * x + intercept)
    sst = ((y - ym) ** 2).sum()
    r2 = float(1 - (resid ** 2).sum() / sst) if sst > 0 else float("nan")
    if n >= 3:
        s2 = (resid ** 2).sum() / (n - 2)
        t = stats.t.ppf(0.5 + level / 2, n - 2)
        se_b = np.sqrt(s2 / sxx)
        se_a = np.sqrt(s2 * (1 / n + xm ** 2 / sxx))
        sl, su = slope - t * se_b, slope + t * se_b
        il, iu = intercept - t * se_a, intercept + t * se_a
    else:
        sl = su = il = iu = float("nan")
    return FamilyLine(family=family, component=component, n_models=n, slope=slope,
                      intercept=intercept, r2=r2, slope_lower=float(sl), slope_upper=float(su),
                      intercept_lower=float(il), intercept_upper=float(iu),
                      log10_flops_min=float(x.min()), log10_flops_max=float(x.max()))
