"""Is a task's curve smooth, emergent, flat, non-monotone or inverse? One documented criterion.

Background: Wei et al. 2022 ("Emergent Abilities of Large Language Models") call an ability
emergent when performance is near random below some scale and well above it beyond; Schaeffer
et al. 2023 ("Are Emergent Abilities a Mirage?") show that a discrete metric can jump where a
continuous one (the log-probability of the right answer, or the Brier score) improves
smoothly, so a jump is checked against a continuous companion where one exists.

The criterion (all on one curve: a task's score against log10 x, where x is compute, params or
tokens; the points are either the final checkpoints of several sizes or the steps of one run):

1. Noise. sigma = median of the points' standard errors, floored at ``min_stderr``.
2. Models. Fitted with sigma-weighted least squares: a straight line in log x, and a *ramp*
   (flat - rise - flat, a piecewise-linear sigmoid): level f0 up to the onset u_on, a straight
   rise to level f1 at u_end, flat after,
   y = f0 + (f1 - f0) * clip((u - u_on) / (u_end - u_on), 0, 1),
   with u_on, u_end searched on a grid over the measured range and f0, f1 by least squares.
   Goodness of fit: the ramp fits when its chi-square on n - 4 degrees of freedom has
   p >= ``GOF_P``, or when its largest residual is at most ``GOF_REL`` (10%) of the rise
   (scatter beyond item noise, such as seed-to-seed variation, that is small beside the jump).
   A ramp that misses its points by more than that is no evidence of a jump.
3. Dips. A point more than ``Z_PEAK`` combined standard errors below an earlier point, with a
   later point more than ``Z_PEAK`` above it again, is a dip; every dip is reported (x, drop,
   z), wherever it lies on the curve, not only best-vs-last.
4. Resolution. The rise is bracketed by the last measured x at or before the onset and the
   first at or after its end. Unless at least two distinct measured x lie inside the rise, its
   width cannot be resolved (with one, the ramp narrows or widens about it and fits as well):
   it is reported as "within one gap" (at most the bracketing gap, in decades), never as the
   grid's width.
5. Sharpness, relative to the data: a rise is sharp when its width (or, unresolved, its gap) is
   at most ``SHARP_GAPS`` (2) median gaps between adjacent measured x, in decades (so a
   ladder of sizes a factor 2 apart must jump within about 0.6 decades; the dense steps of a
   training run must jump far faster to count). Each verdict carries a sensitivity line: the
   verdict at half and at double that threshold.
6. Verdict, in this order:
   * ``flat`` -- the line's total change and the ramp's rise are both below ``3 sigma``.
   * ``peaked`` / ``inverse`` -- the best point lies before the last and exceeds it by more
     than ``Z_PEAK`` standard errors (``inverse`` when, in addition, the trend falls), or the
     line falls by more than 3 sigma.
   * ``non-monotone`` -- the curve has a dip (3.) that it recovers from: a single-seed run's
     ordering, a broken checkpoint, or a real U-shape; the rise it shows is reported but not
     called emergent.
   * ``emergent`` -- all of: the ramp beats the line by Delta BIC >= 6 (chi-square with the
     known noise, k ln n penalty, 4 vs 2 parameters; "strong", Kass & Raftery 1995); the ramp
     fits its points (2.); at least two points lie at or before the onset; the level before the
     onset is near chance (at most ``max(3 sigma, 0.1 (1 - chance))`` above it, or below it);
     the rise exceeds ``5 sigma``; and it is sharp (5.). The onset is 10**u_on with a bootstrap
     interval (points resampled over models and drawn from N(value, stderr^2)).
   * ``metric_artifact`` -- every condition of ``emergent`` holds for the discrete metric, but
     the continuous companion (log-probability of the right answer; Brier score, negated) does
     not jump: no ramp beating its line by Delta BIC >= 6 with a sharp rise above 5 sigma
     (Schaeffer et al. 2023). Without a companion the verdict stays ``emergent`` and says so.
   * ``smooth`` -- otherwise: a monotone trend, gradual, or not flat near chance first.
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
           "logprob_rows", "brier_rows", "SHARP_GAPS"]

Z_PEAK = 3.0
FLAT_SIGMAS = 3.0
RISE_SIGMAS = 5.0
DELTA_BIC = 6.0
NEAR_CHANCE = 0.1  # fraction of the headroom above chance, (1 - chance)
#: a sharp rise takes at most this many median gaps between adjacent measured log10 x
SHARP_GAPS = 2.0
#: the sensitivity line: the verdict at these multiples of the sharpness threshold
SENSITIVITY = (0.5, 1.0, 2.0)
#: goodness of fit of the ramp: chi-square p below this and the ramp is no evidence
GOF_P = 0.01
#: ... or its largest residual is at most this fraction of the rise
GOF_REL = 0.1


@dataclass(frozen=True)
class EmergenceResult:
    """Verdict on one curve, with the evidence behind it."""

    verdict: str          # flat | smooth | emergent | metric_artifact | non-monotone | peaked | inverse
    explanation: str
    n_points: int
    x_name: str
    sigma: float
    onset_x: float | None = None
    onset_lower: float | None = None
    onset_upper: float | None = None
    level_before: float | None = None
    rise: float | None = None
    #: the rise's width in decades when measured points resolve it, else None (see within_gap)
    rise_decades: float | None = None
    #: unresolved rise: the gap (decades) between the points that bracket it, else None
    within_gap_decades: float | None = None
    sharp_threshold_decades: float | None = None
    delta_bic: float | None = None
    ramp_chi2: float | None = None
    ramp_p: float | None = None
    peak_x: float | None = None
    drop_after_peak: float | None = None
    #: "x=..: -0.370 (25.1 se) below x=.." for each dip, "; "-joined
    dips: str | None = None
    #: verdicts at half, one and two times the sharpness threshold
    sensitivity: str | None = None
    companion_metric: str | None = None
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


def _prepare(x, y, stderr, min_stderr):
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if len(x) != len(y):
        raise FitError("x and y have different lengths")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if (~ok).any():
        raise FitError(f"{int((~ok).sum())} points have a missing/non-finite value or x <= 0; "
                       "drop them (for steps, drop step 0) before classifying")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    se = (np.full_like(y, min_stderr) if stderr is None
          else np.asarray(stderr, float)[order])
    se = np.where(np.isfinite(se), np.maximum(se, min_stderr), min_stderr)
    if len(np.unique(x)) < 4:
        raise FitError(f"emergence needs at least 4 distinct x values; got {len(np.unique(x))}")
    if len(np.unique(x)) < len(x):
        # several rows at one x (precisions of one size): one point, the inverse-variance mean
        ux, inv = np.unique(x, return_inverse=True)
        w = 1.0 / se ** 2
        y = np.bincount(inv, w * y) / np.bincount(inv, w)
        se = 1.0 / np.sqrt(np.bincount(inv, w))
        x = ux
    return x, y, se


def _dips(x, y, se, x_name) -> list[tuple[int, int, float, float]]:
    """(i_dip, i_before, drop, z) for each point far below an earlier one and recovered from."""
    out = []
    for j in range(1, len(y) - 1):
        i = int(np.argmax(y[:j]))
        z = (y[i] - y[j]) / math.sqrt(se[i] ** 2 + se[j] ** 2)
        later = y[j + 1:]
        rec = (later - y[j]) / np.sqrt(se[j + 1:] ** 2 + se[j] ** 2)
        if z > Z_PEAK and np.any(rec > Z_PEAK):
            out.append((j, i, float(y[i] - y[j]), float(z)))
    return out


def _width(u, u_on, u_end) -> tuple[float | None, float]:
    """(resolved width or None, the gap between the points bracketing the rise).

    A width is resolved only when at least two distinct measured x lie inside the rise: with
    one, the ramp can be narrowed or widened about it and fit as well."""
    eps = 1e-9
    ux = np.unique(np.round(u, 9))
    before = ux[ux <= u_on + eps]
    after = ux[ux >= u_end - eps]
    lo = float(before.max()) if len(before) else float(ux.min())
    hi = float(after.min()) if len(after) else float(ux.max())
    inside = int(np.sum((ux > u_on + eps) & (ux < u_end - eps)))
    return ((u_end - u_on) if inside >= 2 else None), hi - lo


def _jump_evidence(u, y, se):
    """Line and ramp fits of one curve: the numbers every verdict is read from."""
    w = 1.0 / se
    n = len(y)
    coef, _, chi2_line = _line(u, y, w)
    u_on, u_end, f0, f1, ramp_fit, chi2_ramp = _ramp(u, y, w)
    gaps = np.diff(np.unique(np.round(u, 9)))
    from scipy.stats import chi2 as chi2_dist
    width, gap = _width(u, u_on, u_end)
    return {
        "coef": coef, "u_on": u_on, "u_end": u_end, "f0": f0, "f1": f1, "rise": float(f1 - f0),
        "line_change": float(coef[1] * (u.max() - u.min())),
        "delta_bic": float((chi2_line + 2 * math.log(n)) - (chi2_ramp + 4 * math.log(n))),
        "chi2_ramp": float(chi2_ramp),
        "ramp_p": float(chi2_dist.sf(chi2_ramp, max(n - 4, 1))),
        "width": width, "gap": gap, "span": float(u.max() - u.min()),
        "median_gap": float(np.median(gaps)) if len(gaps) else 0.0,
        "max_resid": float(np.max(np.abs(ramp_fit - y))),
    }


def _is_jump(ev, sigma, threshold) -> bool:
    """The continuous companion's test: a ramp that beats the line, sharply, above noise."""
    eff = ev["width"] if ev["width"] is not None else ev["gap"]
    return (ev["delta_bic"] >= DELTA_BIC and ev["rise"] > RISE_SIGMAS * sigma
            and eff <= threshold + 1e-9)


def classify_curve(x: Sequence[float], y: Sequence[float], stderr: Sequence[float] | None = None,
                   *, chance: float | None = None, x_name: str = "x", min_stderr: float = 0.005,
                   n_boot: int = 200, seed: int = 0,
                   companion: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
                   companion_metric: str | None = None) -> EmergenceResult:
    """Apply the criterion of the module docstring to one curve (x > 0, raw units).

    ``companion``: (x, value, stderr) of a continuous metric on the same checkpoints, higher is
    better (log-probability of the right answer, or minus the Brier score).
    """
    x, y, se = _prepare(x, y, stderr, min_stderr)
    n = len(y)
    u = np.log10(x)
    sigma = float(np.median(se))
    ev = _jump_evidence(u, y, se)
    line_change, rise, delta_bic = ev["line_change"], ev["rise"], ev["delta_bic"]
    threshold = SHARP_GAPS * ev["median_gap"]
    dips = _dips(x, y, se, x_name)
    dip_text = "; ".join(f"{x_name}={x[j]:.3g}: {-d:+.3f} ({z:.1f} se) below {x_name}={x[i]:.3g}"
                         for j, i, d, z in dips) or None
    width_text = (f"within {ev['width']:.2f} decades" if ev["width"] is not None else
                  f"within one gap between measured points (<= {ev['gap']:.2f} decades; the "
                  "width is not resolved by the data)")
    common = dict(n_points=n, x_name=x_name, sigma=sigma, delta_bic=delta_bic, rise=rise,
                  ramp_chi2=ev["chi2_ramp"], ramp_p=ev["ramp_p"], dips=dip_text,
                  rise_decades=ev["width"],
                  within_gap_decades=None if ev["width"] is not None else ev["gap"],
                  sharp_threshold_decades=threshold)

    comp_jump, comp_note = None, ""
    if companion is not None:
        try:
            cx, cy, cse = _prepare(*companion, min_stderr=1e-3)
            cu = np.log10(cx)
            if cu.min() > ev["u_on"] + 1e-9 or cu.max() < ev["u_end"] - 1e-9:
                # a companion that does not reach both sides of the rise cannot clear it
                comp_note = (f"; the continuous companion ({companion_metric}) has no point on "
                             "one side of the rise, so it cannot check it")
            else:
                cev = _jump_evidence(cu, cy, cse)
                comp_jump = (cev, float(np.median(cse)), SHARP_GAPS * cev["median_gap"])
        except FitError:
            comp_jump = None

    def decide(thr: float, comp_thr_scale: float = 1.0):
        """(verdict, explanation, extra fields) at sharpness threshold ``thr`` decades."""
        i_peak = int(np.argmax(y))
        drop = float(y[i_peak] - y[-1])
        drop_z = drop / math.sqrt(se[i_peak] ** 2 + se[-1] ** 2)
        if abs(line_change) < FLAT_SIGMAS * sigma and abs(rise) < FLAT_SIGMAS * sigma \
                and drop_z < Z_PEAK and not dips:
            return ("flat", f"no detectable trend: the line changes by {line_change:+.3f} and "
                    f"the ramp rises by {rise:+.3f} over the range, both under {FLAT_SIGMAS:g} x "
                    f"noise ({sigma:.3f})", {})
        if i_peak < n - 1 and drop_z > Z_PEAK:
            verdict = "inverse" if line_change < -FLAT_SIGMAS * sigma else "peaked"
            return (verdict, f"non-monotone: best {y[i_peak]:.3f} at {x_name}={x[i_peak]:.3g}, "
                    f"then falls to {y[-1]:.3f} at the end ({drop_z:.1f} standard errors)"
                    + ("; the overall trend is downward" if verdict == "inverse" else ""),
                    {"peak_x": float(x[i_peak]), "drop_after_peak": drop})
        if line_change < -FLAT_SIGMAS * sigma:
            return ("inverse", f"falls by {-line_change:.3f} over the range (> {FLAT_SIGMAS:g} x "
                    "noise)", {})
        before = int(np.sum(u <= ev["u_on"] + 1e-9))
        ref = chance if chance is not None else float(np.min(y))
        ref_name = "chance" if chance is not None else "lowest score; chance unknown"
        headroom = (1.0 - ref) if chance is not None and ref < 1 else max(float(np.ptp(y)), 1e-3)
        near = ev["f0"] <= ref + max(FLAT_SIGMAS * sigma, NEAR_CHANCE * headroom)
        eff = ev["width"] if ev["width"] is not None else ev["gap"]
        fits = ev["ramp_p"] >= GOF_P or ev["max_resid"] <= GOF_REL * max(abs(rise), 1e-9)
        conds = {"ramp beats line (dBIC >= %g)" % DELTA_BIC: delta_bic >= DELTA_BIC,
                 "ramp fits its points (chi2 %.1f on %d dof, p %.2g; largest residual %.3f "
                 "vs %.0f%% of the rise)" % (ev["chi2_ramp"], max(n - 4, 1), ev["ramp_p"],
                                             ev["max_resid"], 100 * GOF_REL): bool(fits),
                 ">= 2 points before onset": before >= 2,
                 "flat level near/below chance": bool(near),
                 "rise > %g x noise" % RISE_SIGMAS: rise > RISE_SIGMAS * sigma,
                 "sharp (rise within %.2f decades, %g median gaps)" % (
                     thr, SHARP_GAPS * thr / max(threshold, 1e-12)): eff <= thr + 1e-9}
        shape = (f"rises by {rise:.3f} from {ev['f0']:.3f} at {x_name}={10 ** ev['u_on']:.3g}, "
                 f"{width_text}; ramp vs line dBIC {delta_bic:.1f}")
        if dips:
            return ("non-monotone", f"dips: {dip_text}; {shape}; a curve that falls and "
                    "recovers is not read as emergence", {})
        if all(conds.values()):
            if comp_jump is not None:
                cev, csig, cthr = comp_jump
                if not _is_jump(cev, csig, cthr * comp_thr_scale):
                    return ("metric_artifact", f"the discrete metric jumps ({shape}; flat at "
                            f"{ev['f0']:.3f}, {ref_name} {ref:.3f}) but the continuous companion "
                            f"({companion_metric}) does not (ramp vs line dBIC "
                            f"{cev['delta_bic']:.1f}, rise {cev['rise']:+.3f}): per Schaeffer "
                            "et al. 2023, a jump of the metric, not of the model", {})
            return ("emergent", f"flat at {ev['f0']:.3f} ({ref_name} {ref:.3f}) up to "
                    f"{x_name}={10 ** ev['u_on']:.3g}, then {shape}"
                    + ("; the continuous companion jumps too" if comp_jump is not None else
                       comp_note or "; no continuous companion to check it against"), {})
        failed = [k for k, v in conds.items() if not v]
        return ("smooth", f"{shape} (a line in log {x_name}: {line_change:+.3f}); not emergent "
                f"because not: {'; '.join(failed)}", {"level_before": ev["f0"]})

    verdict, explanation, extra = decide(threshold)
    sens = [decide(threshold * m, m)[0] for m in SENSITIVITY]
    sensitivity = "sharpness threshold " + " / ".join(
        f"{threshold * m:.2f}" for m in SENSITIVITY) + " decades: " + " / ".join(sens)
    explanation += f". Sensitivity: {sensitivity}"
    if dip_text and verdict != "non-monotone":
        explanation += f". Dips: {dip_text}"
    fields = dict(common, sensitivity=sensitivity, companion_metric=companion_metric, **extra)
    if comp_jump is not None:
        cj = _is_jump(*comp_jump)
        fields.update(companion_verdict="jump" if cj else "smooth", companion_smooth=not cj)
    if verdict in ("emergent", "metric_artifact"):
        lo, hi = _onset_interval(u, y, se, n_boot, seed)
        fields.update(onset_x=float(10 ** ev["u_on"]), onset_lower=lo, onset_upper=hi,
                      level_before=ev["f0"])
    return EmergenceResult(verdict, explanation, **fields)


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
    elif metric == "brier":   # lower is better: negate so that a rise is an improvement
        rows["value"] = -rows["value"].astype(float)
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
    comp_arg, comp_metric = None, None
    if companion is not None and not companion.empty:
        comp = _companion_values(companion)
        comp = comp[pd.to_numeric(comp[x], errors="coerce").fillna(0) > 0]
        comp_metric = str(companion["metric"].iloc[0])
        comp_arg = (comp[x].to_numpy(float), comp["value"].to_numpy(float),
                    comp["stderr"].to_numpy(float))
    res = classify_curve(frame[x].to_numpy(float), frame["value"].to_numpy(float),
                         frame["stderr"].to_numpy(float) if "stderr" in frame else None,
                         chance=float(chance.iloc[0]) if len(chance) else None, x_name=x,
                         n_boot=n_boot, seed=seed, companion=comp_arg,
                         companion_metric=comp_metric)
    return res


def emergence_table(frame: pd.DataFrame, *, series: str | None = None, across: str = "sizes",
                    size: str | None = None, x: str | None = None, num_fewshot: int | None = 0,
                    tasks: Sequence[str] | None = None, companions: dict[str, str] | None = None,
                    n_boot: int = 100) -> pd.DataFrame:
    """Classify every task of a series: ``across='sizes'`` (final checkpoints; x = compute, or
    parameters where the series has no token counts) or ``across='steps'`` (the steps of each
    size, or of ``size``; x = tokens seen).

    ``companions``: task -> continuous metric on the same rows (default: ``lambada_openai`` ->
    ``ppl``; any task with a ``logprob`` metric uses it, else one with ``brier``).
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
            comp_metric = companions.get(task) or next(
                (m for m in ("logprob", "brier") if (tg["metric"] == m).any()), None)
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
    lls = list(loglikelihoods) if loglikelihoods is not None else []
    if not lls:
        return math.nan
    t = _target_index(target, len(lls))
    if t is not None:
        return float(lls[t])
    if len(lls) == 1:
        return float(lls[0])
    return math.nan


def _companion_rows(rows: pd.DataFrame, samples: Any, metric: str, item_value,
                    higher_is_better: bool) -> pd.DataFrame:
    """One companion row per cell with per-sample log-likelihoods: the mean of
    ``item_value(loglikelihoods, target)`` over its items, with the standard error of a mean."""
    out = []
    for _, row in rows.iterrows():
        frame = samples.get(row["cell_key"]) if hasattr(samples, "get") else None
        if frame is None or "loglikelihoods" not in frame or "target" not in frame:
            continue
        v = np.array([item_value(a, t) for a, t in zip(frame["loglikelihoods"],
                                                       frame["target"])], float)
        v = v[np.isfinite(v)]
        if len(v) < 2:
            continue
        rec = row.to_dict()
        rec.update(metric=metric, is_primary=False, value=float(v.mean()),
                   stderr=float(v.std(ddof=1) / math.sqrt(len(v))), n_samples=len(v),
                   chance=None, higher_is_better=higher_is_better)
        out.append(rec)
    return pd.DataFrame(out, columns=rows.columns)


def logprob_rows(rows: pd.DataFrame, samples: Any) -> pd.DataFrame:
    """Companion rows (metric ``logprob``): mean log-probability of the right answer per cell.

    ``rows``: primary-metric rows with ``cell_key``; ``samples``: mapping cell_key -> per-sample
    DataFrame as the runner writes it (``loglikelihoods``, ``target`` columns). Cells without
    samples are skipped. Schaeffer et al. 2023: the continuous metric to set beside accuracy.
    """
    return _companion_rows(rows, samples, "logprob", _target_logprob, True)


def _target_index(target, n: int) -> int | None:
    """The right choice's index from a per-sample ``target`` (JSON text or a value), or None."""
    import json

    try:
        t = json.loads(target) if isinstance(target, str) else target
    except ValueError:
        return None
    if isinstance(t, list) and len(t) == 1:
        t = t[0]
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= int(t) < n:
        return int(t)
    return None


def _item_brier(loglikelihoods, target) -> float:
    """Brier score of one multiple-choice item: sum_k (p_k - [k = target])^2 with p the
    softmax of the choices' log-likelihoods (lm-eval's ``brier_score`` per item)."""
    lls = np.asarray(list(loglikelihoods) if loglikelihoods is not None else [], float)
    t = _target_index(target, len(lls)) if len(lls) >= 2 else None
    if t is None:
        return math.nan
    p = np.exp(lls - lls.max())
    p /= p.sum()
    onehot = np.zeros_like(p)
    onehot[t] = 1.0
    return float(np.sum((p - onehot) ** 2))


def brier_rows(rows: pd.DataFrame, samples: Any) -> pd.DataFrame:
    """Companion rows (metric ``brier``, lower is better) for multiple-choice cells with
    per-sample log-likelihoods: the mean Brier score of the choices' softmax per cell."""
    return _companion_rows(rows, samples, "brier", _item_brier, False)
