"""Turning lm-eval's output for one cell into result rows and a per-sample frame.

The value of every metric x filter is lm-eval's own; its stderr is the one lm-eval computes for
that aggregation (:func:`evalsuite.stats.metric_stderr`, equal draw for draw). Items whose
log-likelihoods are not finite (fp16 overflow) are counted and left out of every mean.
"""

from __future__ import annotations

import logging
import math
import numbers
from datetime import datetime, timezone
from typing import Any, Sequence

from ..precision.apply import AppliedPrecision
from ..precision.spec import PrecisionError, parse_precision
from ..records import (ResultRow, RunConfig, TaskSpec, config_hash, flops_for,
                       metric_higher_is_better)
from ..stats import metric_stderr
from .keys import effective_fewshot
from .plan import Cell, RunError

log = logging.getLogger(__name__)

__all__ = ["BITS_PER_PARAM", "aggregation_names", "per_sample_frame", "metric_name",
           "cell_statistics", "rows_for_cell"]

#: Bits per parameter of the float precisions; k-bit ones: ``precision.bits_per_param(spec)``.
BITS_PER_PARAM = {"fp32": 32.0, "bf16": 16.0, "fp16": 16.0}


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


def per_sample_frame(samples: list[dict[str, Any]], aggregations: dict[str, str] | None = None):
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
    try:  # lm-eval's own direction of each metric (the task YAML's or its registry default)
        directions = {m: bool(v) for m, v in (task_obj.higher_is_better() or {}).items()}
    except Exception:  # noqa: BLE001 - a task without them: by name (records.LOWER_IS_BETTER)
        directions = {}
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
                        "higher_is_better": directions.get(metric, metric_higher_is_better(metric)),
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
            st.get("higher_is_better", metric_higher_is_better(st["metric"]))
        rows.append(ResultRow(
            checkpoint_id=ckpt.id, series=ckpt.series, size=ckpt.size, step=ckpt.step,
            n_params=ckpt.n_params, n_params_nonembedding=ckpt.n_params_nonembedding,
            tokens_seen=ckpt.tokens_seen, flops_basis=config.flops_basis,
            compute_flops=flops_for(ckpt.n_params, ckpt.n_params_nonembedding, ckpt.tokens_seen,
                                    config.flops_basis),
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
