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
Nothing here imports lm-eval or torch.
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

