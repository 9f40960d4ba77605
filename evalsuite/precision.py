"""Precision as an experimental axis: parse a precision spec, apply it to a loaded model, prove it.

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

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from .versions import package_version

__all__ = ["PrecisionError", "PrecisionSpec", "AppliedPrecision", "parse_precision",
           "bits_per_param", "apply_precision", "describe_precisions", "FLOAT_PRECISIONS",
           "paired_bootstrap", "compare_precisions", "precision_frontier", "sign_test"]

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


# ---- paired comparisons and the k-bit frontier (pure: DataFrames in, records out) -------------

#: Row columns that identify "the same weights on the same task" across precisions.
PAIR_KEYS = ("series", "size", "step", "weight_hash", "task", "metric", "num_fewshot", "limit")


def _item_stat(metric: str, x, w):
    """The metric over (resampled) items, as the runner computes it: a mean, or a corpus-level
    ratio for perplexities and bits per byte (``x`` log-likelihoods, ``w`` words/bytes)."""
    import numpy as np

    if w is None:
        return x.mean(axis=-1)
    ll, ww = x.sum(axis=-1), w.sum(axis=-1)
    if metric == "bits_per_byte":
        return -ll / ww / math.log(2)
    return np.exp(-ll / ww)


def paired_bootstrap(metric: str, x_ref, x_new, w_ref=None, w_new=None, *, iters: int = 2000,
                     level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Delta (new - reference) of a metric over the same items, with a paired bootstrap interval.

    Items are resampled with replacement, the same indices for both precisions (Efron and
    Tibshirani, "An Introduction to the Bootstrap", ch. 13, percentile interval), so the
    interval reflects only the disagreement between the two precisions, not item difficulty.
    """
    import numpy as np

    x_ref, x_new = np.asarray(x_ref, float), np.asarray(x_new, float)
    n = len(x_ref)
    if n == 0 or len(x_new) != n:
        raise ValueError("paired_bootstrap needs the same non-zero number of items on both sides")
    wr = None if w_ref is None else np.asarray(w_ref, float)
    wn = None if w_new is None else np.asarray(w_new, float)
    ref = float(_item_stat(metric, x_ref, wr))
    new = float(_item_stat(metric, x_new, wn))
    rng = np.random.default_rng(seed)
    deltas = np.empty(iters)
    chunk = max(1, min(iters, 4_000_000 // max(n, 1)))
    for start in range(0, iters, chunk):
        idx = rng.integers(0, n, size=(min(chunk, iters - start), n))
        deltas[start:start + len(idx)] = (
            _item_stat(metric, x_new[idx], None if wn is None else wn[idx])
            - _item_stat(metric, x_ref[idx], None if wr is None else wr[idx]))
    deltas = deltas[np.isfinite(deltas)]
    alpha = (1.0 - level) / 2.0
    lo, hi = (np.quantile(deltas, [alpha, 1 - alpha]) if len(deltas) else (math.nan, math.nan))
    return {"reference": ref, "value": new, "delta": new - ref, "lower": float(lo),
            "upper": float(hi), "n": n}


def gold_loglik(samples):
    """Per item, the log-likelihood (nats) of the gold continuation, from a per-sample frame.

    Loglikelihood tasks have one continuation per item: its log-likelihood. Multiple-choice
    items have one per choice: the one at the target index. NaN where it cannot be told.
    """
    import json

    import numpy as np

    out = np.full(len(samples), np.nan)
    for i, (lls, target) in enumerate(zip(samples["loglikelihoods"], samples["target"])):
        lls = list(lls) if lls is not None else []
        if len(lls) == 1:
            out[i] = float(lls[0])
            continue
        try:
            t = json.loads(target) if isinstance(target, str) else target
        except ValueError:
            continue
        if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < len(lls):
            out[i] = float(lls[t])
    return out


def sign_test(n_up: int, n_down: int) -> float:
    """Exact two-sided sign (McNemar) test on the items that changed: P(a split at least this
    uneven | each changed item equally likely to go either way)."""
    from scipy.stats import binomtest

    m = n_up + n_down
    if m == 0:
        return 1.0
    return float(binomtest(min(n_up, n_down), m, 0.5, alternative="two-sided").pvalue)


def compare_precisions(rows, load_samples, *, precision: str, against: str = "fp32",
                       level: float = 0.95, iters: int = 2000, seed: int = 0,
                       measure: str = "primary") -> tuple[list[dict[str, Any]], list[str]]:
    """Paired deltas of ``precision`` against ``against`` for every checkpoint x task in ``rows``.

    ``rows``: result rows as a DataFrame (``ResultStore.to_frame()``); ``load_samples(cell_key)``
    returns a cell's per-sample DataFrame. Items are matched on (doc_id, filter); items whose
    log-likelihoods are not finite at either precision are left out and counted. ``measure``:
    ``primary`` (the task's primary metric) or ``loglik`` (mean log-likelihood of the gold
    continuation in nats: far more sensitive than accuracy near the floor). Returns
    (records, problems): one record per pair, and a message for each pair that has no interval.
    """
    if measure not in ("primary", "loglik"):
        raise PrecisionError(f"measure {measure!r}: use primary or loglik")
    import numpy as np

    new_name, ref_name = parse_precision(precision).name, parse_precision(against).name
    if new_name == ref_name:
        raise PrecisionError(f"--precision and --against are the same ({new_name})")
    prim = rows[rows["is_primary"].astype(bool)] if len(rows) else rows
    prim = prim.drop_duplicates(subset=list(PAIR_KEYS) + ["precision"], keep="last")
    keyed = {}
    for r in prim.to_dict(orient="records"):
        k = tuple(str(r.get(c)) for c in PAIR_KEYS)
        keyed.setdefault(k, {})[r["precision"]] = r
    records, problems = [], []
    for k, by_prec in sorted(keyed.items()):
        if new_name not in by_prec or ref_name not in by_prec:
            continue
        rn, rr = by_prec[new_name], by_prec[ref_name]
        metric = rn["metric"]
        what = f"{rn['series']}-{rn['size']}@{rn['step']} {rn['task']}"
        try:
            sn, sr = load_samples(rn["cell_key"]), load_samples(rr["cell_key"])
        except (OSError, ValueError) as e:
            problems.append(f"{what}: per-sample file missing or unreadable ({e}); no interval")
            continue
        col = f"metric_{metric}"
        if measure == "loglik":
            metric, col = "loglik", "metric_loglik"
            sn = sn.assign(metric_loglik=gold_loglik(sn))
            sr = sr.assign(metric_loglik=gold_loglik(sr))
            sn = sn.assign(nonfinite=sn.get("nonfinite", False) | ~np.isfinite(sn[col]))
            sr = sr.assign(nonfinite=sr.get("nonfinite", False) | ~np.isfinite(sr[col]))
        if col not in sn or col not in sr:
            problems.append(f"{what}: per-sample results have no {col}; no interval")
            continue
        keep = ["doc_id", "filter", col] + [c for c in (f"{col}_weight", "nonfinite") if c in sn]
        keep_r = ["doc_id", "filter", col] + [c for c in (f"{col}_weight", "nonfinite") if c in sr]
        m = sr[keep_r].merge(sn[keep], on=["doc_id", "filter"], suffixes=("_ref", "_new"))
        bad = np.zeros(len(m), dtype=bool)
        for side in ("_ref", "_new"):
            if f"nonfinite{side}" in m:
                bad |= m[f"nonfinite{side}"].astype(bool).to_numpy()
        m = m[~bad]
        if not len(m):
            problems.append(f"{what}: no item scored finitely at both precisions; no interval")
            continue
        weighted = f"{col}_weight_ref" in m
        res = paired_bootstrap(
            metric, m[f"{col}_ref"].to_numpy(float), m[f"{col}_new"].to_numpy(float),
            m[f"{col}_weight_ref"].to_numpy(float) if weighted else None,
            m[f"{col}_weight_new"].to_numpy(float) if weighted else None,
            iters=iters, level=level, seed=seed)
        hib = True if measure == "loglik" else bool(rn.get("higher_is_better", True))
        a, b = m[f"{col}_ref"].to_numpy(float), m[f"{col}_new"].to_numpy(float)
        n_up, n_down = int((b > a).sum()), int((b < a).sum())
        binary = not weighted and bool(np.isin(np.concatenate([a, b]), (0.0, 1.0)).all())
        # With few changed items the percentile bootstrap is too narrow (a resample rarely
        # drops all of, say, 4 changes that went one way): for 0/1 metrics a difference also
        # needs the exact sign test on the changed items to clear the same level.
        p_sign = sign_test(n_up, n_down) if binary else None
        if res["lower"] <= 0.0 <= res["upper"] or (p_sign is not None and p_sign >= 1 - level):
            verdict = "within"
        else:
            verdict = "better" if (res["delta"] > 0) == hib else "worse"
        records.append({
            "series": rn["series"], "size": rn["size"], "step": rn["step"],
            "n_params": rn.get("n_params"), "task": rn["task"], "metric": metric,
            "precision": new_name, "against": ref_name, "n": res["n"],
            "n_excluded": int(bad.sum()), "reference": res["reference"], "value": res["value"],
            "delta": res["delta"], "lower": res["lower"], "upper": res["upper"],
            "level": level, "n_up": n_up, "n_down": n_down, "p_sign": p_sign,
            "verdict": verdict,
            "model_bits": rn.get("model_bits"), "reference_model_bits": rr.get("model_bits")})
    records.sort(key=lambda r: (r["task"], str(r["series"]), r["n_params"] or 0, r["step"] or 0))
    return records, problems


def precision_frontier(rows, *, all_steps: bool = False) -> list[dict[str, Any]]:
    """The k-bit frontier: per task, the best primary score reachable within each budget of total
    model bits, across sizes and precisions (Dettmers and Zettlemoyer 2023, figure 1).

    Each record is a point where the frontier improves: with ``model_bits`` bits or more, the best
    score is ``value`` (from ``checkpoint_id``), until the next record. Only the latest step of
    each series x size enters unless ``all_steps``.
    """
    import pandas as pd

    if not len(rows):
        return []
    prim = rows[rows["is_primary"].astype(bool)].copy()
    prim = prim[prim["model_bits"].notna() & prim["value"].notna()]
    if not len(prim):
        return []
    if not all_steps:
        steps = pd.to_numeric(prim["step"], errors="coerce").fillna(-1)
        last = steps.groupby([prim["series"], prim["size"]]).transform("max")
        prim = prim[steps == last]
    prim = prim.drop_duplicates(subset=["checkpoint_id", "task", "metric", "num_fewshot",
                                        "limit"], keep="last")
    out = []
    for (task, metric), g in prim.groupby(["task", "metric"], sort=True):
        hib = bool(g["higher_is_better"].iloc[0])
        g = g.assign(_v=g["value"].astype(float) * (1 if hib else -1))
        g = g.sort_values(["model_bits", "_v"], ascending=[True, False], kind="stable")
        best = -math.inf
        for r in g.to_dict(orient="records"):
            if r["_v"] > best:
                best = r["_v"]
                out.append({"task": task, "metric": metric, "model_bits": float(r["model_bits"]),
                            "value": float(r["value"]), "checkpoint_id": r["checkpoint_id"],
                            "size": r["size"], "step": r["step"], "precision": r["precision"],
                            "bits_per_param": r.get("bits_per_param"),
                            "n_params": r.get("n_params")})
    return out
