"""The shipped ladder in models/ladder: layout, sizes, loading, recorded accuracy targets."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LADDER = REPO / "models" / "ladder"
pytestmark = pytest.mark.skipif(not (LADDER / "ladder.json").exists(),
                                reason="models/ladder is not shipped in this checkout")


def _sizes() -> dict[str, dict[int, Path]]:
    out: dict[str, dict[int, Path]] = {}
    for size_dir in sorted(p for p in LADDER.iterdir() if p.is_dir()):
        out[size_dir.name] = {int(p.name[4:]): p for p in size_dir.iterdir()
                              if p.is_dir() and re.fullmatch(r"step\d+", p.name)}
    return out


def _nonembedding_params(folder: Path) -> int:
    from safetensors import safe_open

    n = 0
    with safe_open(folder / "model.safetensors", "pt") as f:
        for k in f.keys():
            if "embed_in" not in k and "embed_out" not in k:
                n += math.prod(f.get_slice(k).get_shape())
    return n


def _label_value(label: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([km])", label)
    assert m, f"size label {label!r} is not like 25k / 1m (lower case)"
    return float(m.group(1)) * {"k": 1e3, "m": 1e6}[m.group(2)]


def test_layout_steps_and_trainer_state():
    manifest = json.loads((LADDER / "ladder.json").read_text())
    sizes = _sizes()
    assert len(sizes) >= 6
    steps = manifest["checkpoint_steps"]
    assert len(steps) >= 5 and steps[-1] == manifest["settings"]["steps"]
    ratios = [b / a for a, b in zip(steps, steps[1:])]
    assert max(ratios) / min(ratios) < 1.1  # log-spaced: a constant ratio up to rounding
    for label, by_step in sizes.items():
        assert sorted(by_step) == steps, label
        for step, folder in by_step.items():
            for name in ("config.json", "model.safetensors", "tokenizer.json",
                         "tokenizer_config.json", "trainer_state.json"):
                assert (folder / name).is_file(), folder / name
            state = json.loads((folder / "trainer_state.json").read_text())
            assert state["global_step"] == step
            assert state["num_input_tokens_seen"] == step * manifest["tokens_per_step"]


def test_sizes_span_50x_and_labels_match_parameter_counts():
    counts = {label: _nonembedding_params(max(by_step.items())[1])
              for label, by_step in _sizes().items()}
    for label, n in counts.items():
        assert abs(n - _label_value(label)) / n < 0.15, (label, n)
    assert max(counts.values()) / min(counts.values()) >= 50


def test_total_size_at_most_30_mb():
    total = sum(p.stat().st_size for p in LADDER.rglob("*") if p.is_file())
    assert total <= 30 * 1024 * 1024, f"{total / 2**20:.1f} MiB"


def test_every_final_checkpoint_loads_and_answers(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sizes = _sizes()
    prompt = "Question: What is 12 plus 34?\nAnswer:"
    for label, by_step in sizes.items():
        step, folder = max(by_step.items())
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.model_type == "gpt_neox"
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(ids).logits
        assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()
    # The largest size answers in the task's shape: a space and digits, then end of text.
    largest = max(sizes, key=_label_value)
    folder = max(sizes[largest].items())[1]
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5,
                         do_sample=False, pad_token_id=tok.eos_token_id)
    answer = tok.decode(out[0][ids.shape[1]:])
    assert re.match(r" \d+(<\|endoftext\|>|$)", answer), answer


def test_recorded_accuracy_meets_the_targets():
    acc = json.loads((LADDER / "accuracy.json").read_text())
    assert acc["task"] == "arithmetic_2da" and acc["metric"] == "acc"
    rows = acc["rows"]
    assert all(r["n"] == 2000 for r in rows)
    labels = sorted({r["size"] for r in rows}, key=_label_value)
    final = max(r["step"] for r in rows)
    by = {(r["size"], r["step"]): r["acc"] for r in rows}
    assert by[(labels[0], final)] <= 0.05
    assert by[(labels[-1], final)] >= 0.50
    curve = [by[(labels[-1], s)] for s in sorted({r["step"] for r in rows})]
    assert curve[-1] > curve[0] and all(b >= a - 0.02 for a, b in zip(curve, curve[1:]))
    card = (LADDER / "CARD.md").read_text()
    assert "arithmetic_2da" in card and "evalsuite train-ladder" in card


def test_recorded_accuracy_matches_the_shipped_weights(shared_data):
    """Re-score the largest final checkpoint on the first 200 real items with a plain greedy
    check: accuracy.json must describe these weights, not an older run."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = shared_data("benchmarks", "gpt3_arithmetic_unscramble", "two_digit_addition.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:200]]
    sizes = _sizes()
    largest = max(sizes, key=_label_value)
    step, folder = max(sizes[largest].items())
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    hits = 0
    for r in rows:
        ctx = r["context"].strip().replace("\n\n", "\n").replace("Q:", "Question:") \
            .replace("A:", "Answer:")
        c = tok(ctx)["input_ids"]
        w = tok(ctx + r["completion"])["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([w])).logits[0]
        pred = logits[len(c) - 1:len(w) - 1].argmax(-1).tolist()
        hits += pred == w[len(c):]
    recorded = {(x["size"], x["step"]): x for x in
                json.loads((LADDER / "accuracy.json").read_text())["rows"]}[(largest, step)]
    # 200 of 2000 items: allow sampling noise around the full-set figure (4 binomial stderr).
    se = math.sqrt(recorded["acc"] * (1 - recorded["acc"]) / 200)
    assert abs(hits / 200 - recorded["acc"]) <= 4 * se + 0.01
