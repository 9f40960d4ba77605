"""Runner: the grid of checkpoint x precision x task, resumable, on one of two executors.

The unit of work is a group: one checkpoint at one precision with all its missing task cells
(one model load). :class:`GroupEvaluator` scores groups in a process, keeping the built tasks and
the last model between them; the local executor runs it here, the Ray executor
(:mod:`evalsuite.ray_executor`) in worker processes. Either way this process alone writes the
store: each cell (per-sample Parquet first, then its rows) as soon as it reaches the driver, after
each cell locally and after each group from Ray, so a killed run loses at most the work in flight
and a rerun skips every finished cell. A cell's key (:mod:`evalsuite.keys`) hashes every input
that changes its numbers: weights, model config, tokenizer, precision, the resolved task config
and the documents read, lm-eval's version and the settings; batch size, device, engine and
executor are not part of it. Groups are keyed by what is loaded (source, weights, tokenizer,
config, precision), never by a display id, and two checkpoints that would share an id stop the
run before anything loads.
"""

from __future__ import annotations

import logging
import math
import numbers
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .keys import TaskFingerprint, cell_key, effective_fewshot, fingerprint_task, lm_eval_version
from .precision import AppliedPrecision, PrecisionError, parse_precision
from .records import Checkpoint, ResultRow, RunConfig, TaskSpec, config_hash
from .engine.patches import memoize_requests
from .stats import metric_stderr
from .store import ResultStore, StoreError

log = logging.getLogger(__name__)

#: Bits per parameter of the float precisions; k-bit ones: ``precision.bits_per_param(spec)``.
BITS_PER_PARAM = {"fp32": 32.0, "bf16": 16.0, "fp16": 16.0}


class RunError(RuntimeError):
    """A run that cannot start (bad settings, locked results folder)."""


@dataclass(frozen=True)
class Cell:
    checkpoint: Checkpoint  # with its precision set
    task: TaskSpec
    key: str
    fingerprint: TaskFingerprint  # of the task as the driver built it; workers must match it


@dataclass
class RunReport:
    planned: int = 0
    skipped: int = 0
    completed: int = 0
    rows_written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=lambda: {"executor": "local"})

    def summary(self) -> dict[str, Any]:
        return {"planned": self.planned, "skipped_done": self.skipped, "completed": self.completed,
                "rows_written": self.rows_written,
                "failures": [{"what": w, "error": e} for w, e in self.failures],
                "executor": self.executor}


def package_versions() -> dict[str, str]:
    from .versions import package_version

    out = {"python": platform.python_version()}
    for pkg in ("evalsuite", "lm_eval", "transformers", "torch", "datasets"):
        out[pkg] = package_version(pkg)
    return out


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


def results_lock(store: ResultStore, wait: bool = False):
    """The results folder's exclusive lock (:meth:`ResultStore.lock`): one writer at a time,
    ``evalsuite run`` and ``evalsuite import`` alike."""
    return store.lock(wait=wait)


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
    from .series import load_source

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
        from .engine import create_lm

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
    from .engine.loading import verify_checkpoint

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
    from .precision import apply_precision

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


#: lm-eval aggregations whose per-item pair is (value, weight); other pairs are (gold, pred).
_WEIGHTED = frozenset({"weighted_perplexity", "bits_per_byte"})


def aggregation_names(task_obj) -> dict[str, str]:
    """metric -> lm-eval's registered aggregation name (``mean``, ``perplexity``, ``f1``...)."""
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    by_fn = {fn: name for name, fn in AGGREGATION_REGISTRY.items()}
    try:
        aggs = task_obj.aggregation()
    except Exception:  # noqa: BLE001 - a task without aggregations: lm-eval falls back to mean
        aggs = {}
    return {m: by_fn.get(fn, getattr(fn, "__name__", "mean")) for m, fn in aggs.items()}


def _sample_lls(s: dict[str, Any]) -> tuple[list[float], list[bool], list[str]]:
    lls, greedy, texts = [], [], []
    for r in s.get("resps") or []:
        r0 = r[0] if isinstance(r, (list, tuple)) and r else r
        if isinstance(r0, (list, tuple)) and len(r0) == 2 and isinstance(r0[1], bool):
            lls.append(float(r0[0]))
            greedy.append(bool(r0[1]))
        elif isinstance(r0, (int, float)):
            lls.append(float(r0))
        elif isinstance(r0, str):
            texts.append(r0)
    return lls, greedy, texts


def _nonfinite(s: dict[str, Any]) -> bool:
    return not all(math.isfinite(x) for x in _sample_lls(s)[0])


_SKIP_KEYS = {"doc", "doc_id", "target", "arguments", "resps", "filtered_resps", "filter",
              "metrics", "doc_hash", "prompt_hash", "target_hash"}


def _per_sample_frame(samples: list[dict[str, Any]], aggregations: dict[str, str] | None = None):
    """One row per document and filter: log-likelihoods, greedy flags, response, per-item metrics.

    A pair-valued metric is stored as its two halves: ``metric_<m>`` and ``metric_<m>_weight``
    for (value, weight) aggregations (word/byte perplexity, bits per byte), ``metric_<m>_gold``
    and ``metric_<m>_pred`` for (gold, pred) ones (f1, mcc).
    """
    import json

    import pandas as pd

    aggregations = aggregations or {}
    recs = []
    for s in samples:
        lls, greedy, texts = _sample_lls(s)
        rec = {"doc_id": int(s.get("doc_id", -1)), "filter": str(s.get("filter", "none")),
               "target": json.dumps(s.get("target"), default=str),
               "loglikelihoods": lls, "is_greedy": greedy,
               # fp16 overflow shows as NaN/inf log-likelihoods; such items never enter a mean
               "nonfinite": not all(math.isfinite(x) for x in lls),
               "response": (s.get("filtered_resps") or [""])[0] if texts else None}
        for k, v in s.items():
            if k in _SKIP_KEYS:
                continue
            # numbers.Real: lm-eval's f1/mcc items are (gold, pred) with numpy int64 halves
            if isinstance(v, (bool, numbers.Real)) or type(v).__name__ == "bool_":
                rec[f"metric_{k}"] = float(v)
            elif isinstance(v, (list, tuple)) and len(v) == 2 and all(
                    isinstance(x, numbers.Real) for x in v):
                if aggregations.get(k) in _WEIGHTED:
                    rec[f"metric_{k}"], rec[f"metric_{k}_weight"] = float(v[0]), float(v[1])
                else:
                    rec[f"metric_{k}_gold"], rec[f"metric_{k}_pred"] = float(v[0]), float(v[1])
        if rec["response"] is not None and not isinstance(rec["response"], str):
            rec["response"] = str(rec["response"])
        recs.append(rec)
    return pd.DataFrame(recs)


def metric_name(metric: str, filter_name: str) -> str:
    """A row's metric identity: lm-eval's name, with ``/<filter>`` unless the filter is none."""
    return metric if filter_name == "none" else f"{metric}/{filter_name}"


def _filter_order(task_obj, seen: Sequence[str]) -> list[str]:
    names = [f.get("name") for f in (getattr(task_obj.config, "filter_list", None) or [])
             if isinstance(f, dict) and f.get("name")]
    return [f for f in names if f in seen] + [f for f in seen if f not in names]


def cell_statistics(task_obj, samples: list[dict[str, Any]], results: dict[str, Any],
                    config: RunConfig) -> dict[str, Any]:
    """Value, stderr and item count for every metric x filter lm-eval reported for one task.

    The value is lm-eval's own; the stderr is the one lm-eval computes for that metric's
    aggregation with ``config.bootstrap_iters`` (:func:`evalsuite.stats.metric_stderr`, equal
    draw for draw), over that filter's items only. Items with NaN/inf log-likelihoods (fp16
    overflow) are left out: a mean is recomputed without them, a corpus-level metric then has
    no honest value (None).
    """
    from lm_eval.api.metrics import mean as lm_mean
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    aggs = aggregation_names(task_obj)
    try:
        agg_fns = task_obj.aggregation()
    except Exception:  # noqa: BLE001
        agg_fns = {}
    by_filter: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_filter.setdefault(str(s.get("filter", "none")), []).append(s)
    keys = [k for k in results if "," in k and "_stderr" not in k]
    filters = _filter_order(task_obj, list(dict.fromkeys(k.split(",", 1)[1] for k in keys)))
    out = []
    for filt in filters:
        for key in keys:
            metric, f = key.split(",", 1)
            value = results[key]
            if f != filt or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            docs = [s for s in by_filter.get(filt, []) if metric in s]
            bad = [_nonfinite(s) for s in docs]
            items = [s[metric] for s, b in zip(docs, bad) if not b]
            agg = aggs.get(metric, "mean")
            value = float(value)
            if any(bad):
                value = float(lm_mean(items)) if agg == "mean" and items else float("nan")
            fn = agg_fns.get(metric, AGGREGATION_REGISTRY.get(agg))
            stderr = metric_stderr(agg, items, config.bootstrap_iters, fn) \
                if math.isfinite(value) else None
            out.append({"metric": metric, "filter": filt, "value": value, "stderr": stderr,
                        "n": len(items), "n_nonfinite": int(sum(bad)), "aggregation": agg})
    return {"metrics": out}


def _primary_index(spec: TaskSpec, stats: list[dict[str, Any]]) -> int | None:
    """The row of the task's one primary metric: ``m/filter`` names it exactly; a bare ``m``
    is the unfiltered one, else the first filter in the task's own order."""
    want = spec.primary_metric
    for i, st in enumerate(stats):
        if metric_name(st["metric"], st["filter"]) == want:
            return i
    if "/" not in want:
        for i, st in enumerate(stats):
            if st["metric"] == want:
                return i
    return None


def rows_for_cell(cell: Cell, scores: dict[str, Any], config: RunConfig, *, wall_time_s: float,
                  batch_size: str, versions: dict[str, str],
                  applied: AppliedPrecision | None = None, n_skipped_items: int = 0
                  ) -> list[ResultRow]:
    """Long-format rows, one per metric x filter, from :func:`cell_statistics` for one cell.

    ``applied`` (from :func:`load_lm`) supplies the precision fields. Items whose
    log-likelihoods are not finite (fp16 overflow) are counted in ``n_nonfinite`` and left out of
    the value, its stderr and ``n_samples``.
    """
    spec, ckpt = cell.task, cell.checkpoint
    stats = scores["metrics"]
    n_bad = max((st["n_nonfinite"] for st in stats), default=0)
    if n_bad:
        log.warning("%s on %s: %d items have NaN/inf log-likelihoods (overflow at %s?); they "
                    "are flagged in the row (n_nonfinite) and left out of every mean",
                    spec.name, ckpt.id, n_bad, ckpt.precision)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    chash = config_hash({"cell": cell.key, "engine": config.engine, "batch_size": str(batch_size),
                         "device": config.device})
    if applied is not None:
        bits, model_bits = applied.bits_per_param, applied.model_bits
    else:
        bits = BITS_PER_PARAM.get(ckpt.precision)
        if bits is None:
            try:
                bits = parse_precision(ckpt.precision).bits_per_param
            except PrecisionError:
                bits = None
        model_bits = (bits * ckpt.n_params) if (bits and ckpt.n_params) else None
    primary = _primary_index(spec, stats)
    if primary is None:
        reported = sorted(metric_name(st["metric"], st["filter"]) for st in stats)
        raise RunError(f"task {spec.name}: lm-eval reported no {spec.primary_metric!r} metric "
                       f"(it reported {reported}); fix primary_metric in the task YAML")
    rows = []
    for i, st in enumerate(stats):
        metric, value = metric_name(st["metric"], st["filter"]), st["value"]
        finite = math.isfinite(value)
        if not finite:
            log.warning("%s on %s: %s is %s (NaN/inf log-likelihoods?); stored as missing, never "
                        "averaged in", spec.name, ckpt.id, metric, value)
        hib = spec.higher_is_better if i == primary else \
            not any(s in st["metric"] for s in ("perplexity", "bits_per_byte", "ter"))
        rows.append(ResultRow(
            checkpoint_id=ckpt.id, series=ckpt.series, size=ckpt.size, step=ckpt.step,
            n_params=ckpt.n_params, n_params_nonembedding=ckpt.n_params_nonembedding,
            tokens_seen=ckpt.tokens_seen, compute_flops=ckpt.compute_flops,
            weight_hash=ckpt.weight_hash, precision=ckpt.precision, task=spec.name,
            task_version=spec.version, metric=metric, is_primary=(i == primary),
            value=value if finite else None, stderr=st["stderr"] if finite else None,
            n_samples=st["n"],
            num_fewshot=effective_fewshot(spec, config), chance=spec.chance, higher_is_better=hib,
            limit=config.limit, batch_size=str(batch_size), engine=config.engine,
            device=config.device,
            model_bits=model_bits,
            cell_key=cell.key, config_hash=chash, versions=versions, source="evalsuite",
            wall_time_s=round(wall_time_s, 3), timestamp=stamp,
            bits_per_param=bits,
            precision_library=applied.library if applied is not None else None,
            weights_changed_frac=applied.weights_changed_frac if applied is not None else None,
            weights_max_abs_change=applied.weights_max_abs_change if applied is not None else None,
            n_nonfinite=st["n_nonfinite"], filter=st["filter"],
            checkpoint_source=ckpt.source, checkpoint_revision=ckpt.revision,
            tokenizer_hash=ckpt.tokenizer_hash, data_fingerprint=cell.fingerprint.data,
            task_fingerprint=cell.fingerprint.task_config,
            bootstrap_iters=config.bootstrap_iters, n_skipped_items=n_skipped_items))
    return rows


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


def group_cells(cells: Sequence[Cell]) -> list[list[Cell]]:
    """Cells grouped by what is loaded (:func:`load_identity`: one model load each), in plan
    order; never by display id, so two checkpoints can never share one model."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.checkpoint.id,) + load_identity(cell.checkpoint), []).append(cell)
    return list(groups.values())


class GroupEvaluator:
    """Evaluates groups in one process, keeping built tasks and the last loaded model between them.

    The local executor holds one for a run; a Ray worker process keeps one for as long as it
    lives (:mod:`evalsuite.ray_executor`), so tasks are built once per process and consecutive
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
        self.tasks[name] = memoize_requests(task_obj)

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
                frame = _per_sample_frame(samples, self.aggregations[name])
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


# ---- the run ------------------------------------------------------------------------------

class LocalExecutor:
    """Groups evaluated one after another in this process (the default executor)."""

    name = "local"

    def __init__(self, registry, config: RunConfig, todo: Sequence[Cell],
                 built: dict[str, Any] | None = None,
                 fingerprints: dict[str, TaskFingerprint] | None = None):
        self.evaluator = GroupEvaluator(registry, config, built, fingerprints)
        # every task is built before any checkpoint loads: a data error stops the run first
        self.evaluator.prepare(c.task.name for c in todo)
        self._done: list[int] = []
        self._next = 0

    def has_capacity(self) -> bool:
        return not self._done

    def submit(self, cells: Sequence[Cell], on_result) -> int:
        self.evaluator.evaluate(cells, on_result)  # written as each cell finishes
        self._next += 1
        self._done.append(self._next)
        return self._next

    def next_finished(self) -> tuple[int, list]:
        return self._done.pop(0), []  # outcomes already went to on_result

    def stats(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:
        pass


class _Driver:
    """Schedules groups on an executor and is the only writer of the store.

    Checkpoints with identical weights (duplicate step branches) are scored once: a group whose
    cells share weights with cells still being scored waits for them, then copies their rows.
    """

    def __init__(self, store: ResultStore, config: RunConfig, report: RunReport, say, versions):
        self.store, self.config, self.report, self.say = store, config, report, say
        self.versions = versions
        self.sources: dict[tuple, CellOutcome] = {}

    @staticmethod
    def weights_key(cell: Cell) -> tuple | None:
        ck = cell.checkpoint  # everything that is loaded except where it was loaded from
        return (ck.weight_hash, ck.tokenizer_hash, ck.model_config_hash, ck.precision,
                cell.task.name, cell.fingerprint) if ck.weight_hash else None

    def record(self, item: CellOutcome | CellFailure) -> None:
        """Write a finished cell (samples first, then rows) or report a failure."""
        if isinstance(item, CellFailure):
            self.report.failures.append((item.what, item.error))
            self.say(item.message)
            return
        self.store.write_samples(item.cell.key, item.frame)
        self.report.rows_written += self.store.append(item.rows)
        self.report.completed += 1
        self.say(item.message)
        wkey = self.weights_key(item.cell)
        if wkey is not None:
            self.sources[wkey] = item

    def copy(self, cell: Cell, source: CellOutcome) -> None:
        rows = rows_for_cell(cell, source.scores, self.config,
                             wall_time_s=source.wall_time_s,
                             batch_size=str(self.config.batch_size), versions=self.versions,
                             applied=source.applied,
                             n_skipped_items=source.rows[0].n_skipped_items if source.rows else 0)
        self.record(CellOutcome(cell, rows, source.frame, source.scores, source.wall_time_s,
                                source.applied, f"{cell.checkpoint.id} {cell.task.name}: same "
                                "weights as an evaluated checkpoint; rows copied"))

    def drive(self, groups: Sequence[Sequence[Cell]], executor) -> Iterator[str]:
        """Run every group; yields a checkpoint id as each group finishes."""
        waiting = list(groups)
        inflight: dict[Any, tuple[str, set]] = {}
        busy: set = set()  # weights keys of cells being scored

        while waiting or inflight:
            still = []
            for cells in waiting:
                wkeys = {self.weights_key(c) for c in cells} - {None}
                if wkeys & busy or not executor.has_capacity():
                    still.append(cells)
                    continue
                rest = []
                for cell in cells:
                    source = self.sources.get(self.weights_key(cell))
                    if source is not None:
                        self.copy(cell, source)
                    else:
                        rest.append(cell)
                if not rest:
                    yield cells[0].checkpoint.id
                    continue
                mine = {self.weights_key(c) for c in rest} - {None}
                busy |= mine
                inflight[executor.submit(rest, self.record)] = (cells[0].checkpoint.id, mine)
            waiting = still
            if not inflight and waiting:  # cannot happen: only work in flight holds a group back
                raise RuntimeError("scheduler stalled with groups waiting and none in flight")
            if inflight:
                handle, items = executor.next_finished()
                for item in items:
                    self.record(item)
                ck_id, mine = inflight.pop(handle)
                busy -= mine
                yield ck_id


def run_series(checkpoints: Sequence[Checkpoint], specs: Sequence[TaskSpec], registry,
               store: ResultStore, config: RunConfig, *,
               progress: Callable[[Iterator[str], int], Any] | None = None,
               on_event: Callable[[str], None] | None = None,
               ray_options=None) -> RunReport:
    """Evaluate every missing cell; write rows as each finishes. Returns what happened.

    The unit of work is a group: one checkpoint at one precision with all its missing cells.
    ``ray_options`` (:class:`evalsuite.ray_executor.RayOptions`) runs the groups as Ray tasks;
    by default they run here, one after another. Either way only this process writes ``store``.
    ``progress(finished, n_groups)`` wraps the stream of checkpoint ids as groups finish.
    """
    say = on_event or (lambda msg: log.info("%s", msg))
    report = RunReport()
    checkpoints, notes = unique_checkpoints(checkpoints)
    for note in notes:
        say(note)
    # Every task is built (its documents read and checked) before any checkpoint loads: a data
    # error stops the run first, and the cell keys need what each task will actually score.
    built = {spec.name: registry.build(spec.name) for spec in specs}
    fingerprints = {name: fingerprint_task(t) for name, t in built.items()}
    with results_lock(store):
        cells = plan_cells(checkpoints, specs, config, fingerprints)
        done = store.done_cells()
        todo = [c for c in cells if c.key not in done]
        report.planned, report.skipped = len(cells), len(cells) - len(todo)
        if report.skipped:
            say(f"skipping {report.skipped} of {len(cells)} cells already in {store.root}")
        if not todo:
            say("nothing to do: every cell is finished")
            return report
        groups = group_cells(todo)
        if ray_options is None:
            executor = LocalExecutor(registry, config, todo, built, fingerprints)
        else:
            from .ray_executor import RayExecutor

            executor = RayExecutor(ray_options, registry, config, say=say)
        try:
            driver = _Driver(store, config, report, say, package_versions())
            finished = driver.drive(groups, executor)
            for _ in (progress(finished, len(groups)) if progress else finished):
                pass
        finally:
            executor.close()
        report.executor = executor.stats()
    return report


def _fmt(v: float | None) -> str:
    return "nan" if v is None else f"{v:.4f}"


def _load_error_message(ck: Checkpoint, e: Exception) -> str:
    text = f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    return (f"cannot load {ck.source} ({text}); check the weights, config and tokenizer files "
            "(`evalsuite series` lists problems) and rerun: finished cells are kept")

