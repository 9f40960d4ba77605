"""Is a task's curve smooth, emergent, flat, or inverse / U-shaped? A documented criterion.

Background: Wei et al. 2022 ("Emergent Abilities of Large Language Models") call an ability
emergent when performance is near random below some scale and well above it beyond; Schaeffer
et al. 2023 ("Are Emergent Abilities a Mirage?") show that a discrete metric can jump where a
continuous one (the log-probability of the right answer) improves smoothly, so we check both.

The criterion (all on one curve: a task's score against log10 x, where x is compute, params or
tokens; the points are either the final checkpoints of several sizes or the steps of one run):

1. Noise. sigma = median of the points' standard errors, floored at ``min_stderr``.
2. Models. Fitted with sigma-weighted least squares: a straight line in log x, and a *ramp*
   (flat - rise - flat, a piecewise-linear sigmoid): level f0 up to the onset u_on, a straight
   rise to level f1 at u_end, flat after,
   y = f0 + (f1 - f0) * clip((u - u_on) / (u_end - u_on), 0, 1).
   u_on and u_end are searched on a grid over the measured range (u_end may be the last point:
   a curve still rising at the end); f0, f1 by weighted least squares.
3. Verdict, in this order:
   * ``flat`` -- the line's total change over the range and the ramp's rise are both below
     ``3 sigma``: no detectable trend.
   * ``peaked`` -- non-monotone: the best point lies before the last one and exceeds it by more
     than ``z = 3`` combined standard errors (e.g. small Pythia models' LAMBADA accuracy falling
     late in training). ``inverse`` when, in addition, the line falls by more than 3 sigma.
   * ``emergent`` -- all of: the ramp beats the line by Delta BIC >= 6 (chi-square with the
     known noise, k ln n penalty for 4 vs 2 parameters; "strong" evidence, Kass & Raftery
     1995); at least two points lie at or before the onset; the level before the onset is near
     chance (at most ``max(3 sigma, 0.1 (1 - chance))`` above chance, or anywhere below it);
     the rise f1 - f0 exceeds ``5 sigma``; and the rise is sharp: u_end - u_on is at most
     ``MAX_RISE_DECADES = 1`` decade. (Without the last condition every learning curve over
     training steps would count: all tasks sit at chance for the first ~1000 steps and then
     climb gradually over 2-3 decades of tokens.) The onset is 10**u_on, with a bootstrap
     interval (points resampled over models and drawn from N(value, stderr^2)).
   * ``smooth`` -- otherwise: a monotone trend, gradual, or not flat near chance first.
4. Companion. When rows of a continuous companion metric are given (log-probability of the
   right answer; a perplexity ``ppl`` is turned into -ln ppl), the same criterion runs on it.
   ``companion_smooth`` is True when it is not emergent, i.e. the jump is (per Schaeffer et al.)
   likely a metric artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..records import final_step_mask
from ..stats import bootstrap_refits, percentile_interval
from .fit import FitError

__all__ = ["EmergenceResult", "detect_emergence", "classify_curve", "emergence_table",
           "logprob_rows"]

Z_PEAK = 3.0
FLAT_SIGMAS = 3.0
RISE_SIGMAS = 5.0
DELTA_BIC = 6.0
NEAR_CHANCE = 0.1  # fraction of the headroom above chance, (1 - chance)
MAX_RISE_DECADES = 1.0


@dataclass(frozen=True)
class EmergenceResult:
    """Verdict on one curve, with the evidence behind it."""

    verdict: str                 # flat | smooth | emergent | peaked | inverse
    explanation: str
    n_points: int
    x_name: str
    sigma: float
    onset_x: float | None = None
    onset_lower: float | None = None
    onset_upper: float | None = None
    level_before: float | None = None
    rise: float | None = None
    rise_decades: float | None = None
    delta_bic: float | None = None
    peak_x: float | None = None
    drop_after_peak: float | None = None
    companion_verdict: str | None = None
    companion_smooth: bool | None = None

    def summary(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _line(u, y, w):
    A = np.stack([np.ones_like(u), u - u.min()], 1)
    coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
    fit = A @ coef
    return coef, fit, float(np.sum(((fit - y) * w) ** 2))


def _ramp(u, y, w, n_grid=41):
    """Best flat-rise-flat fit over a grid of (u_on, u_end): (u_on, u_end, f0, f1, fitted, chi2).

    For fixed (u_on, u_end) the model is linear in (f0, f1 - f0); solved in closed form for all
    grid pairs at once.
    """
    grid = np.linspace(float(u.min()), float(u.max()), n_grid)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    keep = b > a + 1e-9
    on, end = a[keep], b[keep]
    r = np.clip((u[None, :] - on[:, None]) / (end - on)[:, None], 0.0, 1.0)   # (G, n)
    ww = w ** 2
    s0, s1, s11 = ww.sum(), (r * ww).sum(1), (r * r * ww).sum(1)
    sy, sry = (ww * y).sum(), (r * ww * y).sum(1)
    det = s0 * s11 - s1 ** 2
    det = np.where(np.abs(det) < 1e-12, np.nan, det)
    c0 = (s11 * sy - s1 * sry) / det
    c1 = (s0 * sry - s1 * sy) / det
    fit = c0[:, None] + c1[:, None] * r
    chi2 = (((fit - y[None, :]) * w[None, :]) ** 2).sum(1)
    chi2 = np.where(np.isfinite(chi2), chi2, np.inf)
    # among near-ties prefer the widest ramp (the least "sharp" reading of the data)
    best_chi2 = chi2.min()
    ties = np.nonzero(chi2 <= best_chi2 + 1e-6 * max(best_chi2, 1.0))[0]
    i = ties[np.argmax((end - on)[ties])]
    return (float(on[i]), float(end[i]), float(c0[i]), float(c0[i] + c1[i]), fit[i],
            float(chi2[i]))


def classify_curve(x: Sequence[float], y: Sequence[float], stderr: Sequence[float] | None = None,
                   *, chance: float | None = None, x_name: str = "x", min_stderr: float = 0.005,
                   n_boot: int = 200, seed: int = 0) -> EmergenceResult:
    """Apply the criterion of the module docstring to one curve (x > 0, raw units)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if len(x) != len(y):
        raise FitError("x and y have different lengths")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if (~ok).any():
        raise FitError(f"{int((~ok).sum())} points have a missing/non-finite value or x <= 0; "
                       "drop them (for steps, drop step 0) before classifying")
    order = np.argsort(x)
    x, y = x[order], y[order]
    se = (np.full_like(y, min_stderr) if stderr is None
          else np.asarray(stderr, float)[order])
    se = np.where(np.isfinite(se), np.maximum(se, min_stderr), min_stderr)
    n = len(y)
    if n < 4 or len(np.unique(x)) < 4:
        raise FitError(f"emergence needs at least 4 distinct x values; got {len(np.unique(x))}")
    u = np.log10(x)
    w = 1.0 / se
    sigma = float(np.median(se))
    coef, line_fit, chi2_line = _line(u, y, w)
    u_on, u_end, f0, f1, ramp_fit, chi2_ramp = _ramp(u, y, w)
    line_change = float(coef[1] * (u.max() - u.min()))
    rise = float(f1 - f0)
    # BIC with known noise: chi2 + k ln n (line k=2, ramp k=4)
    delta_bic = float((chi2_line + 2 * math.log(n)) - (chi2_ramp + 4 * math.log(n)))
    common = dict(n_points=n, x_name=x_name, sigma=sigma, delta_bic=delta_bic, rise=rise)

    # peak / inverse
    i_peak = int(np.argmax(y))
    drop = float(y[i_peak] - y[-1])
    drop_z = drop / math.sqrt(se[i_peak] ** 2 + se[-1] ** 2)
    if abs(line_change) < FLAT_SIGMAS * sigma and abs(rise) < FLAT_SIGMAS * sigma and drop_z < Z_PEAK:
        return EmergenceResult("flat", f"no detectable trend: the line changes by "
                               f"{line_change:+.3f} and the ramp rises by {rise:+.3f} over the "
                               f"range, both under {FLAT_SIGMAS:g} x noise ({sigma:.3f})", **common)
    if i_peak < n - 1 and drop_z > Z_PEAK:
        verdict = "inverse" if line_change < -FLAT_SIGMAS * sigma else "peaked"
        return EmergenceResult(
            verdict, f"non-monotone: best {y[i_peak]:.3f} at {x_name}={x[i_peak]:.3g}, then falls "
            f"to {y[-1]:.3f} at the end ({drop_z:.1f} standard errors)"
            + ("; the overall trend is downward" if verdict == "inverse" else ""),
            peak_x=float(x[i_peak]), drop_after_peak=drop, **common)
    if line_change < -FLAT_SIGMAS * sigma:
        return EmergenceResult("inverse", f"falls by {-line_change:.3f} over the range "
                               f"(> {FLAT_SIGMAS:g} x noise)", **common)

    before = int(np.sum(u <= u_on + 1e-9))
    ref = chance if chance is not None else float(np.min(y))
    headroom = (1.0 - ref) if chance is not None and ref < 1 else max(float(np.ptp(y)), 1e-3)
    near = f0 <= ref + max(FLAT_SIGMAS * sigma, NEAR_CHANCE * headroom)
    rise_decades = u_end - u_on
    conds = {"ramp beats line (dBIC >= %g)" % DELTA_BIC: delta_bic >= DELTA_BIC,
             ">= 2 points before onset": before >= 2,
             "flat level near/below chance": bool(near),
             "rise > %g x noise" % RISE_SIGMAS: rise > RISE_SIGMAS * sigma,
             "sharp (rise within %g decade)" % MAX_RISE_DECADES:
                 rise_decades <= MAX_RISE_DECADES + 1e-9}
    if all(conds.values()):
        lo, hi = _onset_interval(u, y, se, n_boot, seed)
        return EmergenceResult(
            "emergent", f"flat at {f0:.3f} (chance {ref:.3f}) up to {x_name}={10 ** u_on:.3g}, "
            f"then rises by {rise:.3f} within {rise_decades:.2f} decades; the ramp beats a line by "
            f"dBIC {delta_bic:.1f}", onset_x=float(10 ** u_on), onset_lower=lo, onset_upper=hi,
            level_before=f0, rise_decades=rise_decades, **common)
    failed = [k for k, v in conds.items() if not v]
    return EmergenceResult(
        "smooth", f"rises by {rise:.3f} over {rise_decades:.2f} decades from {x_name}="
        f"{10 ** u_on:.3g} (a line in log {x_name}: {line_change:+.3f}; ramp vs line dBIC "
        f"{delta_bic:.1f}); not emergent because not: {'; '.join(failed)}", level_before=f0,
        rise_decades=rise_decades, **common)


def _onset_interval(u, y, se, n_boot, seed, level=0.9):
    if not n_boot:
        return None, None
    rng = np.random.default_rng(seed)
    n = len(y)

    def onset(idx):
        idx = np.sort(idx)
        yb = y[idx] + rng.standard_normal(n) * se[idx]
        return _ramp(u[idx], yb, 1.0 / se[idx], n_grid=25)[0]

    ons = bootstrap_refits(onset, n, n_boot, rng, accept=lambda idx: len(np.unique(u[idx])) >= 4)
    if not ons:
        return None, None
    lo, hi = percentile_interval(ons, level)
    return float(10 ** lo), float(10 ** hi)


def _companion_values(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    metric = str(rows["metric"].iloc[0])
    if metric in ("ppl", "perplexity", "word_perplexity"):
        rows["value"] = -np.log(rows["value"].astype(float))
        # d(-ln p) = dp / p
        rows["stderr"] = rows["stderr"].astype(float) / np.exp(-rows["value"])
    return rows


def detect_emergence(frame: pd.DataFrame, *, x: str = "compute_flops",
                     companion: pd.DataFrame | None = None, n_boot: int = 200,
                     seed: int = 0) -> EmergenceResult:
    """Classify one curve given as ResultRow rows (one task, one metric).

    ``companion``: rows of a continuous metric on the same checkpoints (log-probability of the
    right answer, or ``ppl``); its verdict is attached.
    """
    if frame.empty:
        raise FitError("no rows to classify")
    for col in (x, "value"):
        if col not in frame.columns:
            raise FitError(f"rows have no {col!r} column")
    if frame["task"].nunique() > 1 or frame["metric"].nunique() > 1:
        raise FitError("detect_emergence takes one task and one metric; use emergence_table "
                       "for many")
    frame = frame[pd.to_numeric(frame[x], errors="coerce").fillna(0) > 0]
    chance = pd.to_numeric(frame.get("chance"), errors="coerce").dropna()
    res = classify_curve(frame[x].to_numpy(float), frame["value"].to_numpy(float),
                         frame["stderr"].to_numpy(float) if "stderr" in frame else None,
                         chance=float(chance.iloc[0]) if len(chance) else None, x_name=x,
                         n_boot=n_boot, seed=seed)
    if companion is not None and not companion.empty:
        comp = _companion_values(companion)
        comp = comp[pd.to_numeric(comp[x], errors="coerce").fillna(0) > 0]
        try:
            c = classify_curve(comp[x].to_numpy(float), comp["value"].to_numpy(float),
                               comp["stderr"].to_numpy(float), chance=None, x_name=x, n_boot=0,
                               min_stderr=1e-3)
            res = EmergenceResult(**{**res.summary(), "companion_verdict": c.verdict,
                                     "companion_smooth": c.verdict != "emergent"})
        except FitError:
            pass
    return res


def emergence_table(frame: pd.DataFrame, *, series: str | None = None, across: str = "sizes",
                    size: str | None = None, x: str | None = None, num_fewshot: int | None = 0,
                    tasks: Sequence[str] | None = None, companions: dict[str, str] | None = None,
                    n_boot: int = 100) -> pd.DataFrame:
    """Classify every task of a series: ``across='sizes'`` (final checkpoints; x = compute, or
    parameters where the series has no token counts) or ``across='steps'`` (the steps of each
    size, or of ``size``; x = tokens seen).

    ``companions``: task -> continuous metric on the same rows (default: ``lambada_openai`` ->
    ``ppl``; any task with a ``logprob`` metric uses it).
    """
    companions = {"lambada_openai": "ppl", **(companions or {})}
    f = frame
    if series is not None:
        f = f[f["series"] == series]
    if num_fewshot is not None:
        f = f[f["num_fewshot"] == num_fewshot]
    if tasks is not None:
        f = f[f["task"].isin(list(tasks))]
    x_given = x
    out = []
    if across == "sizes":
        groups = [(s, None, _final(f[f["series"] == s])) for s in sorted(f["series"].unique())]
    elif across == "steps":
        groups = [(s, z, g) for (s, z), g in f.groupby(["series", "size"])
                  if size is None or z == size]
    else:
        raise FitError(f"across={across!r}: use 'sizes' or 'steps'")
    for s, z, g in groups:
        x = x_given or ("compute_flops" if across == "sizes" else "tokens_seen")
        if x_given is None and across == "sizes" and \
                pd.to_numeric(g.get(x), errors="coerce").fillna(0).gt(0).sum() == 0:
            x = "n_params"   # token counts unknown (e.g. imported OPT/BLOOM): use size
        for task, tg in g.groupby("task"):
            prim = tg[tg["is_primary"].astype(bool)]
            if prim.empty:
                continue
            comp_metric = companions.get(task) or ("logprob" if (tg["metric"] == "logprob").any()
                                                   else None)
            comp = tg[tg["metric"] == comp_metric] if comp_metric else None
            rec = {"series": s, "size": z or "all", "task": task,
                   "metric": prim["metric"].iloc[0], "across": across, "x": x}
            try:
                r = detect_emergence(prim, x=x, companion=comp, n_boot=n_boot)
            except FitError as e:
                rec.update(verdict="n/a", explanation=str(e))
                out.append(rec)
                continue
            rec.update({k: v for k, v in r.summary().items() if k not in ("x_name",)})
            out.append(rec)
    return pd.DataFrame(out)


def _final(f: pd.DataFrame) -> pd.DataFrame:
    return f[final_step_mask(f)]


def _target_logprob(loglikelihoods, target) -> float:
    """Log-probability of the right answer from one per-sample record of the runner.

    Multiple choice: the target is the index of the right choice among the log-likelihoods.
    One request per item (LAMBADA, arithmetic): its log-likelihood.
    """
    import json

    lls = list(loglikelihoods) if loglikelihoods is not None else []
    if not lls:
        return math.nan
    try:
        t = json.loads(target) if isinstance(target, str) else target
    except ValueError:
        t = None
    if isinstance(t, list) and len(t) == 1:
        t = t[0]
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= int(t) < len(lls):
        return float(lls[int(t)])
    if len(lls) == 1:
        return float(lls[0])
    return math.nan


def logprob_rows(rows: pd.DataFrame, samples: Any) -> pd.DataFrame:
    """Companion rows (metric ``logprob``): mean log-probability of the right answer per cell.

    ``rows``: primary-metric rows with ``cell_key``; ``samples``: mapping cell_key -> per-sample
    DataFrame as the runner writes it (``loglikelihoods``, ``target`` columns). Cells without
    samples are skipped. Schaeffer et al. 2023: the continuous metric to set beside accuracy.
    """
    out = []
    for _, row in rows.iterrows():
        frame = samples.get(row["cell_key"]) if hasattr(samples, "get") else None
        if frame is None or "loglikelihoods" not in frame or "target" not in frame:
            continue
        lp = np.array([_target_logprob(a, b) for a, b in zip(frame["loglikelihoods"],
                                                              frame["target"])], float)
        lp = lp[np.isfinite(lp)]
        if len(lp) < 2:
            continue
        rec = row.to_dict()
        rec.update(metric="logprob", is_primary=False, value=float(lp.mean()),
                   stderr=float(lp.std(ddof=1) / math.sqrt(len(lp))), n_samples=len(lp),
                   chance=None, higher_is_better=True)
        out.append(rec)
    return pd.DataFrame(out, columns=rows.columns)
