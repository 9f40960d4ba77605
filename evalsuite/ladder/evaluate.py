"""Score ladder checkpoints on the real GPT-3 arithmetic items through lm-eval itself.

The task is lm-eval's own ``arithmetic_*`` YAML (its ``process_docs``, prompt, empty target
delimiter and ``acc`` metric), loaded from the installed package with only the data file
swapped for the local copy, so the number is lm-eval's ``acc``: 1 when the greedy
continuation of the context equals the answer. This is the one place in ``evalsuite.ladder``
that touches lm-eval types and its ``"acc,none"`` keys.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

#: GPT-3 file behind each lm-eval arithmetic task (lm-eval's YAMLs read the same names).
TASK_FILES = {
    "arithmetic_1dc": "single_digit_three_ops.jsonl", "arithmetic_2da": "two_digit_addition.jsonl",
    "arithmetic_2dm": "two_digit_multiplication.jsonl",
    "arithmetic_2ds": "two_digit_subtraction.jsonl",
    "arithmetic_3da": "three_digit_addition.jsonl",
    "arithmetic_3ds": "three_digit_subtraction.jsonl",
    "arithmetic_4da": "four_digit_addition.jsonl", "arithmetic_4ds": "four_digit_subtraction.jsonl",
    "arithmetic_5da": "five_digit_addition.jsonl", "arithmetic_5ds": "five_digit_subtraction.jsonl",
}


def arithmetic_task(task_name: str, data_file: str | Path):
    """lm-eval's ``task_name`` task with its data file replaced by the local ``data_file``."""
    import lm_eval.tasks
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    if task_name not in TASK_FILES:
        raise ValueError(f"unknown arithmetic task {task_name!r}; known: {', '.join(TASK_FILES)}")
    yaml_path = Path(lm_eval.tasks.__file__).parent / "arithmetic" / f"{task_name}.yaml"
    config = load_yaml(yaml_path)
    config["dataset_kwargs"] = {"data_files": {"validation": str(Path(data_file).resolve())}}
    config.pop("tag", None)
    return ConfigurableTask(config=config)


def build_requests(task) -> list:
    """Build the task's loglikelihood requests once (zero-shot); they do not depend on the model."""
    task.set_config(key="num_fewshot", value=0)
    task.build_all_requests(limit=None, rank=0, world_size=1)
    return list(task.instances)


def evaluate_checkpoint(folder: str | Path, task, requests: list | None = None,
                        batch_size: int = 64) -> dict:
    """lm-eval ``acc`` of one HF model folder on a prepared task, with its binomial stderr.

    Runs the task's own requests through ``HFLM.loglikelihood`` and scores each document with
    the task's own ``process_results`` (what ``simple_evaluate`` does, minus its per-call
    environment report and request rebuilding, which cost ~30 s per checkpoint here). Also
    returns the mean log-probability of the answer, the continuous companion of ``acc``.
    """
    from lm_eval.models.huggingface import HFLM

    requests = requests if requests is not None else build_requests(task)
    lm = HFLM(pretrained=str(folder), device="cpu", dtype="float32", batch_size=batch_size)
    responses = lm.loglikelihood(requests)
    accs, lls = [], []
    for inst, (ll, is_greedy) in zip(requests, responses):
        accs.append(task.process_results(inst.doc, [(ll, is_greedy)])["acc"])
        lls.append(ll)
    n = len(accs)
    acc = sum(accs) / n
    stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else None
    return {"acc": acc, "stderr": stderr, "n": n, "answer_logprob": sum(lls) / n}


def list_checkpoints(root: str | Path) -> list[tuple[str, int, Path]]:
    """(size, step, folder) under ``root/<size>/step<N>/``, smallest size first (by the
    parameter counts in ladder.json), then by step."""
    root = Path(root)
    order: list[str] = []
    manifest = root / "ladder.json"
    if manifest.exists():
        sizes = json.loads(manifest.read_text())["sizes"]
        order = [s["label"] for s in sorted(sizes, key=lambda s: s["n_params"])]
    found = []
    for size_dir in root.iterdir():
        if not size_dir.is_dir():
            continue
        for step_dir in size_dir.glob("step*"):
            if step_dir.name[4:].isdigit() and (step_dir / "config.json").exists():
                found.append((size_dir.name, int(step_dir.name[4:]), step_dir))
    rank = {label: i for i, label in enumerate(order)}
    return sorted(found, key=lambda t: (rank.get(t[0], len(rank)), t[0], t[1]))


def evaluate_ladder(root: str | Path, data_file: str | Path, task_name: str = "arithmetic_2da",
                    log: Callable[[str], None] = print) -> dict:
    """Score every checkpoint under ``root``; write and return ``root/accuracy.json``."""
    import lm_eval

    root = Path(root)
    task = arithmetic_task(task_name, data_file)
    requests = build_requests(task)
    rows = []
    t0 = time.perf_counter()
    for size, step, folder in list_checkpoints(root):
        state = json.loads((folder / "trainer_state.json").read_text())
        r = evaluate_checkpoint(folder, task, requests)
        rows.append({"size": size, "step": step, "tokens_seen": state.get("num_input_tokens_seen"),
                     **r})
        log(f"{task_name} {size} step{step}: acc {r['acc']:.4f} (n={r['n']})")
    result = {"task": task_name, "metric": "acc", "data_file": Path(data_file).name,
              "harness": f"lm-eval {lm_eval.__version__}", "num_fewshot": 0,
              "wall_time_s": round(time.perf_counter() - t0, 1), "rows": rows}
    (root / "accuracy.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
