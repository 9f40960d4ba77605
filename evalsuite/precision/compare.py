"""Comparing precisions on the same items: paired deltas with bootstrap intervals, sign tests.

Pure: DataFrames in, records out (the bootstrap and the sign test live in :mod:`evalsuite.stats`).
"""

from __future__ import annotations

from typing import Any

from ..stats import paired_bootstrap, sign_test
from .spec import PrecisionError, parse_precision

__all__ = ["PAIR_KEYS", "gold_loglik", "compare_precisions"]


#: Row columns that identify "the same weights on the same task" across precisions.
PAIR_KEYS = ("series", "size", "step", "weight_hash", "task", "metric", "num_fewshot", "limit")


def gold_loglik(samples):
    """Per item, the log-likelihood (nats) of the gold continuation, from a per-sample frame.

    Loglikelihood tasks have one continuation per item: its log-likelihood. Multiple-choice
    items have one per choice: the one at the target index. NaN where it cannot be told.
    """
    import json

    import numpy as np

    out = np.full(len(samples), np.nan)
    for i, (lls, target) in enumerate(zip(samples["loglikelihoods"], samples["target"])):
        lls = list(lls) if lls is not None else []
        if len(lls) == 1:
            out[i] = float(lls[0])
            continue
        try:
            t = json.loads(target) if isinstance(target, str) else target
        except ValueError:
            continue
        if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < len(lls):
            out[i] = float(lls[t])
    return out


def compare_precisions(rows, load_samples, *, precision: str, against: str = "fp32",
                       level: float = 0.95, iters: int = 2000, seed: int = 0,
                       measure: str = "primary") -> tuple[list[dict[str, Any]], list[str]]:
    """Paired deltas of ``precision`` against ``against`` for every checkpoint x task in ``rows``.

    ``rows``: result rows as a DataFrame (``ResultStore.to_frame()``); ``load_samples(cell_key)``
    returns a cell's per-sample DataFrame. Items are matched on (doc_id, filter); items whose
    log-likelihoods are not finite at either precision are left out and counted. ``measure``:
    ``primary`` (the task's primary metric) or ``loglik`` (mean log-likelihood of the gold
    continuation in nats: far more sensitive than accuracy near the floor). Returns
    (records, problems): one record per pair, and a message for each pair that has no interval.
    """
    if measure not in ("primary", "loglik"):
        raise PrecisionError(f"measure {measure!r}: use primary or loglik")
    import numpy as np

    new_name, ref_name = parse_precision(precision).name, parse_precision(against).name
    if new_name == ref_name:
        raise PrecisionError(f"--precision and --against are the same ({new_name})")
    prim = rows[rows["is_primary"].astype(bool)] if len(rows) else rows
    prim = prim.drop_duplicates(subset=list(PAIR_KEYS) + ["precision"], keep="last")
    keyed = {}
    for r in prim.to_dict(orient="records"):
        k = tuple(str(r.get(c)) for c in PAIR_KEYS)
        keyed.setdefault(k, {})[r["precision"]] = r
    records, problems = [], []
    for k, by_prec in sorted(keyed.items()):
        if new_name not in by_prec or ref_name not in by_prec:
            continue
        rn, rr = by_prec[new_name], by_prec[ref_name]
        metric = rn["metric"]
        what = f"{rn['series']}-{rn['size']}@{rn['step']} {rn['task']}"
        try:
            sn, sr = load_samples(rn["cell_key"]), load_samples(rr["cell_key"])
        except (OSError, ValueError) as e:
            problems.append(f"{what}: per-sample file missing or unreadable ({e}); no interval")
            continue
        col = f"metric_{metric}"
        if measure == "loglik":
            metric, col = "loglik", "metric_loglik"
            sn = sn.assign(metric_loglik=gold_loglik(sn))
            sr = sr.assign(metric_loglik=gold_loglik(sr))
            sn = sn.assign(nonfinite=sn.get("nonfinite", False) | ~np.isfinite(sn[col]))
            sr = sr.assign(nonfinite=sr.get("nonfinite", False) | ~np.isfinite(sr[col]))
        if col not in sn or col not in sr:
            problems.append(f"{what}: per-sample results have no {col}; no interval")
            continue
        keep = ["doc_id", "filter", col] + [c for c in (f"{col}_weight", "nonfinite") if c in sn]
        keep_r = ["doc_id", "filter", col] + [c for c in (f"{col}_weight", "nonfinite") if c in sr]
        m = sr[keep_r].merge(sn[keep], on=["doc_id", "filter"], suffixes=("_ref", "_new"))
        bad = np.zeros(len(m), dtype=bool)
        for side in ("_ref", "_new"):
            if f"nonfinite{side}" in m:
                bad |= m[f"nonfinite{side}"].astype(bool).to_numpy()
        m = m[~bad]
        if not len(m):
            problems.append(f"{what}: no item scored finitely at both precisions; no interval")
            continue
        weighted = f"{col}_weight_ref" in m
        res = paired_bootstrap(
            metric, m[f"{col}_ref"].to_numpy(float), m[f"{col}_new"].to_numpy(float),
            m[f"{col}_weight_ref"].to_numpy(float) if weighted else None,
            m[f"{col}_weight_new"].to_numpy(float) if weighted else None,
            iters=iters, level=level, seed=seed)
        hib = True if measure == "loglik" else bool(rn.get("higher_is_better", True))
        a, b = m[f"{col}_ref"].to_numpy(float), m[f"{col}_new"].to_numpy(float)
        n_up, n_down = int((b > a).sum()), int((b < a).sum())
        binary = not weighted and bool(np.isin(np.concatenate([a, b]), (0.0, 1.0)).all())
        # With few changed items the percentile bootstrap is too narrow (a resample rarely
        # drops all of, say, 4 changes that went one way): for 0/1 metrics a difference also
        # needs the exact sign test on the changed items to clear the same level.
        p_sign = sign_test(n_up, n_down) if binary else None
        if res["lower"] <= 0.0 <= res["upper"] or (p_sign is not None and p_sign >= 1 - level):
            verdict = "within"
        else:
            verdict = "better" if (res["delta"] > 0) == hib else "worse"
        records.append({
            "series": rn["series"], "size": rn["size"], "step": rn["step"],
            "n_params": rn.get("n_params"), "task": rn["task"], "metric": metric,
            "precision": new_name, "against": ref_name, "n": res["n"],
            "n_excluded": int(bad.sum()), "reference": res["reference"], "value": res["value"],
            "delta": res["delta"], "lower": res["lower"], "upper": res["upper"],
            "level": level, "n_up": n_up, "n_down": n_down, "p_sign": p_sign,
            "verdict": verdict,
            "model_bits": rn.get("model_bits"), "reference_model_bits": rr.get("model_bits")})
    records.sort(key=lambda r: (r["task"], str(r["series"]), r["n_params"] or 0, r["step"] or 0))
    return records, problems
