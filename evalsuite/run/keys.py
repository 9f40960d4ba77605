"""The cell key: every input that changes a cell's numbers, hashed in one place.

A cell is one checkpoint x precision x task x settings. ``evalsuite run`` skips a cell whose key
is already in the results folder, so the key must see everything that can change a number it
stores, and nothing that cannot (or a rerun would redo finished work). The ingredients:

===================  ====================================================================
ingredient           what it is
===================  ====================================================================
checkpoint           the checkpoint's derived id (rows are per id)
weights              sha256 of the weight files (content, not path); for a hub id that is
                     not cached, ``hub-id@revision``
model_config         sha256 of ``config.json`` without bookkeeping fields (a layer count or a
                     rope setting changes scores with the same weights)
tokenizer            sha256 of the tokenizer files (same weights, another vocabulary)
precision            the canonical precision name (``fp32``, ``int4-b64``...)
task                 evalsuite name, spec version, wrapped lm-eval task, primary metric
task_config          fingerprint of the resolved lm-eval task config: prompt templates,
                     choices, metrics, filters, few-shot settings, generation kwargs, after
                     ``include:`` merging; ``!function`` code by the hash of its source
data                 fingerprint of the documents actually read: evaluation and few-shot
                     documents after ``process_docs``
lm_eval              lm-eval's version (a release can change prompts or metrics)
num_fewshot          effective shots
limit, seed          item limit; few-shot / numpy / torch seed
bootstrap_iters      resamples behind the stored stderr
skip_bad_items       whether malformed records were dropped rather than refused
===================  ====================================================================

Not ingredients (the same numbers, tested): batch size, device, engine (``hf`` or
``evalsuite``), executor, threads, results folder. ``tests/test_cell_key.py`` changes each
ingredient in turn and sees the cell re-scored, and each non-ingredient and sees it skipped.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any

from ..records import Checkpoint, RunConfig, TaskSpec, config_hash

#: Fields of a resolved lm-eval task config that never change a number.
_CONFIG_IGNORED = {"custom_dataset", "metadata"}


@dataclass(frozen=True)
class TaskFingerprint:
    """What a built task will score: its resolved config and its documents, each hashed."""

    task_config: str
    data: str
    n_docs: int
    n_fewshot_pool: int | None = None


def _callable_identity(fn) -> str:
    """A function by its qualified name and the hash of its source (``!function`` code)."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = repr(fn)
    return f"{name}:{hashlib.sha256(src.encode()).hexdigest()[:16]}"


def _canonical(obj: Any) -> Any:
    if callable(obj) and not isinstance(obj, type):
        return _callable_identity(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _digest(obj: Any) -> str:
    blob = json.dumps(_canonical(obj), sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _docs(docs) -> list:
    return [] if docs is None else [dict(d) if hasattr(d, "keys") else d for d in docs]


def fingerprint_task(task_obj) -> TaskFingerprint:
    """Hash a built lm-eval task's resolved config and the documents it reads.

    The config is lm-eval's own ``TaskConfig`` after ``include:`` merging (``custom_dataset``,
    evalsuite's local-data hook, is left out: the documents it yields are hashed instead).
    """
    cfg = task_obj.config.to_dict(keep_callable=True)
    cfg = {k: v for k, v in cfg.items() if k not in _CONFIG_IGNORED}
    cfg.pop("num_fewshot", None)  # the effective shots are an ingredient of their own
    eval_docs = _docs(task_obj.eval_docs)
    try:
        fewshot = _docs(task_obj.fewshot_docs())
    except Exception:  # noqa: BLE001 - a task without any few-shot source
        fewshot = None
    return TaskFingerprint(task_config=_digest(cfg),
                           data=_digest({"eval": eval_docs, "fewshot": fewshot}),
                           n_docs=len(eval_docs),
                           n_fewshot_pool=fewshot_pool_size(task_obj, fewshot, len(eval_docs)))


def fewshot_pool_size(task_obj, fewshot: list | None, n_eval: int) -> int | None:
    """Documents lm-eval can draw shots from; one fewer where they are the evaluated split
    (lm-eval leaves the document being asked out of its own prompt)."""
    if fewshot is None:
        return None
    cfg = task_obj.config
    eval_split = cfg.test_split if task_obj.has_test_docs() else cfg.validation_split
    split = getattr(getattr(task_obj, "fewshot_cfg", None), "split", None) or cfg.fewshot_split
    if split is not None:
        same = split == eval_split
    elif task_obj.has_training_docs():
        same = False
    else:
        same = not (task_obj.has_validation_docs() and task_obj.has_test_docs())
    return max(0, len(fewshot) - (1 if same and len(fewshot) == n_eval else 0))


def lm_eval_version() -> str:
    from ..versions import package_version

    return package_version("lm_eval")


def effective_fewshot(spec: TaskSpec, config: RunConfig) -> int:
    return spec.num_fewshot if config.num_fewshot is None else config.num_fewshot


def weights_identity(ckpt: Checkpoint) -> str:
    """Content hash of the weights, or ``source@revision`` where they were not hashed."""
    return ckpt.weight_hash or f"{ckpt.source}@{ckpt.revision or ''}"


def cell_key(ckpt: Checkpoint, spec: TaskSpec, config: RunConfig,
             task_fp: TaskFingerprint, lm_eval: str | None = None) -> str:
    """The key of one cell: a hash of every ingredient in this module's table."""
    return config_hash({
        "checkpoint": ckpt.id, "weights": weights_identity(ckpt),
        "model_config": ckpt.model_config_hash, "tokenizer": ckpt.tokenizer_hash,
        "precision": ckpt.precision,
        "task": spec.name, "task_version": spec.version, "lm_eval_task": spec.lm_eval_task,
        "primary_metric": spec.primary_metric,
        "task_config": task_fp.task_config, "data": task_fp.data,
        "lm_eval": lm_eval or lm_eval_version(),
        "num_fewshot": effective_fewshot(spec, config), "limit": config.limit,
        "seed": config.seed, "bootstrap_iters": config.bootstrap_iters,
        "skip_bad_items": config.skip_bad_items,
    })
