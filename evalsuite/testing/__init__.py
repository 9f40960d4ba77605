"""Fixtures for tests, benchmarks and the offline demo: tiny real models built in code
(:mod:`.models`) and synthetic result rows shaped like a checkpoint series (:mod:`.rows`).
Nothing here touches the network; torch and transformers are imported only when a model is built."""

from .models import (build_bpe_tokenizer, build_byte_tokenizer, build_tiny_model, build_tiny_series,
                     perturb_model, write_trainer_state)
from .rows import synthetic_rows

__all__ = ["build_bpe_tokenizer", "build_byte_tokenizer", "build_tiny_model", "build_tiny_series",
           "perturb_model", "synthetic_rows", "write_trainer_state"]
