"""Precision specs: parse a name (``fp32``, ``int4-b64``, ``nf4``...), its bits per parameter.

Specs (``evalsuite run --precisions ...``):

========  =======================================================  ==============================
spec      what                                                     library (CPU and CUDA)
========  =======================================================  ==============================
fp32      reference, weights as loaded                             torch
bf16      weights cast to bfloat16                                 torch
fp16      weights cast to float16 (watch for overflow: NaN/inf)    torch
intK-bN   K in 3..8: symmetric round-to-nearest integer codes,     torchao ``IntxWeightOnlyConfig``
          one fp16 scale per block of N input weights (default 64)  (``PerGroup(N)``, fp16 scales)
nf4-bN    4-bit NormalFloat (QLoRA) codes, one scale per block of  torchao ``NF4Tensor``
          N weights, scales double-quantized to int8 (default 64)  (``to_nf4``)
fp4-bN    4-bit float e2m1 codes with one shared power-of-two      torchao MX format
          (e8m0) scale per block of N weights (default 32)          (``MXTensor.to_mx``), dequantized
                                                                   to fp32 for the matmul
========  =======================================================  ==============================

Weight-only quantization, as in Dettmers and Zettlemoyer, "The case for 4-bit precision: k-bit
Inference Scaling Laws" (ICML 2023): the weights of every ``nn.Linear`` (attention, MLP, output
head) are quantized; activations, biases, layer norms and the input embedding keep the compute
dtype (fp32). k-bit models are loaded in fp32 and quantized in place.

Bits per parameter count the block-scale overhead the way that paper does: ``k + s / N`` for a
block of N weights sharing an s-bit scale (s = 16 for intK, whose scales are stored in fp16;
s = 8 for the e8m0 scale of fp4; nf4 stores an int8 scale per block plus one fp32 scale per
block of block scales: ``4 + 8/N + 32/(N*M)``). Total model bits add every other parameter at the
compute dtype's width. torchao's CPU tensors keep the codes one per int8 byte (not packed), so the
bits are those of the format, not of the process memory (``benchmarks/bench_precision.py``
measures that).

Every application is verified (:class:`AppliedPrecision`): a quantized model whose weights did not
change, changed by more than the format allows (per block), or a cast that did not happen, raises
:class:`PrecisionError`; so does a spec that cannot be
applied (unknown, missing library, block size that does not divide a layer). Nothing falls back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PrecisionError", "PrecisionSpec", "parse_precision", "describe_precisions",
           "bits_per_param", "FLOAT_PRECISIONS", "DEFAULT_BLOCK", "SCALE_BITS"]

#: Float precisions: spec -> torch dtype name.
FLOAT_PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Default block size per quantized family (bitsandbytes/QLoRA use 64; the MX spec uses 32).
DEFAULT_BLOCK = {"int": 64, "nf": 64, "fp": 32}
#: Bits of one block scale per family (see the module docstring).
SCALE_BITS = {"int": 16, "nf": 8, "fp": 8}
NF4_SCALER_BLOCK = 256  # torchao's default block of block scales (double quantization)

_SPEC = re.compile(r"^(?:(int)([3-8])|(nf)(4)|(fp)(4))(?:-b(\d+))?$")


class PrecisionError(ValueError):
    """A precision that cannot be parsed, applied on this device, or verified."""


@dataclass(frozen=True)
class PrecisionSpec:
    """A parsed precision.

    Attributes:
        name: canonical spec (``fp32``, ``int4-b64``); what rows and checkpoint ids carry.
        family: ``float``, ``int`` (integer codes), ``nf`` (NormalFloat) or ``fp`` (float codes).
        bits: bits of one weight code (32/16 for float precisions).
        block_size: weights sharing one scale (None for float precisions).
    """

    name: str
    family: str
    bits: int
    block_size: int | None = None

    @property
    def is_quantized(self) -> bool:
        return self.family != "float"

    @property
    def torch_dtype(self) -> str:
        """dtype the model is loaded in: the float dtype, or fp32 for k-bit (quantized after)."""
        return FLOAT_PRECISIONS.get(self.name, "float32")

    @property
    def bits_per_param(self) -> float:
        """Bits per quantized weight including block-scale overhead (nominal for nf4: M = 256)."""
        if not self.is_quantized:
            return float(self.bits)
        b = float(self.block_size)
        extra = SCALE_BITS[self.family] / b
        if self.family == "nf":
            extra += 32.0 / (b * NF4_SCALER_BLOCK)
        return self.bits + extra


def parse_precision(text: str) -> PrecisionSpec:
    """Parse ``fp32 | bf16 | fp16 | int3..int8 | nf4 | fp4`` with an optional ``-bN`` block size.

    The name is canonicalised with its block size (``int4`` -> ``int4-b64``) except for float
    precisions, so one precision has one name in every row.
    """
    raw = str(text).strip().lower()
    if raw in FLOAT_PRECISIONS:
        return PrecisionSpec(name=raw, family="float", bits=32 if raw == "fp32" else 16)
    m = _SPEC.match(raw)
    if not m:
        raise PrecisionError(
            f"precision {text!r} is not supported: use {describe_precisions()}. "
            "A requested precision never silently falls back.")
    family = m.group(1) or m.group(3) or m.group(5)
    bits = int(m.group(2) or m.group(4) or m.group(6))
    block = int(m.group(7)) if m.group(7) else DEFAULT_BLOCK[family]
    if block < 2 or block > 4096 or (family == "nf" and block % 2):
        raise PrecisionError(f"precision {text!r}: block size {block} is out of range; use 2..4096 "
                             "(even for nf4), e.g. int4-b64")
    return PrecisionSpec(name=f"{family}{bits}-b{block}", family=family, bits=bits,
                         block_size=block)


def describe_precisions() -> str:
    return ("fp32, bf16, fp16, int3..int8, nf4, fp4, with an optional block size for the k-bit "
            "ones (int4-b32; defaults: int/nf4 64, fp4 32)")


def bits_per_param(precision: str | PrecisionSpec) -> float:
    """Bits per quantized weight of a spec, block-scale overhead included."""
    spec = precision if isinstance(precision, PrecisionSpec) else parse_precision(precision)
    return spec.bits_per_param
