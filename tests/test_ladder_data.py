"""The ladder's tokenizer and generated data: lm-eval's prompt shape, prefix-safe tokens,
no test item in training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evalsuite.ladder import build_digit_tokenizer, iter_items, load_test_contexts
from evalsuite.ladder.data import (ARITHMETIC_DIR, ARITHMETIC_FILES, MIX, DecontaminationReport,
                                   generate_item, pack_sequences)
from evalsuite.ladder.train import TrainSettings, build_token_stream

REPO = Path(__file__).resolve().parents[1]
SHAPE = re.compile(r"^Question: What is (.+)\?\nAnswer:$")


@pytest.fixture(scope="module")
def tokenizer():
    return build_digit_tokenizer()


def _lm_eval_normalise(contexts: list[str]) -> list[str]:
    """lm-eval's own arithmetic process_docs, run on raw GPT-3 style contexts."""
    import datasets
    from lm_eval.tasks.arithmetic.utils import process_docs

    ds = datasets.Dataset.from_list([{"context": c, "completion": ""} for c in contexts])
    return list(process_docs(ds)["context"])


def test_generated_items_have_lm_eval_prompt_shape():
    items = [x for _, x in zip(range(3000), iter_items(seed=1))]
    kinds = {i.kind for i in items}
    assert kinds == {k for k, _, _ in MIX}
    for item in items:
        m = SHAPE.match(item.context)
        assert m, item.context
        assert re.fullmatch(r" -?\d+", item.completion), item.completion
        expr = m.group(1)
        if item.kind in ("plus", "minus", "times"):
            a, op, b = expr.split(" ")
            expected = eval(f"{int(a)} {dict(plus='+', minus='-', times='*')[op]} {int(b)}")
            assert int(item.completion) == expected
        elif item.kind == "threeops":
            assert int(item.completion) == eval(expr)
    # The raw GPT-3 form of the same question, normalised by lm-eval itself, is our context.
    raw = [f"\n\nQ: What is {SHAPE.match(i.context).group(1)}?\n\nA:" for i in items[:50]]
    assert _lm_eval_normalise(raw) == [i.context for i in items[:50]]


def test_generation_is_deterministic_from_seed():
    a = [x.text for _, x in zip(range(500), iter_items(seed=3))]
    b = [x.text for _, x in zip(range(500), iter_items(seed=3))]
    c = [x.text for _, x in zip(range(500), iter_items(seed=4))]
    assert a == b and a != c


def test_exclusion_drops_and_counts():
    import random

    target = generate_item(random.Random(0), "plus", 1).context  # 1-digit sums repeat often
    report = DecontaminationReport(test_questions=1)
    items = [x for _, x in zip(range(5000), iter_items(seed=0, exclude={target}, report=report))]
    assert all(i.context != target for i in items)
    assert report.removed >= 1 and report.removed_distinct == 1


def test_tokenizer_round_trips_and_context_is_prefix(tokenizer):
    items = [x for _, x in zip(range(2000), iter_items(seed=2))]
    for item in items:
        ctx = tokenizer(item.context, add_special_tokens=False)["input_ids"]
        whole = tokenizer(item.text, add_special_tokens=False)["input_ids"]
        assert whole[:len(ctx)] == ctx, item.text
        assert tokenizer.unk_token_id not in whole
        assert tokenizer.decode(whole) == item.text
    assert tokenizer.tokenize(" 143") == [" 1", "4", "3"]


def test_tokenizer_saves_and_loads_with_autotokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Question: What is (9 + 8) * 2?\nAnswer: -34"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
    assert loaded.eos_token == tokenizer.eos_token


def test_real_items_tokenize_as_prefix(tokenizer, shared_data):
    folder = shared_data(*ARITHMETIC_DIR)
    for name in ARITHMETIC_FILES:
        rows = [json.loads(line) for line in (folder / name).read_text().splitlines()[:300]]
        contexts = _lm_eval_normalise([r["context"] for r in rows])
        for ctx, row in zip(contexts, rows):
            c = tokenizer(ctx, add_special_tokens=False)["input_ids"]
            w = tokenizer(ctx + row["completion"], add_special_tokens=False)["input_ids"]
            assert w[:len(c)] == c and tokenizer.unk_token_id not in w
            assert tokenizer.decode(w) == ctx + row["completion"]


def test_packing_starts_each_sequence_with_an_example(tokenizer):
    lists = tokenizer([x.text for _, x in zip(range(400), iter_items(seed=0))],
                      add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    inputs, labels, used = pack_sequences(lists, 20, 64, eos)
    assert len(inputs) == 20 and all(len(s) == 64 for s in inputs)
    q = tokenizer.convert_tokens_to_ids("Question")
    assert all(s[0] == q for s in inputs)
    for s, lab in zip(inputs, labels):
        n = sum(1 for t in lab if t != -100)
        assert lab[:n] == s[:n] and s[n - 1] == eos and all(t == eos for t in s[n:])
    assert sum(s.count(q) for s in inputs) == used


def test_answer_only_loss_marks_the_answer_and_its_eos(tokenizer):
    items = [x for _, x in zip(range(400), iter_items(seed=0))]
    lists = tokenizer([x.text for x in items], add_special_tokens=False)["input_ids"]
    counts = [len(tokenizer(x.completion, add_special_tokens=False)["input_ids"]) for x in items]
    inputs, labels, used = pack_sequences(lists, 20, 64, tokenizer.eos_token_id, counts)
    targets = [t for lab in labels for t in lab if t != -100]
    expected = tokenizer("".join(x.completion + tokenizer.eos_token for x in items[:used]),
                         add_special_tokens=False)["input_ids"]
    assert targets == expected
    s = TrainSettings(steps=1, batch_size=4)
    stream = build_token_stream(s, None, tokenizer)
    assert stream.n_target_tokens == int((stream.labels != -100).sum())
    assert stream.n_target_tokens < 4 * 64 / 2  # operands and prompt words carry no loss


def test_no_training_item_equals_a_test_item(shared_data):
    """The whole shipped stream (or 20K items when no ladder is shipped) misses every test
    question, checked against contexts normalised by lm-eval's own process_docs."""
    folder = shared_data(*ARITHMETIC_DIR)
    raw = []
    for name in ARITHMETIC_FILES:
        raw += [json.loads(line)["context"] for line in (folder / name).read_text().splitlines()]
    test = set(_lm_eval_normalise(raw))
    assert len(test) > 20000
    manifest = REPO / "models" / "ladder" / "ladder.json"
    n, seed = 20000, 0
    if manifest.exists():
        m = json.loads(manifest.read_text())
        n, seed = m["examples"], m["settings"]["seed"]
        assert m["decontamination"]["decontaminated"] and m["decontamination"]["removed"] > 0
    exclude = load_test_contexts(folder.parents[1])
    assert exclude == test
    report = DecontaminationReport(test_questions=len(exclude))
    hits = sum(1 for _, x in zip(range(n), iter_items(seed, exclude=exclude, report=report))
               if x.context in test)
    assert hits == 0
    assert report.removed > 0  # 2-digit questions are drawn often enough to hit test items
    if manifest.exists():
        # Same draws as the shipped run: this code regenerates the stream the ladder saw.
        assert report.to_dict() == m["decontamination"]


def test_token_stream_report_counts_only_packed_items(shared_data):
    data_dir = shared_data(*ARITHMETIC_DIR).parents[1]
    s = TrainSettings(steps=3, batch_size=8)
    stream = build_token_stream(s, data_dir)
    assert tuple(stream.input_ids.shape) == (3, 8, 64)
    d = stream.decontamination
    assert d.drawn == stream.n_examples + d.removed
