"""Local data files -> the rows lm-eval's task definitions expect.

Each adapter reads one benchmark as laid out in a data folder like ``../shared/data/benchmarks``
(see its PROVENANCE.md for the source of each file and the field mapping used here) and returns
``{split_name: datasets.Dataset}`` in the schema of the Hugging Face dataset lm-eval normally
downloads, so lm-eval's own prompts, choices and metrics apply unchanged.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
from pathlib import Path
from typing import Any, Callable, Iterator

ADAPTERS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {}


class DataError(RuntimeError):
    """A data file that is missing, empty or unreadable."""


def _adapter(name: str):
    def deco(fn):
        ADAPTERS[name] = fn
        return fn
    return deco


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); the file is corrupt: "
                                "restore it from its source (see PROVENANCE.md)") from e


@_adapter("jsonl")
def read_plain_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows already in the lm-eval schema (ARC in HF ai2_arc form, GPT-3 arithmetic)."""
    return list(_read_jsonl(path))


@_adapter("piqa")
def read_piqa(path: Path) -> list[dict[str, Any]]:
    """``valid.jsonl`` with labels from the aligned ``valid-labels.lst`` beside it."""
    labels_path = path.with_name(path.stem + "-labels.lst")
    if not labels_path.exists():
        raise DataError(f"PIQA labels file {labels_path} is missing: it must sit beside {path}")
    labels = [int(x) for x in labels_path.read_text().split()]
    rows = list(_read_jsonl(path))
    if len(labels) != len(rows):
        raise DataError(f"{labels_path} has {len(labels)} labels for {len(rows)} items in {path}")
    return [{"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": lab}
            for r, lab in zip(rows, labels)]


@_adapter("lambada_mosaic")
def read_lambada(path: Path) -> list[dict[str, Any]]:
    """MosaicML context/continuation -> lm-eval's ``text`` (= context + " " + continuation)."""
    return [{"text": r["context"] + " " + r["continuation"]} for r in _read_jsonl(path)]


@_adapter("hellaswag_text")
def read_hellaswag(path: Path) -> list[dict[str, Any]]:
    """The 6-lines-per-item text rendition -> Rowan/hellaswag fields.

    Line 1 is ``activity_label + ": " + ctx`` already preprocessed; it is split at the first
    ``": "`` into activity_label and ctx_a (ctx_b left empty), so lm-eval's ``process_docs``
    rebuilds the same query. The only difference from the hub data (see PROVENANCE.md) is that
    ctx_b was not capitalised upstream.
    """
    with _open_text(path) as fh:
        lines = [ln.rstrip("\n") for ln in fh]
    if len(lines) % 6:
        raise DataError(f"{path}: {len(lines)} lines is not a multiple of 6 (6 lines per item)")
    rows = []
    for i in range(0, len(lines), 6):
        head, label, endings = lines[i], lines[i + 1], lines[i + 2:i + 6]
        activity, _, ctx = head.partition(": ")
        rows.append({"activity_label": activity, "ctx_a": ctx, "ctx_b": "", "ctx": ctx,
                     "endings": endings, "label": str(int(label))})
    return rows


@_adapter("winogrande_mosaic")
def read_winogrande(path: Path) -> list[dict[str, Any]]:
    """MosaicML context_options/continuation/gold -> sentence, option1, option2, answer."""
    rows = []
    for r in _read_jsonl(path):
        a, b = r["context_options"]
        wa, wb = a.split(" "), b.split(" ")
        k = 0
        while k < min(len(wa), len(wb)) - 1 and wa[k] == wb[k]:
            k += 1
        prefix = " ".join(wa[:k])
        opt1, opt2 = " ".join(wa[k:]), " ".join(wb[k:])
        sentence = (prefix + " " if prefix else "") + "_" + " " + r["continuation"].lstrip()
        rows.append({"sentence": sentence, "option1": opt1, "option2": opt2,
                     "answer": str(int(r["gold"]) + 1)})
    return rows


@_adapter("boolq_mosaic")
def read_boolq(path: Path) -> list[dict[str, Any]]:
    """``query = "Passage: {passage}\\nQuestion: {question}?"`` -> passage, question, label."""
    rows = []
    for r in _read_jsonl(path):
        q = r["query"]
        if not q.startswith("Passage: ") or "\nQuestion: " not in q:
            raise DataError(f"{path}: BoolQ query not in the expected 'Passage: ...\\nQuestion: ...?' "
                            f"shape: {q[:60]!r}")
        passage, _, question = q[len("Passage: "):].rpartition("\nQuestion: ")
        rows.append({"passage": passage, "question": question.rstrip("?"), "label": int(r["gold"])})
    return rows


@_adapter("copa_mosaic")
def read_copa(path: Path) -> list[dict[str, Any]]:
    """``query = premise[:-1] + " because"|" therefore"`` -> premise, question, choice1/2, label."""
    rows = []
    for r in _read_jsonl(path):
        q = r["query"]
        for connector, question in ((" because", "cause"), (" therefore", "effect")):
            if q.endswith(connector):
                premise = q[: -len(connector)] + "."
                break
        else:
            raise DataError(f"{path}: COPA query does not end in ' because' or ' therefore': {q[-40:]!r}")
        c1, c2 = r["choices"]
        rows.append({"premise": premise, "question": question, "choice1": c1, "choice2": c2,
                     "label": int(r["gold"])})
    return rows


@_adapter("openbookqa_tsv")
def read_openbookqa(path: Path) -> list[dict[str, Any]]:
    """AI2 Main/test.tsv -> id, question_stem, choices{text,label}, answerKey."""
    import re

    rows = []
    with _open_text(path) as fh:
        for rec in csv.DictReader(fh, delimiter="\t"):
            parts = re.split(r"\(([A-D])\)\s*", rec["Choices"])[1:]
            labels, texts = parts[0::2], [t.strip() for t in parts[1::2]]
            rows.append({"id": rec["ID"], "question_stem": rec["Question Stem"],
                         "choices": {"text": texts, "label": labels},
                         "answerKey": rec["Answer Key"].strip()})
    return rows


@_adapter("mmlu_csv")
def read_mmlu(path: Path) -> list[dict[str, Any]]:
    """HF cais/mmlu exported as CSV (question, choice0..3, answer as 0-based index)."""
    subject = path.stem.rsplit("_", 1)[0]
    with _open_text(path) as fh:
        return [{"question": r["question"], "subject": subject,
                 "choices": [r["choice0"], r["choice1"], r["choice2"], r["choice3"]],
                 "answer": int(r["answer"])} for r in csv.DictReader(fh)]


@_adapter("triviaqa_mosaic")
def read_triviaqa(path: Path) -> list[dict[str, Any]]:
    """MosaicML context ``"Question: ...\\nAnswer:"``/answer/aliases -> question, answer{value,aliases}."""
    rows = []
    for r in _read_jsonl(path):
        ctx = r["context"]
        q = ctx.removeprefix("Question: ").removesuffix("\nAnswer:").rstrip("?")
        aliases = list(r.get("aliases") or [r["answer"]])
        rows.append({"question": q, "answer": {"value": r["answer"], "aliases": aliases}})
    return rows


def load_split_files(data_dir: Path, files: dict[str, str], adapter: str):
    """Read each split's file with ``adapter``; returns ``{split: datasets.Dataset}``."""
    import datasets

    if adapter not in ADAPTERS:
        raise DataError(f"unknown data adapter {adapter!r}; known: {', '.join(sorted(ADAPTERS))}")
    out = {}
    for split, rel in files.items():
        path = Path(data_dir) / rel
        if not path.exists():
            raise DataError(f"data file {path} is missing: the data folder {data_dir} must hold "
                            f"{rel} (laid out like ../shared/data/benchmarks; see its PROVENANCE.md), "
                            "or run without --data-dir to use lm-eval's hub dataset")
        try:
            rows = ADAPTERS[adapter](path)
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text (byte {e.start}): re-encode it as UTF-8") from e
        except (KeyError, ValueError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}: unexpected record layout for adapter {adapter!r} ({e!r})") from e
        if not rows:
            raise DataError(f"data file {path} has no items: an empty dataset cannot be scored")
        out[split] = datasets.Dataset.from_list(rows)
    return out
