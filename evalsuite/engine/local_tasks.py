"""lm-eval task YAMLs over the local benchmark copies in ``../shared/data/benchmarks``.

Used by the engine's equality test and benchmark, which must run offline, until the task
registry bundles these tasks. Each task mirrors the built-in lm-eval task of the same name
(prompt template, choices, target delimiter, metrics) and reads documents converted to that
task's schema, written into a scratch folder (never into the repository). Task names carry an
``es_`` prefix so they never shadow built-in tasks when lm-eval's CLI indexes both.

Known differences from the built-ins: HellaSwag comes from a pre-processed text rendition
whose ``ctx_b`` is not capitalised; WinoGrande is rebuilt from MosaicML's partial-sentence
format; ARC's 5-shot examples come from the first 100 test items (the train split is not
available offline), and the scored items start after them. See the data's PROVENANCE.md.
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path

ARC_FEWSHOT_POOL = 100

_MC_METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

_ARC = """dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    test: {test}
output_type: multiple_choice
training_split: train
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
""" + _MC_METRICS

_TEMPLATES = {
    "es_arc_easy": "task: es_arc_easy\n" + _ARC,
    "es_arc_easy_5shot": "task: es_arc_easy_5shot\nnum_fewshot: 5\n" + _ARC,
    "es_hellaswag": """task: es_hellaswag
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {validation}
output_type: multiple_choice
validation_split: validation
doc_to_text: "{{{{query}}}}"
doc_to_target: "{{{{label}}}}"
doc_to_choice: "choices"
""" + _MC_METRICS,
    "es_piqa": """task: es_piqa
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {validation}
output_type: multiple_choice
validation_split: validation
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{[sol1, sol2]}}}}"
""" + _MC_METRICS,
    "es_lambada_openai": """task: es_lambada_openai
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
output_type: loglikelihood
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
    "es_winogrande": """task: es_winogrande
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {validation}
output_type: multiple_choice
validation_split: validation
doc_to_text: "{{{{gold}}}}"
doc_to_target: "{{{{' ' + continuation}}}}"
doc_to_choice: "{{{{context_options}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
    "es_arithmetic_2da": """task: es_arithmetic_2da
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {validation}
output_type: loglikelihood
validation_split: validation
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{completion}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
    "es_arithmetic_2da_gen": """task: es_arithmetic_2da_gen
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {validation}
output_type: generate_until
validation_split: validation
doc_to_text: "{{{{context}}}}"
doc_to_target: "{{{{completion}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: {max_gen_toks}
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""",
}

TASK_NAMES = tuple(_TEMPLATES)


def _read_jsonl(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def _arithmetic(path: Path, limit: int | None) -> list[dict]:
    # lm-eval's arithmetic process_docs normalisation, applied when converting
    return [{"context": d["context"].strip().replace("\n\n", "\n").replace("Q:", "Question:")
             .replace("A:", "Answer:"), "completion": d["completion"]}
            for d in _read_jsonl(path, limit)]


def _hellaswag(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with bz2.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    for i in range(0, len(lines) - 5, 6):
        rows.append({"query": lines[i], "label": int(lines[i + 1]), "choices": lines[i + 2:i + 6]})
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _piqa(folder: Path, limit: int | None) -> list[dict]:
    docs = _read_jsonl(folder / "valid.jsonl", limit)
    labels = (folder / "valid-labels.lst").read_text().split()
    return [{"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(lab)}
            for d, lab in zip(docs, labels)]


def write_local_tasks(out_dir: str | Path, data_root: str | Path, *,
                      tasks: tuple[str, ...] = TASK_NAMES, max_items: int | None = None,
                      max_gen_toks: int = 16) -> Path:
    """Write task YAMLs and converted documents for ``tasks`` into ``out_dir``.

    ``data_root`` is the ``benchmarks`` folder of the shared data. ``max_items`` caps the
    documents converted per task (ARC keeps its 100-item few-shot pool on top). Returns the
    folder to pass as lm-eval's ``include_path``.
    """
    out, root = Path(out_dir), Path(data_root)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    unknown = [t for t in tasks if t not in _TEMPLATES]
    if unknown:
        raise ValueError(f"unknown local task(s) {unknown}; known: {list(TASK_NAMES)}")
    for task in tasks:
        fields: dict[str, object] = {}
        if task in ("es_arc_easy", "es_arc_easy_5shot"):
            cap = None if max_items is None else ARC_FEWSHOT_POOL + max_items
            docs = _read_jsonl(root / "arc" / "arc_easy_test.jsonl", cap)
            fields["train"] = _write_jsonl(data / "arc_easy_fewshot.jsonl", docs[:ARC_FEWSHOT_POOL])
            fields["test"] = _write_jsonl(data / "arc_easy_test.jsonl", docs[ARC_FEWSHOT_POOL:])
        elif task == "es_hellaswag":
            fields["validation"] = _write_jsonl(data / "hellaswag.jsonl", _hellaswag(
                root / "hellaswag" / "hellaswag_val_full.txt.bz2", max_items))
        elif task == "es_piqa":
            fields["validation"] = _write_jsonl(data / "piqa.jsonl", _piqa(root / "piqa", max_items))
        elif task == "es_lambada_openai":
            docs = _read_jsonl(root / "lambada_openai" / "lambada_openai_test.llmfoundry.jsonl",
                               max_items)
            fields["test"] = _write_jsonl(data / "lambada_openai.jsonl", [
                {"text": d["context"] + " " + d["continuation"]} for d in docs])
        elif task == "es_winogrande":
            docs = _read_jsonl(root / "winogrande" / "winogrande_dev.llmfoundry.jsonl", max_items)
            fields["validation"] = _write_jsonl(data / "winogrande.jsonl", docs)
        elif task in ("es_arithmetic_2da", "es_arithmetic_2da_gen"):
            fields["validation"] = _write_jsonl(data / "arithmetic_2da.jsonl", _arithmetic(
                root / "gpt3_arithmetic_unscramble" / "two_digit_addition.jsonl", max_items))
            fields["max_gen_toks"] = max_gen_toks
        (out / f"{task}.yaml").write_text(_TEMPLATES[task].format(**fields), encoding="utf-8")
    return out
