"""Observational scaling: which families to evaluate, and placing our own models in the space.

Paper: Ruan, Maddison, Hashimoto, "Observational Scaling Laws and the Predictability of Language
Model Performance", NeurIPS 2024 (arXiv:2405.10938), section 5 (model subset selection).

V-optimality (classical optimal design; the paper's criterion for choosing models): for a linear
model y ≈ xᵀβ with x = (1, PC1..PCK), the variance of the prediction at a point x_t from the
evaluated set S is σ²·x_tᵀ(X_SᵀX_S)⁻¹x_t. A V-optimal S minimises its mean over the target
points: V(S) = mean_t x_tᵀ(X_SᵀX_S)⁻¹x_t = trace((X_SᵀX_S)⁻¹·M), M = mean_t x_t x_tᵀ. Here S is a
union of whole families (one evaluates families, not single models), its size is capped by a
budget of models, and the targets are the most capable models (PC1 above a quantile), which are
never candidates themselves. The sigmoid link is ignored, as in a first-order design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .capability import FamilyEfficiency, FittedCapabilityPCA
from .data import ObsDataError

__all__ = ["FamilySelection", "select_families", "place_models"]


@dataclass(frozen=True)
class FamilySelection:
    """Family subsets ranked by V-optimality (lower is better)."""

    budget: int
    method: str                          # "exhaustive" or "greedy"
    n_evaluated: int
    target_models: tuple[str, ...]
    ranking: tuple[tuple[tuple[str, ...], int, float], ...]  # (families, n_models, V)

    @property
    def best(self) -> tuple[str, ...]:
        return self.ranking[0][0]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"rank": i + 1, "families": ",".join(f), "n_models": n, "v_score": v}
                             for i, (f, n, v) in enumerate(self.ranking)])

    def summary(self) -> dict[str, Any]:
        return {"kind": "family_selection", "budget": self.budget, "method": self.method,
                "n_evaluated": self.n_evaluated, "target_models": list(self.target_models),
                "ranking": [{"families": list(f), "n_models": n, "v_score": v}
                            for f, n, v in self.ranking]}

    def report(self) -> str:
        f, n, v = self.ranking[0]
        return (f"best under a budget of {self.budget} models ({self.method}, {self.n_evaluated} "
                f"subsets): {', '.join(f)} ({n} models, V = {v:.4g}) for "
                f"{len(self.target_models)} target models")


def select_families(scores: pd.DataFrame, frame: pd.DataFrame, *, budget: int,
                    target_quantile: float = 0.9, max_combinations: int = 200_000,
                    keep: int = 20) -> FamilySelection:
    """Rank unions of families (≤ ``budget`` models) by V-optimality for the top-PC1 models.

    ``scores``: ``FittedCapabilityPCA.transform`` output; ``frame``: canonical frame (family).
    Exhaustive when at most ``max_combinations`` subsets fit the budget, greedy otherwise.
    """
    pcs = [c for c in scores.columns if c.startswith("PC")]
    m = scores.merge(frame[["model", "family"]], on="model").dropna(subset=pcs)
    if not 0 < target_quantile < 1:
        raise ObsDataError(f"target_quantile={target_quantile} must be in (0, 1)")
    cut = m["PC1"].quantile(target_quantile)
    is_target = m["PC1"] > cut
    x_all = np.column_stack([np.ones(len(m)), m[pcs].to_numpy(float)])
    xt = x_all[is_target.to_numpy()]
    if len(xt) == 0:
        raise ObsDataError("no target model above the PC1 quantile; lower target_quantile")
    moment = xt.T @ xt / len(xt)
    cand = m[~is_target]
    fams = sorted(cand["family"].unique())
    grams = {f: x_all[(~is_target & (m["family"] == f)).to_numpy()] for f in fams}
    grams = {f: (len(xf), xf.T @ xf) for f, xf in grams.items()}
    d = x_all.shape[1]
    if budget < d:
        raise ObsDataError(f"budget={budget} is below the {d} models a {d - 1}-PC linear design "
                           "needs; raise --budget")

    def v_score(subset):
        g = sum(grams[f][1] for f in subset)
        if np.linalg.matrix_rank(g) < d:
            return np.inf
        return float(np.trace(np.linalg.solve(g, moment)))

    subsets: list[tuple[str, ...]] = []
    too_many = False

    def dfs(start, chosen, n):
        nonlocal too_many
        if too_many:
            return
        for i in range(start, len(fams)):
            ni = grams[fams[i]][0]
            if n + ni <= budget:
                subsets.append(chosen + (fams[i],))
                if len(subsets) > max_combinations:
                    too_many = True
                    return
                dfs(i + 1, chosen + (fams[i],), n + ni)

    dfs(0, (), 0)
    if not too_many:
        method = "exhaustive"
        scored = [(s, sum(grams[f][0] for f in s), v_score(s)) for s in subsets]
    else:
        method = "greedy"
        chosen: tuple[str, ...] = ()
        n = 0
        scored = []
        while True:
            options = [(chosen + (f,), n + grams[f][0]) for f in fams
                       if f not in chosen and n + grams[f][0] <= budget]
            if not options:
                break
            # rank-deficient early steps: prefer the family adding most models
            vals = [(v_score(s), -k, s, k) for s, k in options]
            vals.sort(key=lambda t: (t[0], t[1]))
            v, _, chosen, n = vals[0]
            scored.append((chosen, n, v))
    scored = [t for t in scored if np.isfinite(t[2])]
    if not scored:
        raise ObsDataError(f"no union of families within budget={budget} spans the {d - 1}-PC "
                           "space; raise --budget")
    scored.sort(key=lambda t: (t[2], t[1]))
    return FamilySelection(budget=budget, method=method, n_evaluated=len(subsets) if not too_many
                           else len(scored), target_models=tuple(m["model"][is_target]),
                           ranking=tuple(scored[:keep]))


def place_models(pca: FittedCapabilityPCA, ours: pd.DataFrame, public: pd.DataFrame, *,
                 reference_family: str | None = "Llama-2") -> pd.DataFrame:
    """Our checkpoints in the public capability space.

    Per model: PC scores (least-squares projection on the benchmarks it has), whether they fall
    outside the public models' range (``extrapolated``), log10 FLOPs, and the PC1-equivalent
    compute: the reference family's log10 FLOPs at which its PC1 line reaches the model's PC1.
    """
    scores = pca.transform(ours)
    out = scores.merge(ours[["model", "family", "compute_flops"]], on="model", how="left")
    pcs = [c for c in scores.columns if c.startswith("PC")]
    lo, hi = pca.train_scores.min(axis=0), pca.train_scores.max(axis=0)
    vals = out[pcs].to_numpy(float)
    out["extrapolated"] = ((vals < lo) | (vals > hi)).any(axis=1)
    out["log10_flops"] = np.log10(out["compute_flops"].where(out["compute_flops"] > 0))
    if reference_family is not None:
        fam = public[public["family"] == reference_family]
        eff = FamilyEfficiency(min_models=2).fit(pca.transform(fam), fam)
        if reference_family in eff.families():
            ln = eff.line(reference_family, "PC1")
            out["pc1_equivalent_log10_flops"] = (out["PC1"] - ln.intercept) / ln.slope
    return out
