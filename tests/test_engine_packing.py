"""Packing layout, masks and batching of the engine, without a model."""

from __future__ import annotations

import pytest

from evalsuite.engine.packing import (ScoreUnit, batch_rows, build_batch, pack_units,
                                      truncate_unit)


def test_truncation_matches_lm_eval_window():
    unit = truncate_unit(0, tuple(range(10)), (10, 11, 12), max_length=8)
    # lm-eval feeds (ctx + cont)[-(max_length + 1):][:-1]; the scored context is what precedes
    assert unit.context + unit.continuation == tuple(range(4, 13))
    assert unit.continuation == (10, 11, 12)
    with pytest.raises(ValueError, match="max_length"):
        truncate_unit(1, (1,), tuple(range(9)), max_length=8)
    with pytest.raises(ValueError, match="non-empty"):
        truncate_unit(2, (), (1,), max_length=8)


def test_shared_context_packs_once_and_respects_max_length():
    ctx = (1, 2, 3, 4)
    units = [ScoreUnit(i, ctx, (9,) * (i + 2)) for i in range(3)] + [ScoreUnit(3, (5, 6), (7,))]
    rows = pack_units(units, max_length=100)
    assert sorted(len(r.units) for r in rows) == [1, 3]
    assert rows[-1].needs_second_pass and rows[-1].length == 4 + 1 + 2 + 3
    # a tight max_length splits the group, repeating the context
    assert len(pack_units(units[:3], max_length=8)) == 2
    assert len(pack_units(units, max_length=100, share_context=False)) == 4


def test_two_pass_mask_isolates_continuations():
    ctx_a, ctx_b = (1, 2, 3), (4, 5, 6, 7, 8)
    units = [ScoreUnit(0, ctx_a, (10, 11, 12)), ScoreUnit(1, ctx_a, (20, 21)),
             ScoreUnit(2, ctx_b, (30, 31)), ScoreUnit(3, ctx_b, (40,))]
    rows = [r for r in pack_units(units, max_length=64) if r.needs_second_pass]
    batch = build_batch(rows, pad_token_id=0)
    allowed = batch["second_allowed"][:, 0]
    width1 = batch["first_ids"].shape[1]
    row_a = next(b for b, r in enumerate(rows) if r.context == ctx_a)
    seq = batch["second_ids"][row_a].tolist()
    assert seq[:3] == [10, 11, 20]  # feeds: cont[:-1] of each continuation
    assert batch["second_positions"][row_a, :3].tolist() == [3, 4, 3]
    m = allowed[row_a]
    assert m[0, :3].all() and not m[0, 3:width1].any()  # whole context, no padding slots
    assert m[1, width1 + 0] and m[1, width1 + 1]          # own segment, causally
    assert not m[2, width1 + 0] and not m[2, width1 + 1]  # never another continuation
    assert m[2, width1 + 2]
    # targets: one per continuation token, in unit order
    assert batch["tokens"].numel() == sum(len(u.continuation) for r in rows for u in r.units)


def test_batches_cap_padding_and_never_mix_kinds():
    units = [ScoreUnit(i, tuple(range(n)), (1,)) for i, n in enumerate([100, 98, 95, 40, 39, 10])]
    units += [ScoreUnit(10, (1, 2), (3, 4)), ScoreUnit(11, (1, 2), (5, 6))]
    rows = pack_units(units, max_length=1000)
    batches = list(batch_rows(rows, max_rows=8, max_padding=0.1))
    for batch in batches:
        assert len({r.needs_second_pass for r in batch}) == 1
        width = max(r.length for r in batch)
        assert len(batch) * width - sum(r.length for r in batch) <= 0.1 * len(batch) * width
    assert [len(b) for b in batches] == [3, 2, 1, 1]


def test_two_pass_batches_cap_padding_in_both_passes():
    """Two-pass rows are grouped by context length, then continuation length: padding is
    counted over both passes, so equal totals with different splits are not batched together."""
    units = []
    for i, (c, k) in enumerate([(40, 2), (41, 30), (39, 3), (42, 29), (40, 31), (41, 2)]):
        ctx = tuple(range(1000 * i, 1000 * i + c))
        units += [ScoreUnit(10 * i, ctx, tuple(range(k))), ScoreUnit(10 * i + 1, ctx, (7, 8))]
    rows = pack_units(units, max_length=1000)
    batches = list(batch_rows(rows, max_rows=8, max_padding=0.1))
    for batch in batches:
        w1 = max(r.widths[0] for r in batch)
        w2 = max(r.widths[1] for r in batch)
        fed = len(batch) * (w1 + w2)
        assert fed - sum(sum(r.widths) for r in batch) <= 0.1 * fed
    # long continuations together, short ones together
    assert sorted(sorted(r.widths[1] for r in b) for b in batches) == [[2, 2, 3], [29, 30, 31]]
