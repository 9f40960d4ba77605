"""The shared helpers behind several stages: the final checkpoint of each size (records, frames,
leaderboard cells agree), and the refit bootstrap (the same draws as the loops it replaced)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from evalsuite.records import final_step_mask, latest_by, step_rank
from evalsuite.stats import bootstrap_refits, percentile_interval


def test_step_rank_puts_a_stepless_checkpoint_last():
    assert step_rank(10) < step_rank(200) < step_rank(None)
    assert step_rank(float("nan")) == step_rank(None)


def test_records_and_frames_pick_the_same_final_checkpoints():
    recs = [("a", "1m", 100), ("a", "1m", 800), ("a", "2m", 400), ("b", "1m", None),
            ("b", "1m", 900), ("a", "2m", 400)]
    items = [SimpleNamespace(series=s, size=z, step=t) for s, z, t in recs]
    picked = latest_by(items, key=lambda r: (r.series, r.size))
    assert {k: v.step for k, v in picked.items()} == {("a", "1m"): 800, ("a", "2m"): 400,
                                                      ("b", "1m"): None}
    assert picked[("a", "2m")] is items[2]  # ties: the first one
    frame = pd.DataFrame(recs, columns=["series", "size", "step"])
    kept = frame[final_step_mask(frame)]
    assert sorted(map(tuple, kept.astype(object).where(kept.notna(), None).values.tolist())) == \
        sorted([("a", "1m", 800.0), ("a", "2m", 400.0), ("a", "2m", 400.0), ("b", "1m", None)])
    assert final_step_mask(frame.iloc[:0]).empty


def test_bootstrap_refits_draws_as_the_loop_it_replaced():
    x = np.linspace(0.0, 1.0, 7)
    y = 2 * x + np.random.default_rng(1).normal(0, 0.1, 7)

    def loop(seed):  # the hand-written loop of scaling/emergence.py before it moved to stats
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(50):
            idx = rng.integers(0, 7, 7)
            if len(np.unique(x[idx])) < 4:
                continue
            yb = y[idx] + rng.standard_normal(7) * 0.05
            out.append(np.polyfit(x[idx], yb, 1)[0])
        return out

    rng = np.random.default_rng(3)

    def refit(idx):
        return np.polyfit(x[idx], y[idx] + rng.standard_normal(7) * 0.05, 1)[0]

    got = bootstrap_refits(refit, 7, 50, rng, accept=lambda idx: len(np.unique(x[idx])) >= 4)
    assert got == loop(3) and len(got) <= 50
    lo, hi = percentile_interval(got, 0.9)
    assert lo == np.quantile(got, (1 - 0.9) / 2) and hi == np.quantile(got, 1 - (1 - 0.9) / 2)


def test_bootstrap_refits_skips_failed_refits_within_its_tries():
    rng = np.random.default_rng(0)
    calls = []

    def refit(idx):
        calls.append(1)
        if len(calls) % 2:
            raise ValueError("no fit")
        return len(calls)

    got = bootstrap_refits(refit, 5, 10, rng, max_tries=12, skip=(ValueError,))
    assert got == [2, 4, 6, 8, 10, 12] and len(calls) == 12
