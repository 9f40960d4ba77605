"""The reference ladder: a GPT-NeoX checkpoint series that evalsuite trains and ships itself.

Six sizes (about 7K to 450K non-embedding parameters) trained on the same generated arithmetic
token stream in lm-eval's ``arithmetic_*`` prompt shape, decontaminated against the GPT-3 test
items, with log-spaced checkpoints in ``models/ladder/<size>/step<N>/``. See
``models/ladder/CARD.md`` and ``evalsuite train-ladder``.
"""

from .data import (MIX, DecontaminationReport, Item, iter_items, load_test_contexts,
                   normalise_context)
from .sizes import LADDER_SIZES, LadderSize, build_config, count_model_params, size_by_label
from .tokenizer import build_digit_tokenizer
from .train import TrainSettings, build_token_stream, checkpoint_steps, train_ladder, train_size

__all__ = ["MIX", "DecontaminationReport", "Item", "iter_items", "load_test_contexts",
           "normalise_context", "LADDER_SIZES", "LadderSize", "build_config", "count_model_params",
           "size_by_label", "build_digit_tokenizer", "TrainSettings", "build_token_stream",
           "checkpoint_steps", "train_ladder", "train_size"]
