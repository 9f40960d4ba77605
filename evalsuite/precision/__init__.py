"""Precision as an experimental axis: parse a spec (:mod:`.spec`), apply it to a loaded model and
prove it took effect (:mod:`.apply`), compare precisions on the same items (:mod:`.compare`),
and find the k-bit frontier (:mod:`.frontier`). Nothing here imports torch at import time."""

from ..stats import paired_bootstrap, sign_test
from .apply import AppliedPrecision, apply_precision
from .compare import compare_precisions
from .frontier import precision_frontier
from .spec import (FLOAT_PRECISIONS, PrecisionError, PrecisionSpec, bits_per_param,
                   describe_precisions, parse_precision)

__all__ = ["PrecisionError", "PrecisionSpec", "AppliedPrecision", "parse_precision",
           "bits_per_param", "apply_precision", "describe_precisions", "FLOAT_PRECISIONS",
           "paired_bootstrap", "compare_precisions", "precision_frontier", "sign_test"]
