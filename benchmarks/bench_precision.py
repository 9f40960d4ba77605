"""Benchmark: memory and time per precision for one checkpoint on CPU.

    python benchmarks/bench_precision.py [MODEL_DIR] [--precisions fp32,bf16,...] [--json]
    pytest benchmarks/bench_precision.py     the same (tiny model) under pytest-benchmark

Each precision runs in a fresh process (so peak memory is its own): load the checkpoint (fp32 for
k-bit, then :func:`evalsuite.precision.apply_precision`), then score a fixed batch of token
sequences (64 x 48 tokens, forward + log-softmax, median of 5 repeats, 1 torch thread). Reported:

- ``load_s``: load plus quantize wall time (the first load in a process also imports the
  model's code: seconds on a shared machine), ``apply_s`` the quantization (or check) alone;
- ``forward_ms``: median time of one batch forward;
- ``weights_mb``: bytes held by the weight tensors as stored (torchao keeps k-bit integer codes
  one per int8 byte on CPU, plus scales; fp4 is emulated in fp32), next to ``format_mb``, the
  size of the format itself (``model_bits / 8``);
- ``peak_rss_mb`` and ``peak_rss_delta_mb``: the process's peak resident memory, and its growth
  after the imports (the part the model and its quantization cost);
- ``max_abs_dlogp``: largest change of a next-token log-probability against fp32 on the batch.

MODEL_DIR defaults to the reference ladder's largest final checkpoint when present
(models/ladder/450k/step800), else a GPT-NeoX built in code (hidden 128, 4 layers). Wall times on a
shared machine move with the load; compare precisions within one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = ("fp32", "bf16", "fp16", "int8-b16", "int4-b16", "int3-b16", "nf4-b16", "fp4-b16")
BATCH, SEQ, REPEATS = 64, 48, 5


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _tensor_bytes(t) -> int:
    """Bytes of a tensor as stored, looking inside tensor subclasses (torchao's quantized ones)."""
    if hasattr(t, "__tensor_flatten__") and type(t).__name__ not in ("Tensor", "Parameter"):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, n)) for n in names)
    inner = getattr(t, "data", t)
    if inner is not t and hasattr(inner, "__tensor_flatten__") and \
            type(inner).__name__ not in ("Tensor", "Parameter"):
        return _tensor_bytes(inner)
    return t.numel() * t.element_size()


def child(model_dir: str, precision: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM

    from evalsuite.precision import apply_precision, parse_precision

    spec = parse_precision(precision)
    ids = torch.randint(1, 40, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    base_rss = _rss_mb()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, spec.torch_dtype))
    model.eval()
    t1 = time.perf_counter()
    applied = apply_precision(model, spec)
    t2 = time.perf_counter()
    load_s, apply_s = t2 - t0, t2 - t1
    weights = sum(_tensor_bytes(p) for p in model.parameters())
    times = []
    with torch.no_grad():
        for _ in range(REPEATS):
            t = time.perf_counter()
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
            times.append(time.perf_counter() - t)
    out = Path(tempfile.gettempdir()) / f"bench_precision_{spec.name}.pt"
    torch.save(logp[:, -8:], out)
    return {"precision": spec.name, "library": applied.library, "load_s": round(load_s, 3),
            "apply_s": round(apply_s, 3),
            "forward_ms": round(1000 * statistics.median(times), 1),
            "weights_mb": round(weights / 2**20, 3),
            "format_mb": round(applied.model_bits / 8 / 2**20, 3),
            "bits_per_param": round(applied.bits_per_param, 3),
            "peak_rss_mb": round(_rss_mb(), 1), "peak_rss_delta_mb": round(_rss_mb() - base_rss, 1),
            "logp_file": str(out)}


def default_model() -> str:
    ladder = ROOT / "models" / "ladder" / "450k" / "step800"
    if (ladder / "config.json").exists():
        return str(ladder)
    from evalsuite.testing import build_tiny_model

    path = Path(tempfile.mkdtemp(prefix="bench-precision-")) / "gptneox-h128"
    return str(build_tiny_model(path, hidden_size=128, num_layers=4, num_heads=4, seed=0))


def run_all(model_dir: str, precisions=PRECISIONS) -> list[dict]:
    import torch

    results = []
    for p in precisions:
        proc = subprocess.run([sys.executable, __file__, "--child", p, model_dir],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{p} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = next((r for r in results if r["precision"] == "fp32"), None)
    ref_lp = torch.load(ref["logp_file"]) if ref else None
    for r in results:
        lp = torch.load(r.pop("logp_file"))
        r["max_abs_dlogp"] = (None if ref_lp is None else
                              round(float((lp - ref_lp).abs().nan_to_num(float("inf")).max()), 4))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="model folder (default: see module docstring)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.child)))
        return 0
    model = args.model or default_model()
    results = run_all(model, [p for p in args.precisions.split(",") if p])
    if args.json:
        print(json.dumps({"model": model, "batch": [BATCH, SEQ], "results": results}, indent=1))
        return 0
    print(f"model: {model}; batch {BATCH} x {SEQ} tokens, 1 thread, median of {REPEATS}")
    cols = ["precision", "library", "bits_per_param", "format_mb", "weights_mb", "peak_rss_mb",
            "peak_rss_delta_mb", "load_s", "apply_s", "forward_ms", "max_abs_dlogp"]
    print("  ".join(cols))
    for r in results:
        print("  ".join(str(r[c]) for c in cols))
    return 0


def test_bench_precision(benchmark):
    """pytest-benchmark entry: fp32 vs int4 on the built-in model."""
    model = default_model()
    results = benchmark.pedantic(run_all, args=(model, ("fp32", "int4-b16")), rounds=1)
    assert {r["precision"] for r in results} == {"fp32", "int4-b16"}


if __name__ == "__main__":
    sys.exit(main())
