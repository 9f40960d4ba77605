"""Helpers for ``tests/test_equality_heldout.py``: run evalsuite's CLI, run lm-eval directly, and
compare the two result by result, metric by metric, request by request.

Both sides are reduced to one plain shape, :class:`Scored` (one checkpoint x task), so the
comparison reads the same whatever produced the numbers: evalsuite's ``rows.jsonl`` and
per-sample Parquet, or the ``results`` and ``samples`` of ``lm_eval.simple_evaluate``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

#: The bound for metrics, stderrs and per-request log-likelihoods. Quantities whose magnitude
#: is far above 1 (a random model's perplexity is e^30 on LAMBADA, its word perplexity more) are
#: compared relatively at the same 1e-4: see :func:`close`.
TOL = 1e-4
#: Per-request log-likelihoods: 1e-4 nats, or about 4 float32 ulps of the value where that is
#: larger (``ll_tolerance``). A summed fp32 log-likelihood of -1375 (a 3-shot PIQA ending under
#: a random byte model) has an ulp of 1.2e-4, so two summation orders can differ by more than
#: 1e-4 with nothing wrong (measured: 2.4e-4, evalsuite engine vs HFLM; HFLM agrees with itself
#: across batch sizes 1, 7 and 32 there). The same bound as tests/test_engine_equality.py.
LL_REL = 5e-7


def ll_tolerance(reference_ll: float, tol: float = TOL) -> float:
    return max(tol, LL_REL * abs(reference_ll))

#: Keys of an lm-eval sample that are bookkeeping, not per-item metric values.
_SAMPLE_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter",
                "metrics", "doc_hash", "prompt_hash", "target_hash"}


def close(a: float | None, b: float | None, tol: float = TOL) -> bool:
    """Both missing, or both finite numbers within ``tol`` (relative above magnitude 1)."""
    if a is None or b is None:
        return a is None and b is None
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(b))


@dataclass
class Sample:
    """One document under one filter: what was scored and what came out."""
    loglikelihoods: list[float] = field(default_factory=list)
    is_greedy: list[bool] = field(default_factory=list)
    response: str | None = None  # generate_until: the filtered response
    target: str | None = None  # json of lm-eval's target
    metrics: dict[str, Any] = field(default_factory=dict)  # per-item metric values


@dataclass
class Scored:
    """One checkpoint x task: metric values and stderrs per (metric, filter), counts per
    filter, and samples per (doc_id, filter)."""
    values: dict[tuple[str, str], float | None] = field(default_factory=dict)
    stderrs: dict[tuple[str, str], float | None] = field(default_factory=dict)
    n: dict[tuple[str, str], int | None] = field(default_factory=dict)
    samples: dict[tuple[int, str], Sample] = field(default_factory=dict)
    num_fewshot: int | None = None


# ---- evalsuite's side ---------------------------------------------------------------------------

def run_cli(series: Path, tasks: list[str], results: Path, *, data_dir: Path, engine: str,
            batch_size: str, limit: int, bootstrap_iters: int, include: Path | None = None,
            num_fewshot: int | None = None, seed: int | None = None) -> int:
    from evalsuite.cli import main

    argv = ["run", str(series), "--tasks", ",".join(tasks), "--results", str(results),
            "--data-dir", str(data_dir), "--engine", engine, "--batch-size", str(batch_size),
            "--limit", str(limit), "--bootstrap-iters", str(bootstrap_iters)]
    if num_fewshot is not None:
        argv += ["--num-fewshot", str(num_fewshot)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if include is not None:
        argv += ["--include-path", str(include)]
    return main(argv)


def _base_metric(metric: str, filter_name: str) -> str:
    """lm-eval's metric name from a row's ``metric`` (``m`` or ``m/<filter>``)."""
    if filter_name == "none":
        return metric
    suffix = f"/{filter_name}"
    if not metric.endswith(suffix):
        raise AssertionError(f"row metric {metric!r} of filter {filter_name!r} lacks the "
                             f"{suffix!r} suffix the ResultRow schema promises")
    return metric[: -len(suffix)]


def _pair(rec: dict[str, Any], name: str):
    """A per-item metric from a Parquet record: a number, or the two halves of a pair."""
    col = f"metric_{name}"
    if f"{col}_weight" in rec:
        return (rec[col], rec[f"{col}_weight"])
    if f"{col}_gold" in rec:
        return (rec[f"{col}_gold"], rec[f"{col}_pred"])
    return rec.get(col)


def read_evalsuite(results: Path) -> dict[tuple[str, str], Scored]:
    """``{(checkpoint source folder, task): Scored}`` from a results folder."""
    from evalsuite.store import ResultStore

    store = ResultStore(results)
    out: dict[tuple[str, str], Scored] = {}
    keys: dict[tuple[str, str], str] = {}
    for row in store.read_rows():
        key = (str(Path(row.checkpoint_source).resolve()), row.task)
        sc = out.setdefault(key, Scored(num_fewshot=row.num_fewshot))
        m = (_base_metric(row.metric, row.filter), row.filter)
        sc.values[m], sc.stderrs[m], sc.n[m] = row.value, row.stderr, row.n_samples
        keys[key] = row.cell_key
    for key, cell in keys.items():
        frame = store.read_samples(cell)
        for rec in frame.to_dict("records"):
            metrics = set()
            for c in rec:
                if not c.startswith("metric_"):
                    continue
                name = c[len("metric_"):]
                # the halves of a pair: metric_<m> + metric_<m>_weight, metric_<m>_gold + _pred
                for suffix, partner in (("_weight", ""), ("_gold", "_pred"), ("_pred", "_gold")):
                    base = name[:-len(suffix)]
                    if name.endswith(suffix) and f"metric_{base}{partner}" in rec:
                        name = base
                        break
                metrics.add(name)
            sample = Sample(
                loglikelihoods=[float(x) for x in rec["loglikelihoods"]],
                is_greedy=[bool(x) for x in rec["is_greedy"]],
                response=rec.get("response"), target=rec.get("target"),
                metrics={name: _pair(rec, name) for name in metrics})
            out[key].samples[(int(rec["doc_id"]), str(rec["filter"]))] = sample
    return out


# ---- lm-eval's side -------------------------------------------------------------------------

@contextmanager
def lm_eval_env() -> Iterator[None]:
    """For the reference call: no process pool for bootstraps (lm-eval's own switch, same draws)
    and no environment report (``add_env_info`` runs ``pip list``: ~3 s a call, and it only
    adds text to the results). Both restored afterwards."""
    import lm_eval.evaluator as evaluator

    before_env = os.environ.get("DISABLE_MULTIPROC")
    os.environ["DISABLE_MULTIPROC"] = "1"
    original = evaluator.add_env_info
    evaluator.add_env_info = lambda storage: None
    try:
        yield
    finally:
        evaluator.add_env_info = original
        if before_env is None:
            os.environ.pop("DISABLE_MULTIPROC", None)
        else:
            os.environ["DISABLE_MULTIPROC"] = before_env


def empty_task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=tempfile.mkdtemp(prefix="eq-empty-"), include_defaults=False)


def reference(model: Path, task_objs: dict[str, Any], *, batch_size: int | str, limit: int,
              num_fewshot: dict[str, int], bootstrap_iters: int, seed: int
              ) -> dict[str, Scored]:
    """``lm_eval.simple_evaluate`` with lm-eval's own ``HFLM`` on prebuilt task objects, with
    the seeds evalsuite documents (random 0; numpy, torch and few-shot ``seed``).

    One call per task, as evalsuite scores one cell per call. Not one call for all tasks: HFLM
    pools the loglikelihood requests of every task of a call, and its one-token-continuation
    cache (``Collator(group_by="contexts")``, keyed by context + continuation[:-1]) merges
    requests of different tasks whose tokens are equal but split differently between context
    and continuation; the merged ones are then scored with the first one's continuation length
    (seen here: LAMBADA's `` coffee`` scored as the logit of `` of``). That is lm-eval's
    behaviour in a multi-task call, not a property of the task.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model), batch_size=batch_size, dtype="float32", device="cpu")
    out: dict[str, Scored] = {}
    with lm_eval_env():
        for name, task in task_objs.items():
            shots = num_fewshot[name]
            task.set_config(key="num_fewshot", value=shots)  # lm-eval ignores num_fewshot for
            res = lm_eval.simple_evaluate(                    # a task whose config says 0
                model=lm, tasks=[task], num_fewshot=shots, limit=limit,
                bootstrap_iters=bootstrap_iters, log_samples=True, random_seed=0,
                numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                task_manager=empty_task_manager())
            out[name] = _scored_from_lm_eval(res, name)
            out[name].num_fewshot = res["n-shot"].get(name, shots)
    return out


def _na(v):
    return None if v in ("N/A", None) else float(v)


def _scored_from_lm_eval(res: dict[str, Any], task: str) -> Scored:
    sc = Scored()
    results = res["results"][task]
    samples = res["samples"][task]
    per_filter: dict[str, int] = {}
    for s in samples:
        per_filter[s["filter"]] = per_filter.get(s["filter"], 0) + 1
    for key, value in results.items():
        if "," not in key or key.split(",")[0].endswith("_stderr"):
            continue
        metric, filt = key.split(",", 1)
        sc.values[(metric, filt)] = _na(value)
        sc.stderrs[(metric, filt)] = _na(results.get(f"{metric}_stderr,{filt}"))
        sc.n[(metric, filt)] = per_filter.get(filt)
    for s in samples:
        lls, greedy, texts = [], [], []
        for r in s["resps"]:
            r0 = r[0]
            if isinstance(r0, str):
                texts.append(r0)
            elif isinstance(r0, (tuple, list)):
                lls.append(float(r0[0]))
                greedy.append(bool(r0[1]))
            else:
                lls.append(float(r0))
        metrics = {k: v for k, v in s.items() if k not in _SAMPLE_KEYS}
        sc.samples[(int(s["doc_id"]), str(s["filter"]))] = Sample(
            loglikelihoods=lls, is_greedy=greedy,
            response=s["filtered_resps"][0] if texts else None,
            target=json.dumps(s.get("target"), default=str), metrics=metrics)
    return sc


# ---- the comparison --------------------------------------------------------------------------

def _num(v):
    """A Python or numpy number as a float; anything else unchanged."""
    if isinstance(v, (bool, int, float)):
        return float(v)
    if not isinstance(v, (str, bytes)) and hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return float(v.item())  # numpy scalars
    return v


def compare(ours: Scored, ref: Scored, *, tol: float = TOL, max_report: int = 6) -> list[str]:
    """Every disagreement in metrics, stderrs, counts, shots and, per document, log-likelihoods,
    greedy flags, responses and targets: one line each (per-sample ones summarised)."""
    problems: list[str] = []
    if set(ours.values) != set(ref.values):
        problems.append(f"metric x filter sets differ: evalsuite {sorted(ours.values)} vs "
                        f"lm-eval {sorted(ref.values)}")
    for m in sorted(set(ours.values) & set(ref.values)):
        name = f"{m[0]},{m[1]}"
        if not close(ours.values[m], ref.values[m], tol):
            problems.append(f"{name}: value {ours.values[m]!r} vs lm-eval {ref.values[m]!r}")
        if not close(ours.stderrs[m], ref.stderrs[m], tol):
            problems.append(f"{name}: stderr {ours.stderrs[m]!r} vs lm-eval {ref.stderrs[m]!r}")
        if ours.n[m] != ref.n[m]:
            problems.append(f"{name}: n_samples {ours.n[m]} vs lm-eval {ref.n[m]}")
    if ours.num_fewshot != ref.num_fewshot:
        problems.append(f"num_fewshot {ours.num_fewshot} vs lm-eval n-shot {ref.num_fewshot}")
    if set(ours.samples) != set(ref.samples):
        problems.append(f"(doc_id, filter) sets differ: only evalsuite "
                        f"{sorted(set(ours.samples) - set(ref.samples))[:5]}, only lm-eval "
                        f"{sorted(set(ref.samples) - set(ours.samples))[:5]}")
    per_sample: list[str] = []
    worst = 0.0
    for key in sorted(set(ours.samples) & set(ref.samples)):
        a, b = ours.samples[key], ref.samples[key]
        where = f"doc {key[0]} filter {key[1]}"
        if len(a.loglikelihoods) != len(b.loglikelihoods):
            per_sample.append(f"{where}: {len(a.loglikelihoods)} log-likelihoods vs "
                              f"{len(b.loglikelihoods)}")
        else:
            for i, (x, y) in enumerate(zip(a.loglikelihoods, b.loglikelihoods)):
                worst = max(worst, abs(x - y))
                if not abs(x - y) <= ll_tolerance(y, tol):
                    per_sample.append(f"{where} request {i}: loglikelihood {x!r} vs {y!r} "
                                      f"(diff {abs(x - y):.2e})")
        if a.is_greedy != b.is_greedy:
            per_sample.append(f"{where}: is_greedy {a.is_greedy} vs {b.is_greedy}")
        if a.response != b.response:
            per_sample.append(f"{where}: response {a.response!r} vs lm-eval {b.response!r}")
        if a.target != b.target:
            per_sample.append(f"{where}: target {a.target} vs lm-eval {b.target}")
    if per_sample:
        problems.append(f"{len(per_sample)} per-sample disagreements (max |dll| {worst:.2e}), "
                        "first: " + "; ".join(per_sample[:max_report]))
    return problems


def compare_item_metrics(ours: Scored, ref: Scored, *, tol: float = TOL,
                         max_report: int = 4) -> list[str]:
    """Per document, every per-item metric value lm-eval logged that is a number or a pair of
    numbers must be in evalsuite's samples (``metric_<m>``, or its ``_weight`` / ``_gold`` and
    ``_pred`` halves) with the same value. Vectors (brier_score's probabilities) are not stored."""
    problems: list[str] = []
    for key in sorted(set(ours.samples) & set(ref.samples)):
        a, b = ours.samples[key], ref.samples[key]
        for name, want in sorted(b.metrics.items()):
            if isinstance(want, (list, tuple)):
                if len(want) != 2 or not all(isinstance(_num(w), float) for w in want):
                    continue
                got = a.metrics.get(name)
                ok = isinstance(got, tuple) and all(
                    close(float(g), _num(w), tol) for g, w in zip(got, want))
                shown = tuple(type(w).__name__ for w in want)
                if not ok:
                    problems.append(f"doc {key[0]} filter {key[1]}: {name} {got!r} vs lm-eval "
                                    f"{tuple(_num(w) for w in want)} (types {shown})")
            elif isinstance(_num(want), float):
                got = a.metrics.get(name)
                if not (isinstance(got, (int, float)) and close(float(got), _num(want), tol)):
                    problems.append(f"doc {key[0]} filter {key[1]}: {name} {got!r} vs lm-eval "
                                    f"{_num(want)!r}")
    if problems:
        return [f"{len(problems)} per-item metric disagreements, first: "
                + "; ".join(problems[:max_report])]
    return []


def max_ll_diff(ours: Scored, ref: Scored) -> float:
    worst = 0.0
    for key in set(ours.samples) & set(ref.samples):
        for x, y in zip(ours.samples[key].loglikelihoods, ref.samples[key].loglikelihoods):
            worst = max(worst, abs(x - y))
    return worst
