"""Prefix-shared packing: each distinct context is run once, all its continuations ride along.

A multiple-choice item with context C and choices A, B, D becomes one row::

    tokens     C0 C1 ... Cn | A0 .. A(k-2) | B0 .. | D0 ..
    positions  0  1  ... n  | n+1 ...      | n+1 ..| n+1 ..

with an attention mask in which every continuation segment sees the whole context and itself
(causally) but never another continuation. The first token of every continuation is predicted
from the last context position, so a single-token choice costs no extra token at all, and
continuation ``x`` only feeds its first ``len(x) - 1`` tokens. Position ids restart after the
context for every segment, so each continuation sees exactly the positions it would see alone,
and the scores equal lm-eval's one-request-per-row scores up to float rounding.

This is the tree-attention idea used for speculative decoding and shared-prefix batching
(e.g. SpecInfer, Miao et al. 2023; Hydragen, Juravsky et al. 2024), applied to scoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ScoreUnit:
    """One continuation to score: its context, its tokens, and where the result goes."""
    request_index: int
    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass
class PackedRow:
    """One model row: a context and the continuations packed after it."""
    context: tuple[int, ...]
    units: list[ScoreUnit] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.context) + sum(len(u.continuation) - 1 for u in self.units)


def truncate_unit(request_index: int, context: tuple[int, ...], continuation: tuple[int, ...],
                  max_length: int) -> ScoreUnit:
    """Apply lm-eval's left truncation: the model sees ``(ctx + cont)[-(max_length + 1):][:-1]``."""
    if not context or not continuation:
        raise ValueError("a scoring request needs a non-empty context and continuation "
                         f"(request {request_index}: {len(context)} context and "
                         f"{len(continuation)} continuation tokens)")
    if len(continuation) > max_length:
        raise ValueError(f"continuation of request {request_index} has {len(continuation)} tokens, "
                         f"more than the model's max_length {max_length}")
    whole = context + continuation
    if len(whole) > max_length + 1:
        whole = whole[-(max_length + 1):]
        context = whole[:len(whole) - len(continuation)]
    return ScoreUnit(request_index, context, continuation)


def pack_units(units: list[ScoreUnit], *, max_length: int, share_context: bool = True
               ) -> list[PackedRow]:
    """Group units by identical context into rows of at most ``max_length`` tokens.

    A row always holds at least one unit; further units sharing the context are added while
    the row stays within ``max_length`` (the longest row lm-eval itself would build), otherwise
    a new row repeats the context. With ``share_context=False`` every unit gets its own row.
    Rows come back longest first, so batches of neighbours pad little.
    """
    rows: list[PackedRow] = []
    if share_context:
        open_rows: dict[tuple[int, ...], PackedRow] = {}
        for unit in units:
            row = open_rows.get(unit.context)
            extra = len(unit.continuation) - 1
            if row is None or (row.units and row.length + extra > max_length):
                row = PackedRow(unit.context)
                open_rows[unit.context] = row
                rows.append(row)
            row.units.append(unit)
    else:
        rows = [PackedRow(u.context, [u]) for u in units]
    rows.sort(key=lambda r: (-r.length, r.context))
    return rows


def build_batch(rows: list[PackedRow], *, pad_token_id: int):
    """Tensors for a batch of rows.

    Returns ``(input_ids, position_ids, allowed, targets)``: ``allowed`` is a boolean
    ``[batch, 1, T, T]`` mask (True = may attend), and ``targets`` lists, per unit, the flat
    (row * T + position) indices whose outputs predict its tokens, and the tokens themselves.
    """
    import torch

    width = max(r.length for r in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((n, width), dtype=torch.long)
    segment = torch.full((n, width), -1, dtype=torch.long)
    flat_index: list[int] = []
    target_tokens: list[int] = []
    unit_slices: list[tuple[ScoreUnit, int, int]] = []
    for b, row in enumerate(rows):
        c = len(row.context)
        tokens = list(row.context)
        positions = list(range(c))
        segments = [0] * c
        for s, unit in enumerate(row.units, start=1):
            cont = unit.continuation
            start = len(tokens)
            feed = cont[:-1]
            tokens.extend(feed)
            positions.extend(range(c, c + len(feed)))
            segments.extend([s] * len(feed))
            first = len(flat_index)
            # token 0 is predicted at the last context position, token j at feed position j-1
            flat_index.append(b * width + c - 1)
            flat_index.extend(b * width + start + j for j in range(len(feed)))
            target_tokens.extend(cont)
            unit_slices.append((unit, first, len(flat_index)))
        length = len(tokens)
        input_ids[b, :length] = torch.tensor(tokens, dtype=torch.long)
        position_ids[b, :length] = torch.tensor(positions, dtype=torch.long)
        segment[b, :length] = torch.tensor(segments, dtype=torch.long)

    seg_q = segment[:, :, None]
    seg_k = segment[:, None, :]
    idx = torch.arange(width)
    causal = idx[None, :] <= idx[:, None]
    allowed = causal[None] & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))
    # padding queries attend to themselves only, so no softmax row is empty (no NaN)
    allowed |= torch.eye(width, dtype=torch.bool)[None]
    return (input_ids, position_ids, allowed[:, None],
            (torch.tensor(flat_index, dtype=torch.long),
             torch.tensor(target_tokens, dtype=torch.long), unit_slices))
