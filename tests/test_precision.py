"""Precision specs, applying them to real tiny models, and the proof that they took effect."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from evalsuite.precision import (PrecisionError, apply_precision, bits_per_param,
                                 paired_bootstrap, parse_precision)
from evalsuite.testing import build_tiny_model


@pytest.mark.parametrize("text,name,bits", [
    ("fp32", "fp32", 32.0), ("BF16", "bf16", 16.0), ("fp16", "fp16", 16.0),
    ("int8", "int8-b64", 8.25), ("int4", "int4-b64", 4.25), ("int4-b32", "int4-b32", 4.5),
    ("int3-b16", "int3-b16", 4.0), ("int5-b128", "int5-b128", 5.125),
    ("nf4", "nf4-b64", 4 + 8 / 64 + 32 / (64 * 256)), ("fp4", "fp4-b32", 4.25),
    ("fp4-b16", "fp4-b16", 4.5)])
def test_parse_and_bits_per_param(text, name, bits):
    spec = parse_precision(text)
    assert spec.name == name
    assert bits_per_param(text) == pytest.approx(bits)
    assert spec.is_quantized == (name not in ("fp32", "bf16", "fp16"))


@pytest.mark.parametrize("text", ["int2", "int9", "fp8", "nf3", "int4-b0", "int4-b", "q4", "",
                                  "int4-b64x", "nf4-b33"])
def test_unsupported_precision_fails_loudly(text):
    with pytest.raises(PrecisionError) as e:
        parse_precision(text)
    assert "precision" in str(e.value)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # widths 32 (attention, head) and 128 (MLP down): blocks of 8..32 divide them all
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny", hidden_size=32, num_layers=2,
                            num_heads=2, seed=3)


def _load(path, dtype="float32"):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()


def _logprobs(model):
    import torch

    ids = torch.tensor([list(b"Question: 12+30?\nAnswer: 42")])
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids).logits.float(), -1)


def test_int4_changes_the_weights_and_the_loglikelihoods(tiny):
    import torch

    ref = _load(tiny)
    lp_ref = _logprobs(ref)
    model = _load(tiny)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear)}
    applied = apply_precision(model, "int4-b32")
    assert applied.spec == "int4-b32" and applied.library.startswith("torchao")
    assert applied.n_layers == len(before) > 0
    assert applied.n_quantized == sum(w.numel() for w in before.values())
    assert applied.weights_changed_frac > 0.9
    assert 0 < applied.weights_max_abs_change < 1.0
    assert 0.01 < applied.weights_rel_error < 0.5
    assert applied.bits_per_param == pytest.approx(4.5)
    rest = applied.n_params - applied.n_quantized
    assert applied.model_bits == pytest.approx(4.5 * applied.n_quantized + 32 * rest)
    # the layers really hold the library's quantized tensors now
    w = model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight
    assert type(w).__name__ != "Parameter" or type(w.data).__name__ != "Tensor"
    lp = _logprobs(model)
    assert torch.isfinite(lp).all()
    diff = (lp - lp_ref).abs().max().item()
    assert diff > 1e-3, "int4 did not change the log-likelihoods"


@pytest.mark.parametrize("family", ["int", "nf", "fp"])
def test_fewer_bits_larger_error(tiny, family):
    errs = []
    specs = {"int": ["int8-b32", "int4-b32", "int3-b32"], "nf": ["int8-b32", "nf4-b32"],
             "fp": ["int8-b32", "fp4-b32"]}[family]
    for spec in specs:
        a = apply_precision(_load(tiny), spec)
        assert a.weights_changed_frac > 0.9
        errs.append(a.weights_rel_error)
    assert errs == sorted(errs) and errs[0] < 0.02 < errs[-1]


def test_block_size_that_does_not_divide_fails_with_the_fix(tiny):
    with pytest.raises(PrecisionError) as e:
        apply_precision(_load(tiny), "int4-b64")
    msg = str(e.value)
    assert "block size 64 does not divide" in msg and "int4-b32" in msg


def test_float_precision_is_checked_not_assumed(tiny):
    ref = {n: p.detach().clone() for n, p in _load(tiny).named_parameters()}
    a = apply_precision(_load(tiny, "bfloat16"), "bf16", reference=ref)
    assert a.bits_per_param == 16 and a.weights_changed_frac > 0.5
    assert a.model_bits == 16 * a.n_params
    with pytest.raises(PrecisionError, match="did not take effect"):
        apply_precision(_load(tiny), "fp16")  # an fp32 model claimed as fp16


def test_kbit_without_torchao_fails_loudly(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)
    with pytest.raises(PrecisionError, match="needs torchao"):
        apply_precision(_load(tiny), "int4-b32")


def test_kbit_needs_fp32_weights(tiny):
    with pytest.raises(PrecisionError, match="expects fp32"):
        apply_precision(_load(tiny, "bfloat16"), "int8-b32")


def test_paired_bootstrap_identical_and_shifted():
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.6).astype(float)
    same = paired_bootstrap("acc", a, a, iters=500)
    assert same["delta"] == 0 and same["lower"] == 0 and same["upper"] == 0
    b = a.copy()
    flip = rng.choice(np.flatnonzero(a == 1), size=60, replace=False)
    b[flip] = 0  # 60 of 400 items lost: delta -0.15
    r = paired_bootstrap("acc", a, b, iters=1000, level=0.95)
    assert r["delta"] == pytest.approx(-0.15)
    assert r["lower"] < -0.15 < r["upper"] < 0
    # pairing: the interval is much narrower than one built from two independent samples
    assert r["upper"] - r["lower"] < 2 * 1.96 * math.sqrt(2 * 0.6 * 0.4 / 400)


def test_paired_bootstrap_corpus_metric():
    ll = np.array([-10.0, -20.0, -5.0, -8.0])
    w = np.array([4.0, 8.0, 2.0, 3.0])
    r = paired_bootstrap("word_perplexity", ll, ll - 1.0, w, w, iters=200)
    assert r["reference"] == pytest.approx(math.exp(43 / 17))
    assert r["value"] == pytest.approx(math.exp(47 / 17))
    assert r["lower"] <= r["delta"] <= r["upper"]


def test_sign_test_guards_few_changed_items():
    from evalsuite.precision import sign_test

    assert sign_test(0, 0) == 1.0
    assert sign_test(4, 0) == pytest.approx(0.125)  # 4 flips one way: not evidence at 5%
    assert sign_test(0, 10) == pytest.approx(2 / 1024)
    assert sign_test(3, 3) == 1.0


def test_change_beyond_what_the_format_allows_is_caught(tiny):
    """A quantizer that ignores the requested block size or bit width is caught by the bound."""
    import torch

    from evalsuite.precision.apply import _check_expected

    spec = parse_precision("int8-b32")
    w0 = torch.randn(4, 64)
    q4 = parse_precision("int4-b32")
    # int4-sized rounding claimed as int8: beyond int8's half step
    step = w0.reshape(-1, 32).abs().amax(1, keepdim=True) / 7
    w4 = (torch.round(w0.reshape(-1, 32) / step) * step).reshape(4, 64)
    _check_expected(q4, "w", w0, w4)
    with pytest.raises(PrecisionError, match="more than a 8-bit quantizer"):
        _check_expected(spec, "w", w0, w4)
