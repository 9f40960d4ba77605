"""Standard errors exactly as lm-evaluation-harness computes them, without its process pool.

lm-eval (``lm_eval/api/metrics.py``, 0.4.13) gives each metric the stderr of its aggregation:

- ``mean``: the closed form, sample standard deviation (n - 1) / sqrt(n);
- ``perplexity``, ``f1``, ``matthews_corrcoef``, ``median``, ``nanmean``, ``bleu``, ``chrf``,
  ``chrf++``, ``ter``: a bootstrap. ``bootstrap_iters`` resamples are drawn in chunks of
  ``min(1000, iters)`` (``iters // chunk`` chunks, so a remainder is dropped), chunk ``i`` with
  ``random.Random(i).choices(items, k=n)``; the stderr is the sample standard deviation of the
  resampled statistics. bleu, chrf, chrf++ and ter are capped at 100 resamples;
- any other aggregation (``weighted_perplexity`` behind word/byte perplexity, ``bits_per_byte``):
  no stderr ("N/A"), so none here either.

The draws here are lm-eval's own: Python's Mersenne Twister state for seed ``i`` is handed to
numpy's MT19937 (public ``getstate``/``state`` APIs) and ``floor(random() * n)`` is what
``Random.choices`` computes, so the resampled indices, and the stderrs, are identical
(``tests/test_stats.py``), and the statistic is vectorised over resamples where it can be.
The module is also the one home of every other resampling in evalsuite: the paired bootstrap
and sign test of a precision comparison, and the refit bootstrap (:func:`bootstrap_refits`) with
its percentile intervals (:func:`percentile_interval`) behind the scaling-law fits, the size x
tokens law, the emergence onset and the observational predictions. Nothing here imports lm-eval
or torch.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterator, Sequence

import numpy as np

#: Aggregations lm-eval bootstraps (by their registered names).
BOOTSTRAPPED = frozenset({"perplexity", "f1", "matthews_corrcoef", "median", "nanmean", "bleu",
                          "chrf", "chrf++", "ter"})
#: Corpus metrics whose bootstrap lm-eval caps at 100 resamples (each resample is slow).
CAPPED_AT_100 = frozenset({"bleu", "chrf", "chrf++", "ter"})
#: Cap on index-matrix elements held at once (memory stays bounded for large tasks).
_MAX_ELEMENTS = 2_000_000


def mean_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's ``mean_stderr``: sample standard deviation (ddof 1) over sqrt(n)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def lm_eval_draws(n: int, iters: int) -> Iterator[np.ndarray]:
    """lm-eval's bootstrap indices, as (rows, n) blocks: chunk ``i`` uses ``Random(i)``."""
    chunk = min(1000, iters)
    rows_per_block = max(1, min(chunk, _MAX_ELEMENTS // max(n, 1)))
    for i in range(iters // chunk):
        state = random.Random(i).getstate()[1]
        bitgen = np.random.MT19937()
        bitgen.state = {"bit_generator": "MT19937",
                        "state": {"key": np.asarray(state[:624], dtype=np.uint32),
                                  "pos": int(state[624])}}
        gen = np.random.Generator(bitgen)
        left = chunk
        while left:
            rows = min(rows_per_block, left)
            # Random.choices without weights: population[floor(random() * n)]
            yield np.floor(gen.random(rows * n) * n).astype(np.intp).reshape(rows, n)
            left -= rows


def _binary_pairs(items) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        gold = np.asarray([g for g, _ in items])
        pred = np.asarray([p for _, p in items])
    except (TypeError, ValueError):
        return None
    if gold.dtype.kind not in "biu" or pred.dtype.kind not in "biu":
        return None
    if not (set(np.unique(gold)) | set(np.unique(pred))) <= {0, 1}:
        return None
    return gold.astype(np.int64), pred.astype(np.int64)


def _vectorised(aggregation: str, items) -> Callable[[np.ndarray], np.ndarray] | None:
    """A statistic over a block of resample indices, equal to lm-eval's aggregation."""
    if aggregation in ("perplexity", "median", "nanmean"):
        try:
            x = np.asarray(items, dtype=float)
        except (TypeError, ValueError):
            return None
        if x.ndim != 1:
            return None
        if aggregation == "perplexity":
            return lambda idx: np.exp(-x[idx].mean(axis=1))
        if aggregation == "median":
            return lambda idx: np.sort(x[idx], axis=1)[:, idx.shape[1] // 2]

        def nanmean(idx):
            v = x[idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.nansum(v, axis=1) / (~np.isnan(v)).sum(axis=1)
        return nanmean
    if aggregation in ("f1", "matthews_corrcoef"):
        pairs = _binary_pairs(items)
        if pairs is None:
            return None  # multi-class or non-integer labels: lm-eval's own function per resample
        gold, pred = pairs

        def counts(idx):
            g, p = gold[idx], pred[idx]
            tp = ((g == 1) & (p == 1)).sum(axis=1).astype(float)
            fp = ((g == 0) & (p == 1)).sum(axis=1).astype(float)
            fn = ((g == 1) & (p == 0)).sum(axis=1).astype(float)
            tn = ((g == 0) & (p == 0)).sum(axis=1).astype(float)
            return tp, fp, fn, tn

        if aggregation == "f1":
            def f1(idx):  # sklearn f1_score, binary, pos_label=1, zero_division -> 0
                tp, fp, fn, _ = counts(idx)
                den = 2 * tp + fp + fn
                return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)
            return f1

        def mcc(idx):  # sklearn matthews_corrcoef, binary; 0 where undefined
            tp, fp, fn, tn = counts(idx)
            den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)
        return mcc
    return None


def metric_stderr(aggregation: str, items: Sequence[Any], bootstrap_iters: int,
                  aggregate: Callable[[list], float] | None = None) -> float | None:
    """The stderr lm-eval reports for a metric with this aggregation over these items.

    Args:
        aggregation: lm-eval's registered aggregation name (``mean``, ``perplexity``, ``f1``...).
        items: the per-document values lm-eval aggregates (floats, or (gold, pred) pairs...).
        bootstrap_iters: lm-eval's ``bootstrap_iters`` (0 means no stderr, as in lm-eval).
        aggregate: lm-eval's aggregation function, used per resample where no vectorised
            equivalent exists (bleu, chrf, ter, multi-class f1/mcc); without it those get None.
    Returns None where lm-eval reports "N/A" (no stderr for the aggregation, fewer than 2
    items, or ``bootstrap_iters`` of 0).
    """
    items = list(items)
    if bootstrap_iters <= 0 or len(items) < 2:
        return None
    if aggregation == "mean":
        return mean_stderr(items)
    if aggregation not in BOOTSTRAPPED:
        return None
    iters = min(bootstrap_iters, 100) if aggregation in CAPPED_AT_100 else bootstrap_iters
    stat = _vectorised(aggregation, items)
    if stat is None:
        if aggregate is None:
            return None

        def stat(idx):
            return np.asarray([aggregate([items[j] for j in row]) for row in idx], dtype=float)
    values = np.concatenate([np.asarray(stat(idx), dtype=float)
                             for idx in lm_eval_draws(len(items), iters)])
    if len(values) < 2:
        return None
    return float(np.std(values, ddof=1))



# ---- paired comparisons (precision compare) --------------------------------------------------

def _item_stat(metric: str, x, w):
    """The metric over (resampled) items, as the runner computes it: a mean, or a corpus-level
    ratio for perplexities and bits per byte (``x`` log-likelihoods, ``w`` words/bytes)."""
    import numpy as np

    if w is None:
        return x.mean(axis=-1)
    ll, ww = x.sum(axis=-1), w.sum(axis=-1)
    if metric == "bits_per_byte":
        return -ll / ww / math.log(2)
    return np.exp(-ll / ww)


def paired_bootstrap(metric: str, x_ref, x_new, w_ref=None, w_new=None, *, iters: int = 2000,
                     level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Delta (new - reference) of a metric over the same items, with a paired bootstrap interval.

    Items are resampled with replacement, the same indices for both precisions (Efron and
    Tibshirani, "An Introduction to the Bootstrap", ch. 13, percentile interval), so the
    interval reflects only the disagreement between the two precisions, not item difficulty.
    """
    import numpy as np

    x_ref, x_new = np.asarray(x_ref, float), np.asarray(x_new, float)
    n = len(x_ref)
    if n == 0 or len(x_new) != n:
        raise ValueError("paired_bootstrap needs the same non-zero number of items on both sides")
    wr = None if w_ref is None else np.asarray(w_ref, float)
    wn = None if w_new is None else np.asarray(w_new, float)
    ref = float(_item_stat(metric, x_ref, wr))
    new = float(_item_stat(metric, x_new, wn))
    rng = np.random.default_rng(seed)
    deltas = np.empty(iters)
    chunk = max(1, min(iters, 4_000_000 // max(n, 1)))
    for start in range(0, iters, chunk):
        idx = rng.integers(0, n, size=(min(chunk, iters - start), n))
        deltas[start:start + len(idx)] = (
            _item_stat(metric, x_new[idx], None if wn is None else wn[idx])
            - _item_stat(metric, x_ref[idx], None if wr is None else wr[idx]))
    deltas = deltas[np.isfinite(deltas)]
    lo, hi = percentile_interval(deltas, level) if len(deltas) else (math.nan, math.nan)
    return {"reference": ref, "value": new, "delta": new - ref, "lower": float(lo),
            "upper": float(hi), "n": n}


def sign_test(n_up: int, n_down: int) -> float:
    """Exact two-sided sign (McNemar) test on the items that changed: P(a split at least this
    uneven | each changed item equally likely to go either way)."""
    from scipy.stats import binomtest

    m = n_up + n_down
    if m == 0:
        return 1.0
    return float(binomtest(min(n_up, n_down), m, 0.5, alternative="two-sided").pvalue)


# ---- refit bootstraps (scaling laws, emergence onsets, observational predictions) ------------

def percentile_interval(values, level: float, axis: int = 0) -> tuple[Any, Any]:
    """The central ``level`` percentile interval of bootstrap values (Efron and Tibshirani,
    "An Introduction to the Bootstrap", ch. 13): the (1 - level)/2 and 1 - (1 - level)/2
    quantiles (numpy's default linear interpolation), along ``axis``."""
    lo = np.quantile(values, (1 - level) / 2, axis=axis)
    hi = np.quantile(values, 1 - (1 - level) / 2, axis=axis)
    return lo, hi


def bootstrap_refits(refit: Callable[[np.ndarray], Any], n_units: int, n_boot: int, rng, *,
                     resample: bool = True, accept: Callable[[np.ndarray], bool] | None = None,
                     max_tries: int | None = None, skip: tuple[type[BaseException], ...] = ()
                     ) -> list[Any]:
    """Refit on bootstrap resamples of ``n_units`` units (models, sizes), up to ``n_boot`` of them.

    Each try draws ``n_units`` indices with replacement (``rng.integers(0, n, n)``; with
    ``resample=False`` the indices are ``arange(n)`` and only ``refit``'s own draws vary, e.g.
    noise on each point), drops a resample that ``accept`` rejects (too few distinct x for the
    form) or whose ``refit(idx)`` raises one of ``skip``, and stops after ``n_boot`` results or
    ``max_tries`` tries (default ``n_boot``: every try counts). The order of draws from ``rng``
    is the caller's ``for`` loop's, so seeded results do not change when a loop moves here.
    """
    out: list[Any] = []
    tries = 0
    max_tries = n_boot if max_tries is None else max_tries
    while len(out) < n_boot and tries < max_tries:
        tries += 1
        idx = rng.integers(0, n_units, n_units) if resample else np.arange(n_units)
        if accept is not None and not accept(idx):
            continue
        try:
            out.append(refit(idx))
        except skip:
            continue
    return out


def observation_interval(curves, mean, level: float, rng, *, n_items: int | None = None,
                         noise_sd: float = 0.0, bounded: bool = True,
                         draws_per_curve: int = 1) -> tuple[Any, Any]:
    """The ``level`` interval of a new measured score at each x, from bootstrap curves.

    Each curve (one row per bootstrap replicate) gets the noise of one measurement: binomial,
    sqrt(p (1 - p) / n_items), for a bounded score over ``n_items`` items, else ``noise_sd``;
    the draws are clipped to [0, 1] when ``bounded``, and the interval is widened to contain the
    fitted ``mean`` (statsmodels' distinction: an interval for the mean curve and one for a new
    observation; this is the second). ``draws_per_curve`` noise draws per curve lower the Monte
    Carlo error of the percentiles.
    """
    curves = np.asarray(curves, float)
    if draws_per_curve > 1:
        curves = np.repeat(curves, draws_per_curve, axis=0)
    if bounded and n_items:
        p = np.clip(curves, 1e-3, 1 - 1e-3)
        sd = np.sqrt(p * (1 - p) / n_items)
    else:
        sd = np.full_like(curves, noise_sd)
    draws = curves + rng.standard_normal(curves.shape) * sd
    if bounded:
        draws = np.clip(draws, 0.0, 1.0)
    lo, hi = percentile_interval(draws, level)
    return np.minimum(lo, mean), np.maximum(hi, mean)
