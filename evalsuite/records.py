"""Plain records that flow through evalsuite: checkpoints, task specs, run settings, result rows.

Frozen dataclasses, standard library only, so every other module (and ``evalsuite.scaling``,
which must import without torch) can use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Mapping, TypeVar

T = TypeVar("T")

#: Version of the result-row schema written to ``results/``. Bump on any change to ResultRow.
SCHEMA_VERSION = 3


def compute_flops(n_params: float | None, tokens_seen: float | None) -> float | None:
    """Training compute C = 6·N·D in FLOPs.

    N is the parameter count, D the number of training tokens; 6 = 2 (forward) + 4 (backward)
    multiply-adds per parameter per token (Kaplan et al. 2020, "Scaling Laws for Neural
    Language Models", section 2.1). Which parameters N counts is the basis
    (:data:`FLOPS_BASES`, :func:`flops_for`). Returns None when either factor is unknown.
    """
    if n_params is None or tokens_seen is None:
        return None
    return 6.0 * float(n_params) * float(tokens_seen)


#: What N counts in C = 6·N·D: every parameter, embeddings included (Hoffmann et al. 2022,
#: "Training Compute-Optimal Large Language Models"; the default, and what rows written before
#: the basis was recorded used), or the non-embedding ones (Kaplan et al. 2020). For small
#: models the two differ several-fold (the embeddings are most of a tiny model).
FLOPS_BASES = ("total", "non-embedding")


def flops_for(n_params: float | None, n_params_nonembedding: float | None,
              tokens_seen: float | None, basis: str = "total") -> float | None:
    """6·N·D with N on the given basis (:data:`FLOPS_BASES`)."""
    if basis not in FLOPS_BASES:
        raise ValueError(f"FLOPs basis {basis!r}: use one of {', '.join(FLOPS_BASES)}")
    return compute_flops(n_params if basis == "total" else n_params_nonembedding, tokens_seen)


def rebase_flops(row: "ResultRow", basis: str) -> "ResultRow":
    """The row with ``compute_flops`` on ``basis`` (from its own parameter counts)."""
    flops = flops_for(row.n_params, row.n_params_nonembedding, row.tokens_seen, basis)
    if row.flops_basis == basis and row.compute_flops == flops:
        return row
    return dataclasses.replace(row, compute_flops=flops, flops_basis=basis)


def rebase_flops_frame(frame, basis: str):
    """A result frame with ``compute_flops`` on ``basis`` (a copy; rows lacking the parameter
    count of that basis get None)."""
    import pandas as pd

    if basis not in FLOPS_BASES:
        raise ValueError(f"FLOPs basis {basis!r}: use one of {', '.join(FLOPS_BASES)}")
    out = frame.copy()
    if not len(out):
        return out
    n = pd.to_numeric(out["n_params" if basis == "total" else "n_params_nonembedding"],
                      errors="coerce")
    d = pd.to_numeric(out["tokens_seen"], errors="coerce")
    out["compute_flops"] = (6.0 * n.astype(float) * d.astype(float)).astype(object).where(
        n.notna() & d.notna(), None)
    out["flops_basis"] = basis
    return out


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights in a series.

    Attributes:
        series: name of the model family (``ladder``, ``pythia``).
        size: size label as the series names it (``70m``, ``1m``).
        step: training step, or None for a single released model.
        source: local folder, or ``hub:<repo_id>@<revision>``.
        n_params: total parameter count (embeddings included), None if unknown.
        n_params_nonembedding: parameters outside the input and output embeddings.
        tokens_seen: training tokens consumed up to this step, None if unknown (never guessed).
        tokens_source: where tokens_seen came from (``manifest``, ``trainer_state``,
            ``tokens_per_step``, ``unknown``).
        dtype: dtype of the weights on disk (``float32``, ``bfloat16``).
        weight_hash: sha256 over the weight files (content, not path), first 16 hex digits.
        precision: precision the checkpoint is evaluated at (``fp32`` by default).
        revision: hub revision when the source is a hub id.
        tokenizer_hash: sha256 over the tokenizer files (first 16 hex digits), None if unknown;
            part of the cell key, since the same weights with another tokenizer score differently.
        model_config_hash: sha256 of config.json without bookkeeping fields (part of the key).
    """

    series: str
    size: str
    step: int | None
    source: str
    n_params: int | None = None
    n_params_nonembedding: int | None = None
    tokens_seen: int | None = None
    tokens_source: str = "unknown"
    dtype: str | None = None
    weight_hash: str | None = None
    precision: str = "fp32"
    revision: str | None = None
    tokenizer_hash: str | None = None
    model_config_hash: str | None = None

    @property
    def id(self) -> str:
        """Derived identifier: ``<series>-<size>@<step>:<precision>``."""
        step = "final" if self.step is None else str(self.step)
        return f"{self.series}-{self.size}@{step}:{self.precision}"

    @property
    def compute_flops(self) -> float | None:
        return compute_flops(self.n_params, self.tokens_seen)

    def with_precision(self, precision: str) -> "Checkpoint":
        return dataclasses.replace(self, precision=precision)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["id"] = self.id
        d["compute_flops"] = self.compute_flops
        return d


@dataclass(frozen=True)
class TaskSpec:
    """An evaluation task: one lm-eval task with exactly one primary metric.

    Attributes:
        name: evalsuite name (== the YAML stem for bundled and user tasks).
        lm_eval_task: the lm-eval task it wraps.
        primary_metric: the one metric leaderboards and scaling fits use (``acc``, ``acc_norm``...).
            For a task with several lm-eval filters it may name one: ``exact_match/strict-match``;
            a bare name means the task's first filter.
        chance: score of a random guesser on the primary metric (0 for generation).
        higher_is_better: direction of the primary metric.
        output_type: lm-eval request type (multiple_choice, loglikelihood,
            generate_until, loglikelihood_rolling).
        num_fewshot: default shots.
        version: task version; part of the cache key, bump when prompts or data change.
        source: ``bundled:<path>``, ``user:<path>`` or ``lm-eval``.
        data_file: local data file (relative to the data folder) for bundled tasks.
    """

    name: str
    lm_eval_task: str
    primary_metric: str
    chance: float = 0.0
    higher_is_better: bool = True
    output_type: str = "multiple_choice"
    num_fewshot: int = 0
    version: str = "1"
    source: str = "lm-eval"
    data_file: str | None = None
    description: str = ""


@dataclass(frozen=True)
class RunConfig:
    """Settings of one ``evalsuite run``; the ones that change numbers enter the cell key."""

    tasks: tuple[str, ...]
    precisions: tuple[str, ...] = ("fp32",)
    num_fewshot: int | None = None
    limit: int | None = None
    device: str = "cpu"
    batch_size: int | str = 8
    seed: int = 1234
    engine: str = "hf"
    bootstrap_iters: int = 1000
    data_dir: str | None = None
    include_path: str | None = None
    trust_remote_code: bool = False

    skip_bad_items: bool = False
    #: what N counts in the rows' compute_flops (FLOPS_BASES); not a number of the score, so
    #: not in the cell key
    flops_basis: str = "total"
    #: the run's speed-ups (allocator, template cache, request memo: ``engine.patches``); they
    #: never change a number, so they are not part of the cell key
    tuning: bool = True


#: Metric names where lower is better: perplexities, bits per byte, TER, a loss, and the
#: CrowS-Pairs likelihood difference. Used where lm-eval's task object (which knows each
#: metric's direction) is not at hand: imported result files and fits of stored rows.
LOWER_IS_BETTER = frozenset({"ppl", "perplexity", "word_perplexity", "byte_perplexity",
                             "bits_per_byte", "likelihood_difference", "loss", "ter"})


def metric_higher_is_better(metric: str) -> bool:
    """Direction of a metric by name (``metric`` or ``metric/filter``): False for the
    :data:`LOWER_IS_BETTER` names, True otherwise (and for no name)."""
    return not metric or str(metric).split("/", 1)[0] not in LOWER_IS_BETTER


def config_hash(obj: Mapping[str, Any]) -> str:
    """Stable short hash of a JSON-able mapping (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResultRow:
    """One checkpoint x precision x task x metric value. Long format; the schema of ``rows.jsonl``.

    Every number on a leaderboard traces back to one of these. ``cell_key`` identifies the
    checkpoint x precision x task x settings cell the row belongs to (used to skip finished work).

    Precision fields (schema 2): ``bits_per_param`` is the bits per quantized weight including
    block-scale overhead (32/16 for float precisions) and ``model_bits`` the total bits of the
    weights as evaluated; ``precision_library`` names what applied it; ``weights_changed_frac``
    and ``weights_max_abs_change`` prove a k-bit precision took effect (fraction of quantized
    weights that changed, largest change); ``n_nonfinite`` counts items whose log-likelihoods
    were NaN/inf (fp16 overflow): they are left out of ``value``/``stderr`` and ``n_samples``.

    Schema 3: ``metric`` is lm-eval's metric name, suffixed ``/<filter>`` when lm-eval's filter
    is not ``none`` (``exact_match/strict-match``), and ``filter`` names that filter, so a task
    with several filters has one row per metric and filter. ``checkpoint_source`` and
    ``checkpoint_revision`` say where the weights came from (local folder or hub id and
    revision); ``tokenizer_hash``, ``data_fingerprint`` (the documents actually scored) and
    ``task_fingerprint`` (the resolved lm-eval task config) are the inputs that entered
    ``cell_key`` (:mod:`evalsuite.run.keys`); ``n_skipped_items`` counts records dropped by
    ``--skip-bad-items``.
    """

    checkpoint_id: str
    series: str
    size: str
    step: int | None
    n_params: int | None
    n_params_nonembedding: int | None
    tokens_seen: int | None
    compute_flops: float | None
    weight_hash: str | None
    precision: str
    task: str
    task_version: str
    metric: str
    is_primary: bool
    value: float | None
    stderr: float | None
    n_samples: int | None
    num_fewshot: int | None
    chance: float | None
    higher_is_better: bool = True
    limit: int | None = None
    batch_size: str | None = None
    engine: str | None = None
    device: str | None = None
    model_bits: float | None = None
    cell_key: str = ""
    config_hash: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    source: str = "evalsuite"
    wall_time_s: float | None = None
    timestamp: str = ""
    schema_version: int = SCHEMA_VERSION
    # schema 2 (issue 5, precision as an axis): what the precision did, and fp16 overflow
    bits_per_param: float | None = None
    precision_library: str | None = None
    weights_changed_frac: float | None = None
    weights_max_abs_change: float | None = None
    n_nonfinite: int = 0
    # schema 3 (issue 18, never a wrong number): filters, provenance, what was read
    filter: str = "none"
    checkpoint_source: str | None = None
    checkpoint_revision: str | None = None
    tokenizer_hash: str | None = None
    data_fingerprint: str | None = None
    task_fingerprint: str | None = None
    bootstrap_iters: int | None = None
    n_skipped_items: int = 0
    #: what N counts in compute_flops = 6·N·D (FLOPS_BASES); None: written before the basis
    #: was recorded, which was "total"
    flops_basis: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["versions"] = dict(self.versions)
        for k in ("value", "stderr", "compute_flops", "model_bits", "bits_per_param",
                  "weights_changed_frac", "weights_max_abs_change"):
            v = d[k]
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None  # JSON has no NaN; a non-finite score is stored as missing
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResultRow":
        return cls(**{k: v for k, v in d.items() if k in _RESULT_FIELDS})


RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ResultRow))
_RESULT_FIELDS = frozenset(RESULT_COLUMNS)


# ---- the final checkpoint of each size ------------------------------------------------------

def step_rank(step: int | float | None) -> tuple[int, float]:
    """Sort key of a training step. A checkpoint without a step (a released folder, a hub id
    without a revision) is the final model, so it ranks after every numbered step."""
    if step is None or (isinstance(step, float) and math.isnan(step)):
        return (1, 0.0)
    return (0, float(step))


def latest_by(items: Iterable[T], key: Callable[[T], Hashable],
              step: Callable[[T], Any] = lambda item: item.step) -> dict[Hashable, T]:
    """For each ``key``, the first item at its latest step (:func:`step_rank`). The one
    "final checkpoint per size" rule, for records; :func:`final_step_mask` is it for frames."""
    out: dict[Hashable, T] = {}
    for item in items:
        k = key(item)
        if k not in out or step_rank(step(item)) > step_rank(step(out[k])):
            out[k] = item
    return out


def final_step_mask(frame, by: tuple[str, ...] = ("series", "size")):
    """Boolean mask of a result frame's rows at the latest step of each ``by`` group, by the
    rule of :func:`step_rank` (a row without a step is the final one)."""
    import pandas as pd

    if not len(frame):
        return pd.Series(True, index=frame.index, dtype=bool)
    steps = pd.to_numeric(frame["step"], errors="coerce").fillna(math.inf)
    last = steps.groupby([frame[c] for c in by]).transform("max")
    return steps == last
