"""evalsuite.stats reproduces lm-eval's stderr for every aggregation, draw for draw."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from evalsuite.stats import metric_stderr

M = pytest.importorskip("lm_eval.api.metrics")


def _lm_eval_stderr(fn, items, iters, monkeypatch):
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's single-process path: same draws
    se = M.stderr_for_metric(fn, iters)
    if se is None:
        return None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return se(items)


def _items(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "float":
        return [float(v) for v in rng.normal(-3.0, 1.0, n)]
    if kind == "pair":
        return [(int(a), int(b)) for a, b in rng.integers(0, 2, (n, 2))]
    if kind == "multiclass":
        return [(int(a), int(b)) for a, b in rng.integers(0, 3, (n, 2))]
    if kind == "weighted":
        return [(float(a), int(b)) for a, b in zip(rng.normal(-30, 5, n), rng.integers(5, 20, n))]
    raise AssertionError(kind)


CASES = [("mean", "mean", "float"), ("perplexity", "perplexity", "float"),
         ("median", "median", "float"), ("f1", "f1_score", "pair"),
         ("matthews_corrcoef", "matthews_corrcoef", "pair"),
         ("matthews_corrcoef", "matthews_corrcoef", "multiclass"),
         ("weighted_perplexity", "weighted_perplexity", "weighted"),
         ("bits_per_byte", "bits_per_byte", "weighted")]


@pytest.mark.parametrize("aggregation,fn_name,kind", CASES)
@pytest.mark.parametrize("iters,n", [(100, 40), (2500, 33)])
def test_stderr_equals_lm_eval(aggregation, fn_name, kind, iters, n, monkeypatch):
    if kind == "multiclass" or fn_name in ("f1_score", "matthews_corrcoef"):
        iters = min(iters, 300)  # lm-eval calls sklearn once per resample: keep the test quick
    fn = getattr(M, fn_name)
    items = _items(kind, n, seed=iters + n)
    ref = _lm_eval_stderr(fn, items, iters, monkeypatch)
    ours = metric_stderr(aggregation, items, iters, fn)
    if ref is None or ref == "N/A":
        assert ours is None  # lm-eval has no stderr for weighted perplexity / bits per byte
    else:
        assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_f1_items_are_gold_pred_pairs_not_value_weight():
    """The old reader took (gold, pred) as (value, weight): sum(gold)/sum(pred) bootstrapped."""
    items = _items("pair", 200, seed=3)
    se = metric_stderr("f1", items, 1000, M.f1_score)
    g = np.array([a for a, _ in items], float)
    p = np.array([b for _, b in items], float)
    ratio_se = np.std([g[i].sum() / p[i].sum() for i in
                       np.random.default_rng(0).integers(0, 200, (1000, 200))], ddof=1)
    assert se is not None and abs(se - ratio_se) > 1e-3


def test_no_stderr_without_bootstrap_or_items():
    assert metric_stderr("perplexity", [1.0, 2.0], 0) is None
    assert metric_stderr("mean", [1.0], 1000) is None
    assert metric_stderr("bleu", [("a", "b")] * 3, 1000) is None  # needs lm-eval's function
