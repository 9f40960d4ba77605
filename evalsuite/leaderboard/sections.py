"""The scaling-law sections of a leaderboard: fitted curves, predictions, emergence verdicts.

A thin adapter over ``evalsuite.scaling`` (imported inside functions, so a leaderboard still
builds, with a "not available" note, where a part of it is missing or its API differs).

Fits: for every task x series (the series' widest precision; each shots setting apart) the
scaling law of ``evalsuite.scaling.fit`` is fitted to the final checkpoint of each size, score
against training compute. Its mean curve and prediction interval are drawn on the task's plot.

Predictions for sizes not evaluated yet: the size labels given (``--predict-sizes 1m,2m``;
their parameter counts from ``evalsuite.scaling.predict.resolve_size``), else the next two rungs
of the series' ladder, n_max * r and n_max * r^2 with r the median ratio of n_params between
consecutive sizes (a ladder grows geometrically). A size is placed at compute 6 * N * D with D the
series' final tokens seen, as ``predict_sizes`` does. Every prediction says whether, and how far
(in decades of compute), it extrapolates.

Emergence: ``evalsuite.scaling.emergence.classify_curve`` on each task x series across sizes and
across the steps of each size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..records import latest_by
from .cells import digest_of, none_last, precision_rank
from .parallel import parallel_map
from .plots import Curve, PredictedPoint
from .tables import Table

__all__ = ["ScalingOutput", "run_scaling", "run_forecasts", "FIT_SETTINGS", "PREDICTION_LEVEL"]

#: Settings of every leaderboard fit (fixed so the leaderboard's bytes are reproducible).
#: (n_boot is ScalingLaw's default, DEFAULT_N_BOOT, as in `evalsuite predict`: one fit, one interval)
FIT_SETTINGS = {"form": "auto", "x": "compute_flops", "seed": 0}
PREDICTION_LEVEL = 0.9
#: Fewest sizes (distinct final computes) a series needs before it is fitted.
MIN_SIZES = 4
_NEXT_RUNGS = 2
#: Bootstrap replicates of an emergence onset interval.
EMERGENCE_BOOT = 100


@dataclass(frozen=True)
class ScalingOutput:
    predictions: Any = None  # leaderboard.Table or None
    emergence: Any = None
    curves: Mapping[str, tuple[Curve, ...]] = field(default_factory=dict)
    predicted_points: Mapping[str, tuple[PredictedPoint, ...]] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, why: str) -> "ScalingOutput":
        return cls(notes={"predictions": f"not available: {why}.",
                          "emergence": f"not available: {why}."})


def _normaliser(cells):
    """The map from raw value to the plotted score (chance-normalised where the cells are)."""
    c0 = cells[0]
    if c0.score is not None and c0.chance is not None:
        chance = c0.chance
        return lambda v: (v - chance) / (1.0 - chance)
    return lambda v: v


def _final_per_size(cells, x: str = "compute_flops") -> list:
    usable = [c for c in cells
              if getattr(c, x) is not None and getattr(c, x) > 0 and c.value is not None]
    last = latest_by(usable, key=lambda c: (c.size, c.n_params))
    return sorted(last.values(), key=lambda c: (getattr(c, x), c.size))


def _groups(cells) -> dict[tuple, list]:
    """(task, series, shots) -> the cells of the series' widest precision."""

    best_prec: dict[tuple, str] = {}
    for c in cells:
        k = (c.task, c.series, c.num_fewshot)
        if k not in best_prec or precision_rank(c.precision) < precision_rank(best_prec[k]):
            best_prec[k] = c.precision
    out: dict[tuple, list] = {}
    for c in cells:
        k = (c.task, c.series, c.num_fewshot)
        if c.precision == best_prec[k]:
            out.setdefault(k, []).append(c)
    return out


def _frame(points):
    import pandas as pd

    return pd.DataFrame([{
        "checkpoint_id": f"{c.series}-{c.size}@{'final' if c.step is None else c.step}:"
                         f"{c.precision}",
        "task": c.task, "series": c.series, "size": c.size, "step": c.step, "metric": c.metric,
        "is_primary": True, "value": c.value, "stderr": c.stderr,
        "compute_flops": c.compute_flops, "n_params": c.n_params, "chance": c.chance,
        "higher_is_better": c.higher_is_better, "n_samples": c.n_samples} for c in points])


def _median(values: Sequence[float]) -> float:
    v = sorted(values)
    m = len(v) // 2
    return v[m] if len(v) % 2 else 0.5 * (v[m - 1] + v[m])


def _targets(points, sizes: Sequence[str], x: str = "compute_flops"
             ) -> list[tuple[str, float, str, float]]:
    """(label, n_params, where n_params came from, compute) of each size to predict.

    Without ``sizes``: the next ``_NEXT_RUNGS`` rungs of the ladder, n_max * r^k with r the
    median ratio of n_params between consecutive sizes. Compute is 6 * N * D with D the median
    final tokens_seen of the fitted sizes (as evalsuite.scaling.predict.predict_sizes does).
    """
    from ..scaling.predict import resolve_size

    tokens = [c.tokens_seen for c in points if c.tokens_seen]
    if x == "compute_flops" and not tokens:
        return []

    def at(n: float) -> float:   # the fit's x for a model of n parameters
        return 6.0 * n * _median(tokens) if x == "compute_flops" else n

    known = {c.size: c.n_params for c in points if c.n_params}
    out = []
    if sizes:
        for label in sizes:
            if label in known:
                continue  # evaluated already: the tables show it
            try:
                n, src = resolve_size(label)
            except ValueError:
                continue
            out.append((label, n, src, at(n)))
        return out
    ns = sorted({c.n_params for c in points if c.n_params})
    ratios = [b / a for a, b in zip(ns, ns[1:]) if a > 0]
    if not ratios or _median(ratios) <= 1.0:
        return []
    r = _median(ratios)
    for k in range(1, _NEXT_RUNGS + 1):
        n = ns[-1] * r ** k
        out.append((f"next +{k} (~{n:.3g})", n, "ladder ratio", at(n)))
    return out


def _fit_group(job: tuple) -> tuple:
    """Fit one task x series and evaluate it: ("ok", fit form, n points, band, predictions) or
    ("skip", reason). A pure function of its arguments (it runs in a worker process)."""
    import numpy as np

    from ..scaling.fit import FitError, ScalingLaw

    label, points, targets, x_name = job
    try:
        fit = ScalingLaw(**{**FIT_SETTINGS, "x": x_name}).fit(_frame(points))
    except (FitError, ValueError, ArithmeticError) as e:
        return ("skip", f"{label}: {e}")
    x_lo = getattr(points[0], x_name)
    x_hi = max([getattr(points[-1], x_name)] + [t[3] for t in targets])
    grid = np.logspace(math.log10(x_lo), math.log10(x_hi), 48)
    band = fit.predict(grid, level=PREDICTION_LEVEL)
    band = tuple(tuple(float(v) for v in a) for a in (grid, band.mean, band.lower, band.upper))
    preds = []
    for _, _, _, x in targets:
        p = fit.predict(x, level=PREDICTION_LEVEL)
        preds.append((float(p.mean), float(p.lower), float(p.upper), bool(p.extrapolated),
                      float(p.distance)))
    return ("ok", fit.form, fit.n_points, band, tuple(preds), fit.fit_flag)


def _fits(cells, sizes: Sequence[str], jobs: int = 1) -> tuple[Any, dict, dict, str]:
    try:
        from ..scaling.fit import ScalingLaw  # noqa: F401
        from ..scaling.predict import resolve_size  # noqa: F401 (the API the targets use)
    except ModuleNotFoundError:
        return None, {}, {}, ("not available: evalsuite.scaling (fit, predict) is missing in "
                              "this install.")

    curves: dict[str, list[Curve]] = {}
    predicted: dict[str, list[PredictedPoint]] = {}
    rows, used = [], []
    n_groups = n_fitted = 0
    skipped: list[str] = []
    params_only: list[str] = []
    groups = _groups(cells)
    todo = []
    for (task, series, shots), group in sorted(groups.items(), key=_group_order):
        n_groups += 1
        points = _final_per_size(group)
        x_name = "compute_flops"
        if len({c.compute_flops for c in points}) < MIN_SIZES:
            by_params = _final_per_size(group, "n_params")
            unknown = len({c.size for c in group if not c.compute_flops})
            why = (f"{task}/{series}: {len(points)} sizes with compute" + (
                f" ({unknown} without: tokens seen unknown; `evalsuite series PATH "
                "--tokens-per-step N --annotate` adds it)" if unknown else ""))
            if len({c.n_params for c in by_params}) < MIN_SIZES:
                skipped.append(why)
                continue
            # compute unknown: fall back to parameters, and say so
            params_only.append(f"{task}/{series}")
            points, x_name = by_params, "n_params"
        todo.append(((task, series, shots), points, _targets(points, sizes, x_name), x_name))
    results = parallel_map(_fit_group, [(f"{k[0]}/{k[1]}", p, t, x) for k, p, t, x in todo],
                           jobs)
    for ((task, series, shots), points, targets, x_name), res in zip(todo, results):
        if res[0] == "skip":
            skipped.append(res[1])
            continue
        _, form, n_fit, (grid, mean, lower, upper), preds, flag = res
        n_fitted += 1
        used.extend(points)
        norm = _normaliser(points)
        several_shots = len({k[2] for k in groups if k[0] == task}) > 1
        label = f"{series} {shots}-shot" if several_shots else series
        if x_name == "n_params":   # table rows only: the plots' axis is compute
            for (target, n, src, x), (p_mean, p_lo, p_hi, extrap, dist) in zip(targets, preds):
                score = norm(p_mean) if points[0].score is not None else None
                rows.append((task, shots, series, target, float(n), src, None, p_mean, p_lo,
                             p_hi, score, "yes" if extrap else "no", dist,
                             f"{form} in params", n_fit, flag))
            continue
        curves.setdefault(task, []).append(Curve(
            label=f"{label} ({form})", x=grid, y=tuple(float(norm(v)) for v in mean),
            lower=tuple(float(norm(v)) for v in lower),
            upper=tuple(float(norm(v)) for v in upper)))
        for (target, n, src, x), (p_mean, p_lo, p_hi, extrap, dist) in zip(targets, preds):
            predicted.setdefault(task, []).append(PredictedPoint(
                label=f"{label} {target}", x=float(x), y=float(norm(p_mean)),
                lower=float(norm(p_lo)), upper=float(norm(p_hi))))
            score = norm(p_mean) if points[0].score is not None else None
            rows.append((task, shots, series, target, float(n), src, float(x), p_mean, p_lo,
                         p_hi, score, "yes" if extrap else "no", dist, form, n_fit, flag))
    note = (f"{n_fitted} of {n_groups} task x series groups fitted"
            + (f"; against parameters, compute unknown (tokens seen not recorded: "
               f"`evalsuite series PATH --tokens-per-step N --annotate` adds them): "
               f"{', '.join(params_only[:20])}" if params_only else "")
            + (f"; not fitted: {'; '.join(skipped[:20])}" + ("; ..." if len(skipped) > 20 else "")
               if skipped else "") + ".")
    if not rows:
        return None, curves, predicted, ("no predictions: " + note if n_groups
                                         else "no predictions: no rows with compute_flops.")
    table = Table(
        name="predictions", title="Predictions for sizes not evaluated",
        columns=("task", "shots", "series", "size", "n_params", "n_params_source",
                 "compute_flops", "predicted", "lower", "upper", "predicted_score",
                 "extrapolated", "extrapolation_decades", "form", "n_fit", "fit_flag"),
        rows=tuple(rows), n_source=len(used), digest=digest_of(c.digest for c in used),
        formats={"shots": "int", "n_params": "sci", "compute_flops": "sci", "predicted": "num",
                 "lower": "num", "upper": "num", "predicted_score": "num",
                 "extrapolation_decades": "num", "n_fit": "int"},
        note=("Predictions, not measurements: the scaling law of evalsuite.scaling.fit (form "
              f"{FIT_SETTINGS['form']!r}, {_n_boot()} bootstrap replicates) fitted "
              "to the final checkpoint of each size (the series' widest precision), score "
              "against compute, evaluated at 6 * n_params * the series' final tokens. "
              f"lower/upper: {PREDICTION_LEVEL:.0%} prediction interval of the raw value; "
              "predicted_score is the chance-normalised mean; fit_flag: a poor fit (chi-square "
              "p < 0.01: the law misses its points by more than their noise) or a parameter "
              "on its bound. " + note))
    return table, curves, predicted, ""


def _group_order(kv):
    (task, series, shots), _ = kv
    return (task, series, -1 if shots is None else shots)


def _emergence(cells) -> tuple[Any, str]:
    """evalsuite.scaling.emergence.classify_curve across sizes (final checkpoints, x = compute)
    and across the steps of each size (x = tokens seen)."""
    try:
        from ..scaling.emergence import classify_curve
        from ..scaling.fit import FitError
    except ModuleNotFoundError:
        return None, "not available: evalsuite.scaling.emergence is missing in this install."

    rows, used = [], []
    counts: dict[str, int] = {}
    groups = _groups(cells)
    lower_better = 0
    for (task, series, shots), group in sorted(groups.items(), key=_group_order):
        if not group[0].higher_is_better:
            lower_better += 1  # the criterion reads a rise as improvement: not for a loss
            continue
        curves = [("sizes", "all", "compute_flops", _final_per_size(group))]
        by_size: dict[tuple, list] = {}
        for c in group:
            if c.tokens_seen and c.value is not None:
                by_size.setdefault((none_last(c.n_params), c.size), []).append(c)
        for (_, size), cs in sorted(by_size.items()):
            curves.append(("steps", size, "tokens_seen", sorted(cs, key=lambda c: c.tokens_seen)))
        for across, size, x_name, points in curves:
            points = [c for c in points if getattr(c, x_name) and c.value is not None]
            if len({getattr(c, x_name) for c in points}) < 4:
                continue
            try:
                r = classify_curve([float(getattr(c, x_name)) for c in points],
                                   [c.value for c in points],
                                   [c.stderr if c.stderr is not None else math.nan
                                    for c in points],
                                   chance=points[0].chance, x_name=x_name,
                                   n_boot=EMERGENCE_BOOT, seed=0)
            except (FitError, ValueError, ArithmeticError) as e:
                rows.append((task, shots, series, across, size, "n/a", None, None, None, None,
                             None, str(e)))
                continue
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
            used.extend(points)
            rows.append((task, shots, series, across, size, r.verdict, r.onset_x, r.onset_lower,
                         r.onset_upper, r.rise, r.delta_bic, r.explanation))
    if not rows:
        return None, ("no emergence verdicts: no task x series has 4 or more sizes or steps "
                      "with compute or tokens.")
    tally = ", ".join(f"{v}: {n}" for v, n in sorted(counts.items()))
    return Table(
        name="emergence", title="Emergence verdicts",
        columns=("task", "shots", "series", "across", "size", "verdict", "onset_x",
                 "onset_lower", "onset_upper", "rise", "delta_bic", "explanation"),
        rows=tuple(rows), n_source=len(used), digest=digest_of(c.digest for c in set(used)),
        formats={"shots": "int", "onset_x": "sci", "onset_lower": "sci", "onset_upper": "sci",
                 "rise": "num", "delta_bic": "num"},
        note=("Verdicts of evalsuite.scaling.emergence (flat, smooth, emergent, peaked, "
              "inverse) on the raw primary metric: across sizes (final checkpoints, x = "
              "training compute) and across the steps of each size (x = tokens seen). Onset "
              f"interval: 90% bootstrap ({EMERGENCE_BOOT} replicates). Tally: {tally}."
              + (f" {lower_better} task x series with a lower-is-better metric not classified."
                 if lower_better else ""))), ""


#: What a changed scaling API raises (a renamed function, a new required argument): the section
#: says "not available" and the rest of the leaderboard is still built.
_API_ERRORS = (ImportError, AttributeError, TypeError, KeyError)


def _api_note(section: str, e: Exception) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return (f"not available: the {section} API of evalsuite.scaling differs from what the "
            f"leaderboard expects ({type(e).__name__}: {first}).")


def _n_boot() -> int:
    from ..scaling.fit import DEFAULT_N_BOOT
    return DEFAULT_N_BOOT


def run_scaling(cells: Sequence[Any], predict_sizes: Sequence[str] = (),
                jobs: int = 1) -> ScalingOutput:
    """Fits, predictions and emergence verdicts for the leaderboard's cells."""
    notes: dict[str, str] = {}
    try:
        predictions, curves, predicted, note = _fits(cells, tuple(predict_sizes), jobs)
    except _API_ERRORS as e:
        predictions, curves, predicted, note = None, {}, {}, _api_note("fit/predict", e)
    if note:
        notes["predictions"] = note
    try:
        emergence, note = _emergence(cells)
    except _API_ERRORS as e:
        emergence, note = None, _api_note("emergence", e)
    if note:
        notes["emergence"] = note
    return ScalingOutput(predictions=predictions, emergence=emergence,
                         curves={k: tuple(v) for k, v in curves.items()},
                         predicted_points={k: tuple(v) for k, v in predicted.items()},
                         notes=notes)


def run_forecasts(cells: Sequence[Any], plans: Mapping[tuple[str, str], int]) -> Any:
    """The forecast of each curve's score at its run's planned final step (``plans``: (series,
    size) -> final step, as ``evalsuite watch`` records them), for runs not yet at that step.
    None when no run has a plan or every planned run is finished."""
    import pandas as pd

    from ..scaling.forecast import FORECAST_BOOT, FORECAST_LEVEL, forecast_curves

    mine = [c for c in cells if (c.series, c.size) in plans and c.step is not None
            and c.value is not None]
    if not mine:
        return None
    frame = pd.DataFrame([{"series": c.series, "size": c.size, "precision": c.precision,
                           "task": c.task, "metric": c.metric, "num_fewshot": c.num_fewshot,
                           "step": c.step, "value": c.value, "stderr": c.stderr,
                           "n_samples": c.n_samples, "is_primary": True} for c in mine])
    table = forecast_curves(frame, dict(plans))
    if table.empty:
        return None
    table = table[table["last_step"] < table["final_step"]]
    if table.empty:
        return None
    rows = tuple((r.task, r.num_fewshot, r.series, r.size, r.precision, r.metric, r.last_step,
                  r.latest, r.final_step, r.mean, r.lower, r.upper, r.decades, r.note)
                 for r in table.itertuples(index=False))
    return Table(
        name="forecasts", title="Forecast of the final score",
        columns=("task", "shots", "series", "size", "precision", "metric", "last_step", "latest",
                 "final_step", "forecast", "lower", "upper", "extrapolation_decades", "note"),
        rows=rows, n_source=len(mine), digest=digest_of(c.digest for c in mine),
        formats={"shots": "int", "last_step": "step", "latest": "num", "final_step": "step",
                 "forecast": "num", "lower": "num", "upper": "num",
                 "extrapolation_decades": "num"},
        note=("Forecasts, not measurements: each curve's score at its run's planned final step "
              "(recorded by `evalsuite watch`), from the checkpoints so far: a saturating power "
              f"law in steps with {FORECAST_BOOT} bootstrap replicates; lower/upper: "
              f"{FORECAST_LEVEL:.0%} interval (evalsuite.scaling.forecast, docs/watch.md)."))
