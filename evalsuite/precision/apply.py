"""Applying a precision to a loaded model, and the proof that it took effect.

Float precisions are a cast (checked); k-bit ones quantize every ``nn.Linear``'s weights in place
with torchao (see :mod:`.spec` for the formats and how their bits are counted). Every application
is verified (:class:`AppliedPrecision`); nothing falls back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..versions import package_version
from .spec import NF4_SCALER_BLOCK, SCALE_BITS, PrecisionError, PrecisionSpec, parse_precision

__all__ = ["AppliedPrecision", "apply_precision"]


@dataclass(frozen=True)
class AppliedPrecision:
    """What applying a precision did to one model: the proof that it took effect.

    Attributes:
        spec: canonical precision name.
        library: library and version that quantized or cast the weights.
        n_params: parameters of the model.
        n_quantized: weights replaced by k-bit codes (0 for float precisions).
        n_layers: linear layers quantized.
        model_bits: total bits of the weights as evaluated (codes, block scales, the rest at
            the compute dtype's width).
        bits_per_param: bits per quantized weight with block-scale overhead (exact average over
            the quantized layers; the float width for float precisions).
        weights_changed_frac: fraction of the quantized weights whose value changed (k-bit), or
            of floating parameters whose value changed by the cast (bf16/fp16, measured against
            the fp32 values when the caller passes them; None otherwise).
        weights_max_abs_change: largest absolute change of a weight.
        weights_rel_error: ||W_q - W|| / ||W|| over the quantized weights.
    """

    spec: str
    library: str
    n_params: int
    n_quantized: int
    n_layers: int
    model_bits: float
    bits_per_param: float
    weights_changed_frac: float | None
    weights_max_abs_change: float | None
    weights_rel_error: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require_torchao(spec: PrecisionSpec):
    try:
        import torchao  # noqa: F401
    except ImportError as e:
        raise PrecisionError(
            f"precision {spec.name} needs torchao (weight-only k-bit quantization on CPU and "
            "CUDA): pip install 'torchao>=0.18'. It does not fall back to fp32.") from e
    return f"torchao {package_version('torchao')}"


def _linear_layers(model) -> list[tuple[str, Any]]:
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def _check_blocks(spec: PrecisionSpec, layers) -> None:
    bad = [(n, tuple(m.weight.shape)) for n, m in layers
           if m.weight.shape[-1] % spec.block_size]
    if bad:
        widths = sorted({m.weight.shape[-1] for _, m in layers})
        g = 0
        for w in widths:
            g = math.gcd(g, int(w))
        fits = [b for b in (8, 16, 32, 64, 128, 256) if g % b == 0]
        raise PrecisionError(
            f"precision {spec.name}: block size {spec.block_size} does not divide the input width "
            f"of {len(bad)} linear layer(s) (first: {bad[0][0]} {bad[0][1]}); this model's widths "
            f"are {widths}. Use a block size that divides them all, e.g. "
            f"{spec.family}{spec.bits}-b{fits[-1] if fits else g}.")


def _dequantize(weight):
    """A quantized weight tensor (torchao subclass) back to fp32 values."""
    import torch

    if hasattr(weight, "get_original_weight"):  # NF4Tensor
        return weight.get_original_weight().to(torch.float32)
    if hasattr(weight, "dequantize"):
        return weight.dequantize().to(torch.float32)
    return weight.detach().to(torch.float32)


def _check_expected(spec: PrecisionSpec, name: str, w0, wq) -> None:
    """The change of every weight must be one a k-bit quantizer of this block size can make.

    Integer codes with a per-block absmax scale move a weight by at most half a step, and clipping
    to the asymmetric code range by at most one: |dW| <= absmax(block) / (2**(k-1) - 1). NF4 and
    fp4 codes lie in [-absmax, absmax] of their block: |dW| <= absmax(block). A larger change means
    the library did something else than the spec says (wrong blocks, wrong dtype).
    """
    rows = w0.reshape(-1, spec.block_size)
    absmax = rows.abs().amax(dim=1, keepdim=True)
    if spec.family == "int":
        bound = absmax / (2 ** (spec.bits - 1) - 1)
    else:
        bound = absmax
    excess = (wq.reshape(-1, spec.block_size) - rows).abs() - (bound * 1.01 + 1e-6)
    if bool((excess > 0).any()):
        raise PrecisionError(
            f"precision {spec.name}: {name} changed by more than a {spec.bits}-bit quantizer with "
            f"blocks of {spec.block_size} can (by {float(excess.max()):.3g} over the bound); the "
            "library did not apply the requested format")


def _nf4_scaler_block(n_blocks: int) -> int:
    for m in range(min(NF4_SCALER_BLOCK, n_blocks), 0, -1):
        if n_blocks % m == 0:
            return m
    return 1


def _quantize_layers(spec: PrecisionSpec, layers) -> float:
    """Replace each layer's weight with its k-bit form; returns the bits of codes and scales."""
    import torch

    bits = 0.0
    if spec.family == "int":
        from torchao.quantization import IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerGroup

        config = IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{spec.bits}"),
                                      granularity=PerGroup(spec.block_size),
                                      scale_dtype=torch.float16)
        for _, layer in layers:
            quantize_(layer, config, filter_fn=lambda mod, fqn: isinstance(mod, torch.nn.Linear))
            n = layer.weight.numel()
            bits += n * spec.bits + (n // spec.block_size) * SCALE_BITS["int"]
    elif spec.family == "nf":
        from torchao.quantization import to_nf4

        for _, layer in layers:
            w = layer.weight.detach().to(torch.float32)
            n_blocks = w.numel() // spec.block_size
            scaler = _nf4_scaler_block(n_blocks)
            q = to_nf4(w, block_size=spec.block_size, scaler_block_size=scaler)
            layer.weight = torch.nn.Parameter(q, requires_grad=False)
            bits += w.numel() * 4 + n_blocks * 8 + (n_blocks // scaler) * 32
    elif spec.family == "fp":
        from torchao.prototype.mx_formats.mx_tensor import MXTensor

        for _, layer in layers:
            w = layer.weight.detach().to(torch.float32)
            mx = MXTensor.to_mx(w, torch.float4_e2m1fn_x2, spec.block_size)
            # Weight-only emulation: the fp4 values, held in fp32 for the CPU matmul.
            layer.weight = torch.nn.Parameter(mx.dequantize(torch.float32).to(w.device),
                                              requires_grad=False)
            bits += w.numel() * 4 + (w.numel() // spec.block_size) * SCALE_BITS["fp"]
    else:  # pragma: no cover - parse_precision admits no other family
        raise PrecisionError(f"precision {spec.name}: no quantizer for family {spec.family!r}")
    return bits


def apply_precision(model, precision: str | PrecisionSpec, *, reference: dict | None = None
                    ) -> AppliedPrecision:
    """Apply a precision to a loaded model in place and verify that it took effect.

    Float precisions are applied by the loader (``torch_dtype``); here they are checked: every
    floating parameter must have that dtype. ``reference`` (name -> fp32 tensor) lets a cast be
    measured against the original values. k-bit precisions expect an fp32 model and replace the
    weights of every ``nn.Linear`` with the library's quantized tensor; the quantized values are
    compared with the originals and a quantization that changed no weight is an error.
    """
    import torch

    spec = precision if isinstance(precision, PrecisionSpec) else parse_precision(precision)
    params = list(model.named_parameters())
    n_params = sum(p.numel() for _, p in params)
    if not spec.is_quantized:
        want = getattr(torch, spec.torch_dtype)
        wrong = [(n, p.dtype) for n, p in params if p.is_floating_point() and p.dtype != want]
        if wrong:
            raise PrecisionError(f"precision {spec.name} did not take effect: {len(wrong)} "
                                 f"parameter(s) are not {want} (first: {wrong[0][0]} is "
                                 f"{wrong[0][1]})")
        changed = max_change = rel = None
        if reference:
            n_changed = n_total = 0
            max_change = 0.0
            for name, p in params:
                if name in reference:
                    d = (p.detach().to(torch.float32) - reference[name]).abs()
                    n_changed += int((d > 0).sum())
                    n_total += d.numel()
                    max_change = max(max_change, float(d.max()) if d.numel() else 0.0)
            changed = n_changed / n_total if n_total else None
        return AppliedPrecision(
            spec=spec.name, library=f"torch {package_version('torch')}", n_params=n_params, n_quantized=0,
            n_layers=0, model_bits=float(spec.bits * n_params), bits_per_param=float(spec.bits),
            weights_changed_frac=changed, weights_max_abs_change=max_change, weights_rel_error=rel)

    library = _require_torchao(spec)
    layers = _linear_layers(model)
    if not layers:
        raise PrecisionError(f"precision {spec.name}: the model has no nn.Linear layer to quantize "
                             f"({type(model).__name__})")
    bad_dtype = [n for n, m in layers if m.weight.dtype != torch.float32]
    if bad_dtype:
        raise PrecisionError(f"precision {spec.name} expects fp32 weights to quantize; "
                             f"{bad_dtype[0]} is {layers[0][1].weight.dtype}")
    _check_blocks(spec, layers)
    originals = {n: m.weight.detach().clone() for n, m in layers}
    code_bits = _quantize_layers(spec, layers)

    n_q = n_changed = 0
    max_change, err2, ref2 = 0.0, 0.0, 0.0
    for name, layer in layers:
        w0 = originals[name]
        wq = _dequantize(layer.weight)
        if wq.shape != w0.shape:
            raise PrecisionError(f"precision {spec.name}: {name} came back with shape "
                                 f"{tuple(wq.shape)}, expected {tuple(w0.shape)}")
        _check_expected(spec, name, w0, wq)
        d = (wq - w0).abs()
        n_q += w0.numel()
        n_changed += int((d > 0).sum())
        max_change = max(max_change, float(d.max()))
        err2 += float((d * d).sum())
        ref2 += float((w0 * w0).sum())
    if n_changed == 0:
        raise PrecisionError(f"precision {spec.name} did not take effect: no quantized weight "
                             "differs from the original (a silent fallback); refusing to evaluate")
    quantized_ids = {id(m.weight) for _, m in layers}
    rest = sum(p.numel() for _, p in model.named_parameters() if id(p) not in quantized_ids)
    return AppliedPrecision(
        spec=spec.name, library=library, n_params=n_params, n_quantized=n_q, n_layers=len(layers),
        model_bits=float(code_bits + 32 * rest), bits_per_param=code_bits / n_q,
        weights_changed_frac=n_changed / n_q, weights_max_abs_change=max_change,
        weights_rel_error=math.sqrt(err2 / ref2) if ref2 > 0 else None)
