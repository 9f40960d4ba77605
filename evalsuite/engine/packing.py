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

It runs in two passes so the long part keeps the fast causal attention kernel: pass 1 feeds the
contexts (plain causal attention, no mask, keys and values kept), pass 2 feeds only the
continuation segments with a small ``[segments x (context + segments)]`` mask over the cached
keys. A row with a single continuation needs no mask at all and is fed in one causal pass,
context and continuation together, as lm-eval does.
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

    @property
    def needs_second_pass(self) -> bool:
        return len(self.units) > 1 and any(len(u.continuation) > 1 for u in self.units)

    @property
    def widths(self) -> tuple[int, int]:
        """Tokens fed in pass 1 and pass 2 (see :func:`build_batch`)."""
        if self.needs_second_pass:
            return len(self.context), self.length - len(self.context)
        return self.length, 0


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
    Rows come back single-pass rows first, longest first; then two-pass rows by context length
    (in steps of 16 tokens) and within a step by continuation length, so that neighbours pad
    little in both passes (on real arc/hellaswag/lambada requests: 1.06x the real tokens in 94
    two-pass batches, against 1.18x in 75 when sorted by total length alone).
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
    def order(row: PackedRow):
        first, second = row.widths
        if not row.needs_second_pass:
            return (False, -first, 0, row.context)
        return (True, -(first // 16), -second, row.context)

    rows.sort(key=order)
    return rows


def batch_rows(rows: list[PackedRow], *, max_rows: int, max_padding: float = 0.1):
    """Split sorted rows into batches of at most ``max_rows`` rows of one kind whose padding, over
    both passes, stays within ``max_padding`` of the tokens fed (a row that would pad more
    starts a new batch instead)."""
    i = 0
    while i < len(rows):
        w1, w2 = rows[i].widths
        j, real = i + 1, w1 + w2
        while j < len(rows) and j - i < max_rows:
            if rows[j].needs_second_pass != rows[i].needs_second_pass:
                break
            a, b = rows[j].widths
            n1, n2, n_real = max(w1, a), max(w2, b), real + a + b
            fed = (j - i + 1) * (n1 + n2)
            if fed - n_real > max_padding * fed:
                break
            w1, w2, real = n1, n2, n_real
            j += 1
        yield rows[i:j]
        i = j


def _pad(seqs: list[list[int]], value: int):
    import torch

    out = torch.full((len(seqs), max(1, max(len(x) for x in seqs))), value, dtype=torch.long)
    for b, seq in enumerate(seqs):
        if seq:
            out[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def build_batch(rows: list[PackedRow], *, pad_token_id: int) -> dict:
    """Tensors for one batch of rows of one kind (see ``PackedRow.needs_second_pass``).

    Returns a dict with ``first_ids`` (pass 1: contexts, or context + continuation for a
    single-unit row, right-padded), and for two-pass batches ``second_ids``,
    ``second_positions`` and ``second_allowed`` (a boolean ``[batch, 1, S, C + S]`` mask,
    True = may attend, over the cached ``C`` context slots and the ``S`` segment slots).
    ``targets`` are flat indices into the concatenation of pass-1 outputs (``[B * C]``) and
    pass-2 outputs (``[B * S]``) that predict each unit's tokens, ``tokens`` the tokens, and
    ``units`` (unit, start, end) slices into those.
    """
    import torch

    two_pass = rows[0].needs_second_pass
    first: list[list[int]] = []
    second: list[list[int]] = []
    positions: list[list[int]] = []
    segments: list[list[int]] = []
    placed = []  # (row b, unit, [(pass, position) per continuation token])
    for b, row in enumerate(rows):
        c = len(row.context)
        if not two_pass:
            (unit,) = row.units if len(row.units) == 1 else (None,)
            if unit is None:  # several one-token continuations: all predicted at c - 1
                first.append(list(row.context))
                for u in row.units:
                    placed.append((b, u, [(1, c - 1)]))
                continue
            feed = list(unit.continuation[:-1])
            first.append(list(row.context) + feed)
            placed.append((b, unit, [(1, c - 1 + j) for j in range(len(unit.continuation))]))
            continue
        first.append(list(row.context))
        toks, pos, seg = [], [], []
        for s, unit in enumerate(row.units, start=1):
            feed = unit.continuation[:-1]
            start = len(toks)
            toks.extend(feed)
            pos.extend(range(c, c + len(feed)))
            seg.extend([s] * len(feed))
            placed.append((b, unit, [(1, c - 1)] + [(2, start + j) for j in range(len(feed))]))
        second.append(toks)
        positions.append(pos)
        segments.append(seg)

    first_ids = _pad(first, pad_token_id)
    width1 = first_ids.shape[1]
    batch: dict = {"first_ids": first_ids, "first_real": sum(len(x) for x in first)}
    width2 = 0
    if two_pass:
        second_ids = _pad(second, pad_token_id)
        width2 = second_ids.shape[1]
        pos_t = _pad(positions, 0)
        seg_t = _pad(segments, -1)
        ctx_len = torch.tensor([len(r.context) for r in rows])
        ctx_ok = torch.arange(width1)[None, :] < ctx_len[:, None]            # [B, C]
        idx = torch.arange(width2)
        causal = idx[None, :] <= idx[:, None]                                 # [S, S]
        same = (seg_t[:, :, None] == seg_t[:, None, :]) & (seg_t[:, None, :] >= 0)
        own = causal[None] & same                                             # [B, S, S]
        own |= torch.eye(width2, dtype=torch.bool)[None]  # padding rows see themselves: no NaN
        ctx_part = ctx_ok[:, None, :].expand(-1, width2, -1) & (seg_t[:, :, None] >= 0)
        batch.update(second_ids=second_ids, second_positions=pos_t,
                     second_allowed=torch.cat([ctx_part, own], dim=2)[:, None],
                     second_real=sum(len(x) for x in second))
    flat, tokens, slices = [], [], []
    n1 = len(rows) * width1
    for b, unit, where in placed:
        lo = len(flat)
        for pas, p in where:
            flat.append(b * width1 + p if pas == 1 else n1 + b * width2 + p)
        tokens.extend(unit.continuation)
        slices.append((unit, lo, len(flat)))
    batch.update(targets=torch.tensor(flat, dtype=torch.long),
                 tokens=torch.tensor(tokens, dtype=torch.long), units=slices)
    return batch
