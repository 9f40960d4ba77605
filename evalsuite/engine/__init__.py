"""The fast scoring engine: an lm-eval ``LM`` that gives ``HFLM``'s numbers with less work.

``create_lm(source, reuse=previous_lm)`` is the entry point the runner uses; importing this
package registers the model name ``"evalsuite"`` with lm-eval.
"""

from .lm import EvalsuiteLM, create_lm
from .tokens import TokenCache, fingerprint_tokenizer

__all__ = ["EvalsuiteLM", "create_lm", "TokenCache", "fingerprint_tokenizer"]
