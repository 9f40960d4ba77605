"""Model sizes of the reference ladder: GPT-NeoX configs from about 7K to 450K parameters.

The label is the non-embedding parameter count (everything except ``embed_in`` and
``embed_out``), rounded, lower case, the way Pythia names sizes. ``tests/test_ladder*.py``
checks each label against the count of the built model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LadderSize:
    """One rung: width, depth, heads (head size 16 throughout)."""

    label: str
    hidden_size: int
    num_layers: int
    num_heads: int


#: Smallest to largest. ~67x in non-embedding parameters. The top stays near 0.5M because at
#: this token budget larger models learn slower per step and cost more (../shared/NOTES.md:
#: 3.2M reached 27% after 600 steps where 0.45M-0.8M reached 84-86% after 800).
LADDER_SIZES: tuple[LadderSize, ...] = (
    LadderSize("7k", 16, 2, 1),
    LadderSize("25k", 32, 2, 2),
    LadderSize("55k", 48, 2, 3),
    LadderSize("100k", 64, 2, 4),
    LadderSize("200k", 64, 4, 4),
    LadderSize("450k", 96, 4, 6),
)


def size_by_label(label: str) -> LadderSize:
    for s in LADDER_SIZES:
        if s.label == label:
            return s
    raise ValueError(f"unknown ladder size {label!r}; known: "
                     + ", ".join(s.label for s in LADDER_SIZES))


def build_config(size: LadderSize, *, vocab_size: int, eos_id: int, max_positions: int = 512,
                 rotary_pct: float = 1.0):
    """The GPT-NeoX config of one rung: Pythia's layout (parallel residual, untied
    embeddings), no dropout; RoPE on ``rotary_pct`` of each head (Pythia: 0.25)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=size.hidden_size, num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads, intermediate_size=4 * size.hidden_size,
        max_position_embeddings=max_positions, rotary_pct=rotary_pct, use_parallel_residual=True,
        tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0,
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)


def count_model_params(model) -> tuple[int, int]:
    """(total, non-embedding) parameter counts of a GPT-NeoX model."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return total, total - emb
