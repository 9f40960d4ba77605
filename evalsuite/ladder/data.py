"""Training data for the reference ladder: arithmetic questions generated in code.

Every item has the exact shape lm-eval's ``arithmetic_*`` tasks present to a model. Their
YAML reads the GPT-3 files (``{"context": "\\n\\nQ: What is 98 plus 45?\\n\\nA:",
"completion": " 143"}``) and ``process_docs`` normalises the context: ``strip()``, ``"\\n\\n"``
-> ``"\\n"``, ``"Q:"`` -> ``"Question:"``, ``"A:"`` -> ``"Answer:"``; the target is appended
with an empty delimiter. So the model sees ``"Question: What is 98 plus 45?\\nAnswer:"`` and
is scored on ``" 143"`` (lm-eval 0.4.13, ``lm_eval/tasks/arithmetic/``).

Operands follow the GPT-3 generator's ranges (n-digit operands uniform on [0, 10^n), read off
the real files: ``0 plus 25`` occurs), so a digit count mixes in shorter numbers the same way.

Decontamination: every generated question is compared, after the same normalisation, with
every question in the real GPT-3 arithmetic files; an equal one is dropped and drawn again.
The comparison is exact string equality (``98 plus 45`` is removed, ``45 plus 98`` is not).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

#: (kind, digits, weight). 70% 2-digit addition, the ladder's headline task (a 450K model
#: reached 17.5% on arithmetic_2da at step 400 with 70%, 8.5% with 55%); the other 30% keeps
#: plus, minus and times at 1 to 5 digits and two other skills of the GPT-3 battery (sum of
#: digits, one-digit three-operation expressions) in the stream. The weights are exact float
#: literals (2/3 of an earlier 45% split): the stream, hence the shipped weights, depends on them.
MIX: tuple[tuple[str, int, float], ...] = (
    ("plus", 2, 0.7),
    ("plus", 1, 0.026666666666666665), ("plus", 3, 0.026666666666666665),
    ("plus", 4, 0.026666666666666665), ("plus", 5, 0.026666666666666665),
    ("minus", 2, 0.03333333333333333),
    ("minus", 1, 0.016666666666666666), ("minus", 3, 0.016666666666666666),
    ("minus", 4, 0.016666666666666666), ("minus", 5, 0.016666666666666666),
    ("times", 1, 0.013333333333333332), ("times", 2, 0.016666666666666666),
    ("times", 3, 0.006666666666666666),
    ("times", 4, 0.0016666666666666666), ("times", 5, 0.0016666666666666666),
    ("digitsum", 4, 0.026666666666666665),
    ("threeops", 1, 0.026666666666666665),
)

#: The GPT-3 arithmetic files the ladder is decontaminated against (all of them).
ARITHMETIC_FILES = (
    "single_digit_three_ops.jsonl", "sum_of_digits.jsonl",
    "two_digit_addition.jsonl", "two_digit_subtraction.jsonl", "two_digit_multiplication.jsonl",
    "three_digit_addition.jsonl", "three_digit_subtraction.jsonl",
    "four_digit_addition.jsonl", "four_digit_subtraction.jsonl",
    "five_digit_addition.jsonl", "five_digit_subtraction.jsonl",
    "six_digit_addition.jsonl", "six_digit_subtraction.jsonl",
)
ARITHMETIC_DIR = ("benchmarks", "gpt3_arithmetic_unscramble")


@dataclass(frozen=True)
class Item:
    """One question in lm-eval's normalised shape: ``context`` + ``completion`` is the text."""

    kind: str
    context: str
    completion: str

    @property
    def text(self) -> str:
        return self.context + self.completion


def normalise_context(raw: str) -> str:
    """The four steps of lm-eval's ``arithmetic`` ``process_docs`` (see module docstring)."""
    return (raw.strip().replace("\n\n", "\n").replace("Q:", "Question:")
            .replace("A:", "Answer:"))


def format_item(kind: str, question: str, answer: int) -> Item:
    return Item(kind, f"Question: What is {question}?\nAnswer:", f" {answer}")


def generate_item(rng: random.Random, kind: str, digits: int) -> Item:
    """One random question of the given kind; operands uniform on [0, 10**digits)."""
    hi = 10 ** digits
    if kind in ("plus", "minus", "times"):
        a, b = rng.randrange(hi), rng.randrange(hi)
        value = {"plus": a + b, "minus": a - b, "times": a * b}[kind]
        return format_item(kind, f"{a} {kind} {b}", value)
    if kind == "digitsum":
        n = rng.randrange(hi)
        return format_item(kind, f"the sum of the digits of the number {n}",
                           sum(int(c) for c in str(n)))
    if kind == "threeops":
        # GPT-3's "single digit three ops": (a op b) op c with a, b, c in 1..9.
        a, b, c = (rng.randrange(1, 10) for _ in range(3))
        op1, op2 = rng.choice("+-*"), rng.choice("+-*")
        value = eval_binary(eval_binary(a, op1, b), op2, c)
        return format_item(kind, f"({a} {op1} {b}) {op2} {c}", value)
    raise ValueError(f"unknown item kind {kind!r}; known: plus, minus, times, digitsum, threeops")


def eval_binary(x: int, op: str, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def load_test_contexts(data_dir: str | Path) -> set[str] | None:
    """Normalised contexts of every GPT-3 arithmetic test item, or None if the folder is absent."""
    folder = Path(data_dir).joinpath(*ARITHMETIC_DIR)
    if not folder.is_dir():
        return None
    contexts: set[str] = set()
    for name in ARITHMETIC_FILES:
        path = folder / name
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    contexts.add(normalise_context(json.loads(line)["context"]))
    return contexts


@dataclass
class DecontaminationReport:
    """What decontamination did: items drawn and dropped, distinct questions dropped."""

    test_questions: int | None = None
    drawn: int = 0
    removed: int = 0
    removed_distinct: int = 0

    def to_dict(self) -> dict:
        return {"test_questions": self.test_questions, "drawn": self.drawn,
                "removed": self.removed, "removed_distinct": self.removed_distinct,
                "decontaminated": self.test_questions is not None}


def iter_items(seed: int, exclude: set[str] | None = None,
               report: DecontaminationReport | None = None,
               mix: Sequence[tuple[str, int, float]] = MIX) -> Iterator[Item]:
    """An endless, seed-determined stream of training items with test questions left out."""
    rng = random.Random(seed)
    kinds = [(k, d) for k, d, _ in mix]
    weights = [w for _, _, w in mix]
    removed: set[str] = set()
    while True:
        kind, digits = rng.choices(kinds, weights)[0]
        item = generate_item(rng, kind, digits)
        if report is not None:
            report.drawn += 1
        if exclude is not None and item.context in exclude:
            if report is not None:
                report.removed += 1
                removed.add(item.context)
                report.removed_distinct = len(removed)
            continue
        yield item


def pack_sequences(token_lists: Iterable[Sequence[int]], n_sequences: int, seq_len: int,
                   eos_id: int, target_counts: Iterable[int] | None = None
                   ) -> tuple[list[list[int]], list[list[int]], int]:
    """Pack whole examples (tokens + EOS) into sequences that each start with an example.

    An example that does not fit opens the next sequence; the tail is padded with EOS and its
    labels set to -100 (no loss). With ``target_counts`` (one per example: how many of its last
    tokens are the answer), only the answer and the EOS after it carry a loss; otherwise every
    token does. Returns (input_ids, labels, examples used), in stream order.
    """
    inputs: list[list[int]] = []
    labels: list[list[int]] = []
    used = 0
    cur: list[int] = []
    cur_lab: list[int] = []
    it = iter(token_lists)
    counts = iter(target_counts) if target_counts is not None else None
    pending: list[int] | None = None
    pending_lab: list[int] = []
    while len(inputs) < n_sequences:
        if pending is None:
            pending = list(next(it)) + [eos_id]
            if len(pending) > seq_len:
                raise ValueError(f"an example of {len(pending)} tokens exceeds seq_len={seq_len}")
            if counts is None:
                pending_lab = pending
            else:
                k = next(counts) + 1  # the answer and its EOS
                pending_lab = [-100] * (len(pending) - k) + pending[-k:]
        if len(cur) + len(pending) <= seq_len:
            cur += pending
            cur_lab += pending_lab
            pending = None
            used += 1
            continue
        pad = seq_len - len(cur)
        inputs.append(cur + [eos_id] * pad)
        labels.append(cur_lab + [-100] * pad)
        cur, cur_lab = [], []
    return inputs, labels, used
