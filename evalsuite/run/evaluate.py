"""Scoring in one process: load a checkpoint at a precision, run lm-eval on each of its cells.

The unit of work is a group: one checkpoint at one precision with all its missing task cells
(one model load). :class:`GroupEvaluator` scores groups, keeping the built tasks and the last
model between them; the local executor runs it in the driver's process, the Ray executor in
worker processes.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..engine.patches import memoize_requests
from ..precision.apply import AppliedPrecision
from ..precision.spec import PrecisionError, parse_precision
from ..records import Checkpoint, ResultRow, RunConfig, TaskSpec
from .keys import TaskFingerprint, effective_fewshot, fingerprint_task
from .plan import Cell, RunError, load_identity
from .rows import aggregation_names, cell_statistics, per_sample_frame, rows_for_cell

__all__ = ["GroupEvaluator", "CellOutcome", "CellFailure", "load_lm", "hub_snapshot",
           "evaluate_cell", "empty_task_manager", "package_versions"]


def package_versions() -> dict[str, str]:
    from ..versions import package_version

    out = {"python": platform.python_version()}
    for pkg in ("evalsuite", "lm_eval", "transformers", "torch", "datasets"):
        out[pkg] = package_version(pkg)
    return out


# ---- model loading ------------------------------------------------------------------------

def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RunError(f"--device {device} was requested but CUDA is not available on this "
                           "machine; use --device cpu")


def load_lm(ckpt: Checkpoint, config: RunConfig, reuse=None):
    """An lm-eval LM for one checkpoint at its precision (engine chosen by config.engine).

    Float precisions load in their dtype. k-bit precisions load fp32 and are quantized in place
    (:func:`evalsuite.precision.apply_precision`); a quantized model object is never reused for
    another load, in either direction. The result of applying the precision (bits, library, how
    much the weights changed) is attached as ``lm.evalsuite_precision`` for the rows.
    """
    from ..series import load_source

    _check_device(config.device)
    try:
        spec = parse_precision(ckpt.precision)
    except PrecisionError as e:
        raise RunError(str(e)) from e
    prev = getattr(reuse, "evalsuite_precision", None)
    if spec.is_quantized or (prev is not None and prev.n_quantized):
        reuse = None  # quantized weights must never be swapped into, or out of, a reused model
    pretrained, revision = load_source(ckpt)
    dtype = spec.torch_dtype
    if config.engine == "evalsuite" and ckpt.source.startswith("hub:"):
        pretrained, revision = hub_snapshot(pretrained, revision), None
    if config.engine == "evalsuite":
        from ..engine import create_lm

        lm = create_lm(pretrained, device=config.device, batch_size=config.batch_size,
                       dtype=dtype, trust_remote_code=config.trust_remote_code, reuse=reuse)
    elif config.engine == "hf":
        from lm_eval.models.huggingface import HFLM

        kwargs: dict[str, Any] = dict(pretrained=pretrained, device=config.device,
                                      batch_size=config.batch_size, dtype=dtype,
                                      trust_remote_code=config.trust_remote_code)
        if revision:
            kwargs["revision"] = revision
        lm = HFLM(**kwargs)
    else:
        raise RunError(f"unknown engine {config.engine!r}: use hf or evalsuite")
    from ..engine.loading import verify_checkpoint

    # before any precision is applied: random layers, dropped weights, ids past the vocabulary
    verify_checkpoint(getattr(lm, "model", None), getattr(lm, "tokenizer", None), pretrained,
                      revision)
    # PrecisionError propagates: the runner reports this checkpoint x precision as failed.
    lm.evalsuite_precision = apply_precision_to_lm(lm, spec)
    return lm


def hub_snapshot(repo_id: str, revision: str | None) -> str:
    """The local folder of a hub checkpoint: the Hugging Face cache, downloading it when online.

    The evalsuite engine reads local folders; a hub id is resolved here, with an error that
    names the offline switch when the snapshot is not cached and downloads are off.
    """
    import os

    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=offline)
    except Exception as e:  # noqa: BLE001 - a hub error becomes one clear line
        where = f"{repo_id}" + (f"@{revision}" if revision else "")
        if offline:
            raise FileNotFoundError(
                f"hub checkpoint {where} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
                "forbids downloading it; download it once online (huggingface_hub."
                "snapshot_download), unset HF_HUB_OFFLINE, or list a local folder instead") from e
        raise FileNotFoundError(f"hub checkpoint {where} could not be downloaded "
                                f"({e.__class__.__name__}: {str(e).splitlines()[0][:200]}); "
                                "check the id, the revision and the network") from e


def apply_precision_to_lm(lm, spec) -> AppliedPrecision:
    """Apply (k-bit) or check (float) a precision on the model inside an lm-eval LM."""
    from ..precision.apply import apply_precision

    model = getattr(lm, "model", None)
    if model is None:
        raise PrecisionError(f"precision {spec.name}: {type(lm).__name__} exposes no model to "
                             "quantize or check")
    return apply_precision(model, spec)


# ---- scoring one cell -------------------------------------------------------------------------

def empty_task_manager():
    """A TaskManager that indexes nothing: prebuilt tasks need no index, and lm-eval's default
    TaskManager() indexes ~14,700 YAML files (about 12 s) on every simple_evaluate call."""
    import tempfile

    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=tempfile.mkdtemp(prefix="evalsuite-empty-"),
                       include_defaults=False)


def evaluate_cell(lm, task_obj, spec: TaskSpec, config: RunConfig, task_manager=None) -> dict[str, Any]:
    """lm-eval's public ``evaluate`` on one prebuilt task, set up as ``simple_evaluate`` sets it
    (lm-eval 0.4.13: python seed 0, numpy and torch seeds, few-shot seed, shots), without the
    parts that never reach a row: its environment report (a ``pip list`` subprocess, ~3.4 s a
    cell) and a ``git describe`` that printed ``fatal: not a git repository`` once per cell.
    ``tests/test_runner.py`` pins equality with ``simple_evaluate``.
    """
    import random

    import lm_eval
    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    task_obj.set_config(key="num_fewshot", value=effective_fewshot(spec, config))
    loaded = (task_manager or empty_task_manager()).load([task_obj])
    for t in loaded["tasks"].values():
        t.set_fewshot_seed(seed=config.seed)
    return lm_eval.evaluate(lm=lm, task_dict=loaded, limit=config.limit, bootstrap_iters=0,
                            log_samples=True, fewshot_as_multiturn=True)


# ---- one group: a checkpoint at one precision, all its tasks ------------------------------------

@dataclass
class CellOutcome:
    """A finished cell from :meth:`GroupEvaluator.evaluate`: its rows and per-sample frame.

    ``scores`` (simple_evaluate's ``results`` and ``n-samples`` for this task, nothing else) and
    ``applied`` let the driver copy the cell to a checkpoint with the same weights.
    """
    cell: Cell
    rows: list[ResultRow]
    frame: Any
    scores: dict[str, Any]
    wall_time_s: float
    applied: AppliedPrecision | None
    message: str


@dataclass
class CellFailure:
    """A checkpoint that could not load, or one cell that failed: reported, the rest go on."""
    what: str
    error: str
    message: str


class GroupEvaluator:
    """Evaluates groups in one process, keeping built tasks and the last loaded model between them.

    The local executor holds one for a run; a Ray worker process keeps one for as long as it
    lives (:mod:`evalsuite.run.executors.ray`), so tasks are built once per process and consecutive
    checkpoints of one architecture swap weights into the same model object.
    """

    def __init__(self, registry, config: RunConfig, built: dict[str, Any] | None = None,
                 fingerprints: dict[str, TaskFingerprint] | None = None):
        self.registry = registry
        self.config = config
        self.tasks: dict[str, Any] = {}
        self.fingerprints: dict[str, TaskFingerprint] = dict(fingerprints or {})
        self.aggregations: dict[str, dict[str, str]] = {}
        self.versions = package_versions()
        self._manager = None
        self._lm = None
        self._loaded: tuple | None = None
        for name, task_obj in (built or {}).items():
            self._adopt(name, task_obj)

    def _adopt(self, name: str, task_obj) -> None:
        if name not in self.fingerprints:
            self.fingerprints[name] = fingerprint_task(task_obj)
        self.aggregations[name] = aggregation_names(task_obj)
        self.tasks[name] = memoize_requests(task_obj) if self.config.tuning else task_obj

    def prepare(self, names) -> None:
        """Build (and memoize the requests of) every named task not built yet."""
        for name in sorted(set(names) - set(self.tasks)):
            self._adopt(name, self.registry.build(name))

    def skipped_items(self, name: str) -> int:
        counter = getattr(self.registry, "skipped_items", None)
        return int(counter(name)) if callable(counter) else 0

    def evaluate(self, cells: Sequence[Cell],
                 on_result: Callable[[CellOutcome | CellFailure], None] | None = None
                 ) -> list[CellOutcome | CellFailure]:
        """Score one group's cells (one checkpoint x precision), in order.

        Each outcome goes to ``on_result`` as soon as it exists (the local executor writes it
        there and then) and is returned. A checkpoint that cannot load, or a cell that raises, is
        a :class:`CellFailure`; :class:`RunError` (a setting no checkpoint can run with) raises.
        """
        config = self.config
        results: list[CellOutcome | CellFailure] = []

        def emit(item):
            results.append(item)
            if on_result is not None:
                on_result(item)

        ck = cells[0].checkpoint
        self.prepare(c.task.name for c in cells)
        if self._manager is None:
            self._manager = empty_task_manager()
        if self._loaded != load_identity(ck):
            try:
                self._lm = load_lm(ck, config, reuse=self._lm)
                self._loaded = load_identity(ck)
            except RunError:
                raise
            except PrecisionError as e:  # this checkpoint x precision only; loud, not fatal
                self._lm, self._loaded = None, None
                emit(CellFailure(ck.id, str(e), f"skipping {ck.id}: {e}"))
                return results
            except Exception as e:  # noqa: BLE001 - a broken checkpoint is reported, the rest run
                self._lm, self._loaded = None, None
                msg = str(e) if type(e).__name__ == "CheckpointMismatch" else \
                    _load_error_message(ck, e)
                emit(CellFailure(ck.id, msg, f"skipping checkpoint {ck.id}: {msg}"))
                return results
        lm = self._lm
        for cell in cells:
            name = cell.task.name
            if self.fingerprints[name] != cell.fingerprint:
                err = (f"task {name} as built here reads other documents or another config than "
                       "the driver planned (data folder or task files differ on this worker); "
                       "give every worker the same --data-dir and task files")
                emit(CellFailure(f"{ck.id} x {name}", err, f"cell {ck.id} x {name} failed: {err}"))
                continue
            t0 = time.perf_counter()
            try:
                out = evaluate_cell(lm, self.tasks[name], cell.task, config, self._manager)
                samples = out["samples"][name]
                scores = cell_statistics(self.tasks[name], samples, out["results"][name], config)
                frame = per_sample_frame(samples, self.aggregations[name])
                wall = time.perf_counter() - t0
                applied = getattr(lm, "evalsuite_precision", None)
                batch = getattr(lm, "batch_size", config.batch_size)
                rows = rows_for_cell(cell, scores, config, wall_time_s=wall,
                                     batch_size=str(batch), versions=self.versions,
                                     applied=applied, n_skipped_items=self.skipped_items(name))
            except Exception as e:  # noqa: BLE001 - one failing cell must not lose the others
                err = f"{e.__class__.__name__}: {e}"
                emit(CellFailure(f"{ck.id} x {name}", err, f"cell {ck.id} x {name} failed: {err}"))
                continue
            primary = next(r for r in rows if r.is_primary)
            emit(CellOutcome(cell, rows, frame, scores, wall, applied,
                             f"{ck.id} {name}: {primary.metric}={_fmt(primary.value)} "
                             f"(+-{_fmt(primary.stderr)}, n={primary.n_samples}, {wall:.1f}s)"))
        return results


def _fmt(v: float | None) -> str:
    return "nan" if v is None else f"{v:.4f}"


def _load_error_message(ck: Checkpoint, e: Exception) -> str:
    text = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    return (f"cannot load {ck.source} ({text}); check the weights, config and tokenizer files "
            "(`evalsuite series` lists problems) and rerun: finished cells are kept")
