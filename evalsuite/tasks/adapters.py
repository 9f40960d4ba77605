"""Local data files -> the rows lm-eval's task definitions expect.

Each adapter reads one benchmark as laid out in a data folder like ``../shared/data/benchmarks``
(see its PROVENANCE.md for the source of each file and the field mapping used here) and returns
its records in the schema of the Hugging Face dataset lm-eval normally downloads, so lm-eval's
own prompts, choices and metrics apply unchanged.

Every record keeps where it came from (:class:`RecordSource`: file and line, and for PIQA the
line of the labels file too), and a record an adapter cannot convert is kept as a
:class:`BadRecord` naming its file, line and field instead of stopping the read. The caller
decides: refuse the data (the default) or drop and count the bad records. A file that cannot be
read at all (missing, empty, not UTF-8, misaligned) is a :class:`DataError`.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

#: adapter name -> reader of one split file
ADAPTERS: dict[str, Callable[[Path], "SplitRecords"]] = {}


class DataError(RuntimeError):
    """A data file that is missing, empty or unreadable, or holds bad records."""


@dataclass(frozen=True)
class RecordSource:
    """Where one record comes from: ``path:line``, plus lines of other files it draws on."""

    path: Path
    line: int
    also: tuple[tuple[str, Path, int], ...] = ()  # (field, path, line), e.g. PIQA's labels file

    def __str__(self) -> str:
        extra = "".join(f" ({name} from {p}:{ln})" for name, p, ln in self.also)
        return f"{self.path}:{self.line}{extra}"


@dataclass(frozen=True)
class BadRecord:
    """A record that cannot be scored: where it is, which field, and what is wrong."""

    source: RecordSource | str
    field: str | None
    problem: str

    def __str__(self) -> str:
        where = f"field {self.field!r}: " if self.field else ""
        return f"{self.source}: {where}{self.problem}"


@dataclass
class SplitRecords:
    """One split file read by an adapter: good rows with a parallel list of sources, and the
    records that could not be converted."""

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    sources: list[RecordSource] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    _dataset: Any = field(default=None, repr=False, compare=False)

    def without(self, drop: Iterable[int]) -> "SplitRecords":
        """A copy without the rows at the given indices (into ``rows``)."""
        drop = set(drop)
        keep = [i for i in range(len(self.rows)) if i not in drop]
        return SplitRecords(self.path, [self.rows[i] for i in keep],
                            [self.sources[i] for i in keep], list(self.bad))

    def to_dataset(self):
        """The rows as a ``datasets.Dataset`` (columns: every field any row has)."""
        if self._dataset is None:
            import datasets

            columns = list(dict.fromkeys(k for row in self.rows for k in row))
            self._dataset = datasets.Dataset.from_list([{k: row.get(k) for k in columns}
                                                        for row in self.rows])
        return self._dataset


class _Reject(Exception):
    """Raised while converting one record: the record is bad, for this reason."""

    def __init__(self, field: str | None, problem: str, source: RecordSource | None = None):
        super().__init__(problem)
        self.field, self.problem, self.source = field, problem, source


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


def _get(rec: Any, key: str, convert: Callable[[Any], Any] | None = None, what: str = "") -> Any:
    """``rec[key]`` (converted), or reject the record naming the field."""
    if not isinstance(rec, dict):
        raise _Reject(None, f"expected a JSON object, got {type(rec).__name__}")
    if rec.get(key) is None:
        raise _Reject(key, "missing" if key not in rec else "is null")
    value = rec[key]
    if convert is None:
        return value
    try:
        return convert(value)
    except (TypeError, ValueError) as e:
        raise _Reject(key, f"{value!r} is not {what or 'valid'}") from e


def _collect(path: Path, items: Iterable[tuple[RecordSource, Any]],
             convert: Callable[[Any], dict[str, Any]]) -> SplitRecords:
    """Convert each (source, raw) item; a rejected one becomes a BadRecord."""
    out = SplitRecords(path)
    for source, raw in items:
        if isinstance(raw, _Reject):
            out.bad.append(BadRecord(raw.source or source, raw.field, raw.problem))
            continue
        try:
            row = convert(raw)
        except _Reject as e:
            out.bad.append(BadRecord(e.source or source, e.field, e.problem))
        else:
            out.rows.append(row)
            out.sources.append(source)
    return out


def _jsonl_items(path: Path) -> Iterator[tuple[RecordSource, Any]]:
    """(source, parsed JSON or a _Reject) per non-blank line."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            source = RecordSource(path, lineno)
            try:
                yield source, json.loads(line)
            except json.JSONDecodeError as e:
                yield source, _Reject(None, f"not valid JSON ({e.msg}); the file is corrupt: restore "
                                            "it from its source (see PROVENANCE.md)")


def _csv_items(path: Path, delimiter: str = ",") -> Iterator[tuple[RecordSource, dict[str, str]]]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        for rec in reader:
            yield RecordSource(path, reader.line_num), rec


def _as_object(rec: Any) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise _Reject(None, f"expected a JSON object, got {type(rec).__name__}")
    return rec


@_adapter("jsonl")
def read_plain_jsonl(path: Path) -> SplitRecords:
    """Rows already in the lm-eval schema (ARC in HF ai2_arc form, GPT-3 arithmetic)."""
    return _collect(path, _jsonl_items(path), _as_object)


@_adapter("piqa")
def read_piqa(path: Path) -> SplitRecords:
    """``valid.jsonl`` with labels from the aligned ``valid-labels.lst`` beside it."""
    labels_path = path.with_name(path.stem + "-labels.lst")
    if not labels_path.exists():
        raise DataError(f"PIQA labels file {labels_path} is missing: it must sit beside {path}")
    labels = [(n, ln.strip()) for n, ln in enumerate(labels_path.read_text(encoding="utf-8")
                                                      .splitlines(), 1) if ln.strip()]
    items = list(_jsonl_items(path))
    if len(labels) != len(items):
        raise DataError(f"{labels_path} has {len(labels)} labels for {len(items)} items in {path}: "
                        "the files must be aligned line by line (see PROVENANCE.md)")

    def joined():
        for (source, raw), (label_line, label) in zip(items, labels):
            yield RecordSource(source.path, source.line, (("label", labels_path, label_line),)), (raw, label)

    def convert(item):
        raw, label = item
        if isinstance(raw, _Reject):
            raise raw
        row = {"goal": _get(raw, "goal"), "sol1": _get(raw, "sol1"), "sol2": _get(raw, "sol2")}
        try:
            row["label"] = int(label)
        except ValueError:
            raise _Reject("label", f"{label!r} is not an integer") from None
        return row

    return _collect(path, joined(), convert)


@_adapter("lambada_mosaic")
def read_lambada(path: Path) -> SplitRecords:
    """MosaicML context/continuation -> lm-eval's ``text`` (= context + " " + continuation)."""
    return _collect(path, _jsonl_items(path),
                    lambda r: {"text": _get(r, "context", str) + " " + _get(r, "continuation", str)})


@_adapter("hellaswag_text")
def read_hellaswag(path: Path) -> SplitRecords:
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

    def items():
        for i in range(0, len(lines), 6):
            yield RecordSource(path, i + 1), (i, lines[i:i + 6])

    def convert(item):
        i, (head, label, *endings) = item
        activity, _, ctx = head.partition(": ")
        try:
            gold = int(label)
        except ValueError:
            raise _Reject("label", f"{label!r} is not an integer",
                          RecordSource(path, i + 2)) from None
        return {"activity_label": activity, "ctx_a": ctx, "ctx_b": "", "ctx": ctx,
                "endings": endings, "label": str(gold)}

    return _collect(path, items(), convert)


@_adapter("winogrande_mosaic")
def read_winogrande(path: Path) -> SplitRecords:
    """MosaicML context_options/continuation/gold -> sentence, option1, option2, answer."""
    def convert(r):
        options = _get(r, "context_options")
        if not (isinstance(options, list) and len(options) == 2):
            raise _Reject("context_options", f"expected 2 options, got {options!r:.60}")
        a, b = options
        wa, wb = a.split(" "), b.split(" ")
        k = 0
        while k < min(len(wa), len(wb)) - 1 and wa[k] == wb[k]:
            k += 1
        prefix = " ".join(wa[:k])
        opt1, opt2 = " ".join(wa[k:]), " ".join(wb[k:])
        sentence = (prefix + " " if prefix else "") + "_" + " " + _get(r, "continuation", str).lstrip()
        return {"sentence": sentence, "option1": opt1, "option2": opt2,
                "answer": str(_get(r, "gold", int, "an integer") + 1)}

    return _collect(path, _jsonl_items(path), convert)


@_adapter("boolq_mosaic")
def read_boolq(path: Path) -> SplitRecords:
    """``query = "Passage: {passage}\\nQuestion: {question}?"`` -> passage, question, label."""
    def convert(r):
        q = _get(r, "query", str)
        if not q.startswith("Passage: ") or "\nQuestion: " not in q:
            raise _Reject("query", "not in the expected 'Passage: ...\\nQuestion: ...?' shape: "
                                   f"{q[:60]!r}")
        passage, _, question = q[len("Passage: "):].rpartition("\nQuestion: ")
        return {"passage": passage, "question": question.rstrip("?"),
                "label": _get(r, "gold", int, "an integer")}

    return _collect(path, _jsonl_items(path), convert)


@_adapter("copa_mosaic")
def read_copa(path: Path) -> SplitRecords:
    """``query = premise[:-1] + " because"|" therefore"`` -> premise, question, choice1/2, label."""
    def convert(r):
        q = _get(r, "query", str)
        for connector, question in ((" because", "cause"), (" therefore", "effect")):
            if q.endswith(connector):
                premise = q[: -len(connector)] + "."
                break
        else:
            raise _Reject("query", f"does not end in ' because' or ' therefore': {q[-40:]!r}")
        choices = _get(r, "choices")
        if not (isinstance(choices, list) and len(choices) == 2):
            raise _Reject("choices", f"expected 2 choices, got {choices!r:.60}")
        return {"premise": premise, "question": question, "choice1": choices[0],
                "choice2": choices[1], "label": _get(r, "gold", int, "an integer")}

    return _collect(path, _jsonl_items(path), convert)


@_adapter("openbookqa_tsv")
def read_openbookqa(path: Path) -> SplitRecords:
    """AI2 Main/test.tsv -> id, question_stem, choices{text,label}, answerKey."""
    import re

    def convert(rec):
        parts = re.split(r"\(([A-D])\)\s*", _get(rec, "Choices"))[1:]
        if not parts:
            raise _Reject("Choices", "no '(A) ... (B) ...' choices")
        labels, texts = parts[0::2], [t.strip() for t in parts[1::2]]
        return {"id": _get(rec, "ID"), "question_stem": _get(rec, "Question Stem"),
                "choices": {"text": texts, "label": labels},
                "answerKey": _get(rec, "Answer Key").strip()}

    return _collect(path, _csv_items(path, "\t"), convert)


@_adapter("mmlu_csv")
def read_mmlu(path: Path) -> SplitRecords:
    """HF cais/mmlu exported as CSV (question, choice0..3, answer as 0-based index)."""
    subject = path.stem.rsplit("_", 1)[0]
    return _collect(path, _csv_items(path), lambda r: {
        "question": _get(r, "question"), "subject": subject,
        "choices": [_get(r, f"choice{i}") for i in range(4)],
        "answer": _get(r, "answer", int, "an integer")})


@_adapter("bbh_json")
def read_bbh(path: Path) -> SplitRecords:
    """A BIG-Bench Hard task file, ``{"examples": [{"input", "target"}, ...]}`` (the upstream
    suzgun/BIG-Bench-Hard layout): one row per example, as in the hub's lukaemon/bbh."""
    with _open_text(path) as fh:
        doc = json.load(fh)
    examples = doc.get("examples") if isinstance(doc, dict) else None
    if not isinstance(examples, list):
        raise ValueError("no 'examples' list at the top level")
    items = ((RecordSource(path, i + 1), ex) for i, ex in enumerate(examples))
    return _collect(path, items, lambda r: {"input": _get(r, "input", str, "text"),
                                            "target": _get(r, "target", str, "text")})


@_adapter("bigbench_json")
def read_bigbench(path: Path) -> SplitRecords:
    """A BIG-bench ``task.json`` as the hub's ``hails/bigbench`` (``<task>_zero_shot``, split
    ``default``) holds it, for lm-eval's ``bigbench_*`` tasks.

    The rows follow how that dataset was built (HF ``bigbench`` builder with ``num_shots=0``
    over BIG-bench's JSON-task formatting, read from the ``bigbench==1.0.0`` sources): every
    example in file order, exact duplicates dropped (first ``json.dumps`` kept); a parent
    task.json without examples concatenates its subtask folders in sorted order, each with its
    own prefixes. ``inputs`` = (task_prefix + example_input_prefix ["\nQ: "] + input
    [+ choice_prefix ["\n  choice: "] + the choices, sorted and then permuted by
    ``numpy.random.RandomState(42).permutation``, fresh for every example, when the example has
    target_scores and append_choices_to_input is truthy] + example_output_prefix ["\nA: "])
    stripped; ``targets`` = the target (a list), else the first choice with the top score;
    ``multiple_choice_targets`` / ``multiple_choice_scores`` = target_scores' keys and int()
    of its values in file order; ``idx`` restarts at 0 in each subtask.
    """
    import numpy as np

    def load(p: Path) -> dict:
        with _open_text(p) as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict):
            raise ValueError("the task.json top level is not an object")
        return doc

    doc = load(path)
    if "examples" in doc:
        tasks = [(path, doc)]
    else:
        subs = sorted(str(d / "task.json") for d in path.parent.iterdir()
                      if (d / "task.json").is_file())
        if not subs:
            raise ValueError("no 'examples' and no subtask folders with a task.json")
        tasks = [(Path(p), load(Path(p))) for p in subs]

    def items():
        for task_path, task in tasks:
            examples = task.get("examples")
            if not isinstance(examples, list):
                raise ValueError(f"{task_path}: no 'examples' list")
            in_prefix = task.get("example_input_prefix", "\nQ: ")
            out_prefix = task.get("example_output_prefix", "\nA: ")
            choice_prefix = task.get("choice_prefix", "\n  choice: ")
            append = bool(task.get("append_choices_to_input", True))
            task_prefix = str(task.get("task_prefix", ""))
            seen, idx = set(), 0
            for line, ex in enumerate(examples, 1):
                key = json.dumps(ex)
                if key in seen:
                    continue
                seen.add(key)
                yield RecordSource(task_path, line), (ex, idx, in_prefix, out_prefix,
                                                      choice_prefix, append, task_prefix, np)
                idx += 1

    def convert(item):
        ex, idx, in_prefix, out_prefix, choice_prefix, append, task_prefix, np = item
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise _Reject("input", "missing or not text")
        text = ex["input"]
        scores = ex.get("target_scores")
        if scores is not None and not isinstance(scores, dict):
            raise _Reject("target_scores", "not an object of choice -> score")
        if scores and append:
            perm = np.random.RandomState(seed=42).permutation(sorted(scores))
            text = text + choice_prefix + choice_prefix.join(str(c) for c in perm)
        inputs = (task_prefix + in_prefix + text + out_prefix).strip()
        if "target" in ex:
            target = ex["target"]
            targets = [target] if isinstance(target, str) else list(target)
        elif scores:
            top = max(scores.values())
            targets = [next(k for k, v in scores.items() if v == top)]
        else:
            raise _Reject("target", "neither 'target' nor 'target_scores'")
        if not all(isinstance(t, str) for t in targets):
            raise _Reject("target", "not text")
        return {"idx": idx, "inputs": inputs, "targets": [t.strip() for t in targets],
                "multiple_choice_targets": [k.strip() for k in (scores or {})],
                "multiple_choice_scores": [int(v) for v in (scores or {}).values()]}

    return _collect(path, items(), convert)


@_adapter("triviaqa_mosaic")
def read_triviaqa(path: Path) -> SplitRecords:
    """MosaicML context ``"Question: ...\\nAnswer:"``/answer/aliases -> question, answer{value,aliases}."""
    def convert(r):
        ctx = _get(r, "context", str)
        q = ctx.removeprefix("Question: ").removesuffix("\nAnswer:").rstrip("?")
        answer = _get(r, "answer")
        aliases = list(r.get("aliases") or [answer])
        return {"question": q, "answer": {"value": answer, "aliases": aliases}}

    return _collect(path, _jsonl_items(path), convert)


def _check_fields(split: SplitRecords) -> SplitRecords:
    """Move rows lacking a field that most rows have (absent or null) to ``bad``.

    lm-eval's datasets would fill such a field with None and its templates render "None"
    without complaint: a silently wrong prompt. A field most rows lack is optional.
    """
    if not split.rows:
        return split
    counts: dict[str, int] = {}
    for row in split.rows:
        for key, value in row.items():
            if value is not None:
                counts[key] = counts.get(key, 0) + 1
    required = [k for k, n in counts.items() if 2 * n > len(split.rows)]
    drop = []
    for i, row in enumerate(split.rows):
        lacking = [k for k in required if row.get(k) is None]
        if lacking:
            drop.append(i)
            split.bad.append(BadRecord(split.sources[i], lacking[0],
                                       "missing" if lacking[0] not in row else "is null"))
    return split.without(drop) if drop else split


def _shape(value: Any) -> Any:
    """A value's type structure, as Arrow sees it (ints and floats are both numbers)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return ("list", frozenset(_shape(v) for v in value) - {None})
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _shape(v)) for k, v in value.items())))
    return type(value).__name__


def _compatible(a: Any, b: Any) -> bool:
    if a is None or b is None or a == b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "list":
        return not a[1] or not b[1] or (len(a[1]) == len(b[1]) == 1
                                        and _compatible(next(iter(a[1])), next(iter(b[1]))))
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "dict":
        da, db = dict(a[1]), dict(b[1])
        return all(_compatible(da.get(k), db.get(k)) for k in set(da) | set(db))
    return False


def _check_schema(split: SplitRecords) -> SplitRecords:
    """Build the split's Dataset; if Arrow cannot (a field of another type in some records),
    move the records whose field differs from most records' to ``bad`` and build again."""
    if not split.rows:
        return split
    try:
        split.to_dataset()
        return split
    except Exception as first:  # noqa: BLE001 - pyarrow's ArrowInvalid/ArrowTypeError and friends
        error = first
    shapes: dict[str, dict[Any, int]] = {}
    for row in split.rows:
        for key, value in row.items():
            counts = shapes.setdefault(key, {})
            counts[_shape(value)] = counts.get(_shape(value), 0) + 1
    usual = {k: max(c, key=c.get) for k, c in shapes.items()}
    drop = []
    for i, row in enumerate(split.rows):
        odd = [k for k, v in row.items() if not _compatible(_shape(v), usual[k])]
        if odd:
            drop.append(i)
            split.bad.append(BadRecord(split.sources[i], odd[0], f"{row[odd[0]]!r:.60} has another "
                                       "type than in the other records"))
    kept = split.without(drop)
    try:
        kept.to_dataset()
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{split.path}: the records do not share one schema ({error}); fix the "
                        "file (see PROVENANCE.md)") from e
    return kept


def read_split_files(data_dir: Path, files: dict[str, str], adapter: str) -> dict[str, SplitRecords]:
    """Read each split's file with ``adapter``: ``{split: SplitRecords}`` (bad records kept aside).

    Raises DataError for a file that is missing, unreadable or holds no records at all.
    """
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
            records = ADAPTERS[adapter](path)
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text (byte {e.start}): re-encode it as UTF-8") from e
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}: unexpected layout for adapter {adapter!r} ({e!r})") from e
        if not records.rows and not records.bad:
            raise DataError(f"data file {path} has no items: an empty dataset cannot be scored")
        out[split] = _check_schema(_check_fields(records))
    return out


def describe_bad(bad: list[BadRecord], limit: int = 5) -> str:
    """The first ``limit`` bad records, one per line, and how many more."""
    lines = [f"  {b}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


def load_split_files(data_dir: Path, files: dict[str, str], adapter: str):
    """Read each split's file with ``adapter``; returns ``{split: datasets.Dataset}``.

    Any record the adapter cannot convert is a DataError naming its file, line and field.
    """
    splits = read_split_files(data_dir, files, adapter)
    bad = [b for s in splits.values() for b in s.bad]
    if bad:
        raise DataError(f"{len(bad)} bad record(s) in {data_dir}:\n{describe_bad(bad)}")
    return {split: records.to_dataset() for split, records in splits.items()}
