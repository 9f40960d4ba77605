"""Hooks into training libraries (docs/watch.md).

``EvalsuiteCallback`` (Hugging Face ``transformers.Trainer``): on each save it scores the new
checkpoint in a background process, or marks it for an ``evalsuite watch`` beside the run, and
logs the primary metrics back through the Trainer's loggers. Importing this package loads
neither torch nor transformers; the callback class is built on first use.
"""

from __future__ import annotations

__all__ = ["EvalsuiteCallback", "READY_MARKER"]

#: The file the callback writes into a saved checkpoint in ``mode="queue"`` (``evalsuite watch
#: --marker evalsuite.ready`` scores only checkpoints that have it).
READY_MARKER = "evalsuite.ready"


def __getattr__(name: str):
    if name == "EvalsuiteCallback":
        from .hf import EvalsuiteCallback

        return EvalsuiteCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
