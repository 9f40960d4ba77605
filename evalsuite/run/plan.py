"""Planning a run: every checkpoint x precision x task cell, each with the key of its result.

A cell's key (:mod:`.keys`) hashes every input that changes its numbers: weights, model config,
tokenizer, precision, the resolved task config and the documents read, lm-eval's version and the
settings; batch size, device, engine and executor are not part of it. Cells are grouped by what
is loaded (source, weights, tokenizer, config, precision), never by a display id, and two
checkpoints that would share an id stop the run before anything loads.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from typing import Sequence

from ..precision.spec import PrecisionError, parse_precision
from ..records import Checkpoint, RunConfig, TaskSpec
from .keys import TaskFingerprint, cell_key, effective_fewshot, lm_eval_version

__all__ = ["RunError", "Cell", "plan_cells", "group_cells", "unique_checkpoints", "load_identity",
           "check_fewshot", "resolve_auto_precision"]


class RunError(RuntimeError):
    """A run that cannot start (bad settings, locked results folder)."""


@dataclass(frozen=True)
class Cell:
    checkpoint: Checkpoint  # with its precision set
    task: TaskSpec
    key: str
    fingerprint: TaskFingerprint  # of the task as the driver built it; workers must match it


def unique_checkpoints(checkpoints: Sequence[Checkpoint]) -> tuple[list[Checkpoint], list[str]]:
    """One entry per checkpoint: exact repeats (same id, same source) are kept once and reported;
    two different checkpoints that would share an id (``step100/`` and ``checkpoint-100/``, or a
    manifest giving two paths one size and step) are a :class:`RunError` naming both."""
    kept: dict[str, Checkpoint] = {}
    notes: list[str] = []
    for ck in checkpoints:
        prev = kept.get(ck.id)
        if prev is None:
            kept[ck.id] = ck
        elif load_identity(prev) == load_identity(ck):
            notes.append(f"{ck.id} ({ck.source}) is listed more than once; it is scored once")
        else:
            raise RunError(f"two different checkpoints would both be {ck.id}: {prev.source} and "
                           f"{ck.source}; give them distinct size/step labels (a manifest with "
                           "size: and step: per entry) or remove one of them")
    return list(kept.values()), notes


def load_identity(ckpt: Checkpoint) -> tuple:
    """What is actually loaded: groups are keyed by this, never by the display id."""
    return (ckpt.source, ckpt.revision, ckpt.weight_hash, ckpt.tokenizer_hash,
            ckpt.model_config_hash, ckpt.precision)


def check_fewshot(spec: TaskSpec, config: RunConfig, fp: TaskFingerprint) -> None:
    shots = effective_fewshot(spec, config)
    if shots < 0:
        raise RunError(f"--num-fewshot {shots} for task {spec.name}: shots cannot be negative")
    if shots and fp.n_fewshot_pool is not None and shots > fp.n_fewshot_pool:
        raise RunError(f"task {spec.name}: {shots} shots asked for, but its few-shot pool has only "
                       f"{fp.n_fewshot_pool} documents; pass --num-fewshot {fp.n_fewshot_pool} "
                       "or fewer")


def resolve_auto_precision(name: str, device: str) -> str:
    """``auto`` is bf16 on CUDA (half the memory of fp32, the range of fp32: no fp16 overflow)
    and fp32 on CPU (bf16 is slower there and moved log-likelihoods by up to 0.36 nats); any
    other name is returned as given. Resolved before the cell key, so rows name the real one."""
    if name.strip().lower() != "auto":
        return name
    return "bf16" if device.startswith("cuda") else "fp32"


def plan_cells(checkpoints: Sequence[Checkpoint], specs: Sequence[TaskSpec],
               config: RunConfig, fingerprints: dict[str, TaskFingerprint]) -> list[Cell]:
    """Every checkpoint x precision x task cell, checkpoint-major (a model loads once per precision).

    Precision names are canonicalised (``int4`` -> ``int4-b64``, ``auto`` -> bf16 on CUDA, fp32
    on CPU); an unknown one, or a k-bit one
    whose library is missing, stops the run before anything loads.
    """
    names: list[str] = []
    for p in config.precisions:
        p = resolve_auto_precision(p, config.device)
        try:
            spec = parse_precision(p)
        except PrecisionError as e:
            raise RunError(str(e)) from e
        if spec.is_quantized:
            try:
                import torchao  # noqa: F401
            except ImportError as e:
                raise RunError(f"precision {spec.name} needs torchao (pip install 'torchao>=0.18'); "
                               "a requested precision never silently falls back") from e
        if spec.name not in names:
            names.append(spec.name)
    for spec in specs:
        check_fewshot(spec, config, fingerprints[spec.name])
    lm_eval = lm_eval_version()
    cells = []
    for ckpt in checkpoints:
        for p in names:
            c = ckpt.with_precision(p)
            for spec in specs:
                fp = fingerprints[spec.name]
                cells.append(Cell(c, spec, cell_key(c, spec, config, fp, lm_eval), fp))
    return cells


def group_cells(cells: Sequence[Cell]) -> list[list[Cell]]:
    """Cells grouped by what is loaded (:func:`load_identity`: one model load each), in plan
    order; never by display id, so two checkpoints can never share one model."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.checkpoint.id,) + load_identity(cell.checkpoint), []).append(cell)
    return list(groups.values())


def shard_of(cell: Cell, n: int) -> int:
    """Which of ``n`` shards a cell belongs to (``evalsuite run --shard I/N``): by a hash of its
    checkpoint id and precision, so a checkpoint's cells stay together (one model load), the
    split is the same in every process and on every rerun, and it does not depend on which
    cells are finished or on the order checkpoints were found."""
    digest = hashlib.sha256(f"{cell.checkpoint.id}|{cell.checkpoint.precision}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n

