"""Observational scaling: input tables, column mappings, model samples and target normalisation.

Paper: Ruan, Maddison, Hashimoto, "Observational Scaling Laws and the Predictability of Language
Model Performance", NeurIPS 2024 (arXiv:2405.10938). The data layout follows the authors' released
evaluation tables (github.com/ryoungj/ObsScaling, ``eval_results/*.csv``) and, for the second data
set, the Sloth tables (Maia Polo et al. 2024, arXiv:2412.06540, github.com/felipemaiapolo/sloth).

Everything here takes and returns pandas DataFrames; nothing reads files (the CLI does).

Canonical frame (what :func:`standardize_frame` returns, one row per model):

``model``            model id (str, unique)
``family``           model family (str)
``n_params``         parameters (float, may be NaN)
``tokens_seen``      pretraining tokens (float, may be NaN)
``compute_flops``    training FLOPs = 6·N·D from :func:`evalsuite.records.compute_flops` (NaN if unknown)
``compute_flops_reported``  the table's own FLOPs column in FLOPs (NaN if absent)
benchmark columns    scores in [0, 1] under the ObsScaling names (``MMLU``, ``ARC-C``, ...)
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ...records import compute_flops

__all__ = [
    "OBS_BENCHMARKS", "PAPER_FAMILIES", "PREREGISTERED_MODELS", "OBS_COLUMN_MAPPING",
    "SLOTH_COLUMN_MAPPING", "INSTRUCT_COLUMN_MAPPING", "TARGET_SCALES", "ObsDataError",
    "standardize_frame", "check_flops", "select_paper_models", "select_preregistered",
    "normalize_target", "capability_frame_from_results", "DEFAULT_TASK_BENCHMARKS",
]


class ObsDataError(ValueError):
    """An input table that cannot be used; the message names the table, the field and the fix."""


#: The capability benchmarks of the paper (section 3.1), in the order of the released table.
OBS_BENCHMARKS: tuple[str, ...] = ("MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA",
                                   "GSM8K", "XWinograd", "HumanEval")

#: Families of the paper's original sample (upstream default loader; see PROVENANCE.md in
#: ../shared/data/obsscaling). Families whose members are all pre-registered are dropped by the
#: second step anyway and are therefore not listed.
PAPER_FAMILIES: tuple[str, ...] = (
    "Llama-2", "Llama", "Llama-3", "Qwen1.5", "Qwen", "Mistral", "Mixtral", "Yi", "Gemma", "Falcon",
    "Phi", "Pythia", "BLOOM", "GPT-Neo/J", "OPT", "MPT", "XGLM", "CodeLlama", "StarCoder",
    "StarCoder2", "DeepSeek-Coder")

#: The 20 models released after the paper (May 2024) whose scores the authors predicted in advance.
PREREGISTERED_MODELS: tuple[str, ...] = (
    "meta-llama/Meta-Llama-3.1-405B-FP8", "meta-llama/Meta-Llama-3.1-70B",
    "meta-llama/Meta-Llama-3.1-8B", "Qwen/Qwen1.5-110B", "Qwen/Qwen2-72B", "Qwen/Qwen2-57B-A14B",
    "Qwen/Qwen2-7B", "Qwen/Qwen2-1.5B", "Qwen/Qwen2-0.5B", "deepseek-ai/DeepSeek-V2",
    "deepseek-ai/DeepSeek-Coder-V2-Base", "google/gemma-2-27b", "google/gemma-2-9b",
    "google/gemma-2-2b", "mistralai/Mixtral-8x22B-v0.1", "mistralai/Mistral-Nemo-Base-2407",
    "01-ai/Yi-1.5-34B", "01-ai/Yi-1.5-9B", "01-ai/Yi-1.5-6B", "ai21labs/Jamba-v0.1")

# A mapping names, per canonical field, the source column and the factor to its unit.
#: ObsScaling base tables (``base_llm_benchmark_eval*.csv``).
OBS_COLUMN_MAPPING: Mapping[str, tuple[str, float]] = {
    "model": ("Model", 1.0), "family": ("Model Family", 1.0),
    "n_params": ("Model Size (B)", 1e9), "tokens_seen": ("Pretraining Data Size (T)", 1e12),
    "compute_flops_reported": ("FLOPs (1E21)", 1e21),
    **{b: (b, 1.0) for b in OBS_BENCHMARKS},
}
#: ObsScaling instruct table: ``Winogrande`` there is ``Winograd`` in the base tables; no XWinograd.
INSTRUCT_COLUMN_MAPPING: Mapping[str, tuple[str, float]] = {
    **{k: v for k, v in OBS_COLUMN_MAPPING.items() if k not in ("Winograd", "XWinograd")},
    "Winograd": ("Winogrande", 1.0),
}
#: Sloth ``data_v2.csv`` (Open LLM Leaderboard v1 + v2, 188 models). Documented mapping:
#: ``Family`` -> family, ``#Params (B)`` -> n_params, ``ARC`` (25-shot ARC-Challenge) -> ``ARC-C``,
#: ``Winogrande`` -> ``Winograd``; MMLU, HellaSwag, TruthfulQA, GSM8K, XWinograd and HumanEval
#: keep their names. The leaderboard-v2 columns (IFEval, BBH, ...) are targets, not capability.
SLOTH_COLUMN_MAPPING: Mapping[str, tuple[str, float]] = {
    "model": ("Model", 1.0), "family": ("Family", 1.0),
    "n_params": ("#Params (B)", 1e9), "tokens_seen": ("Pretraining Data Size (T)", 1e12),
    "compute_flops_reported": ("FLOPs (1E21)", 1e21),
    "MMLU": ("MMLU", 1.0), "ARC-C": ("ARC", 1.0), "HellaSwag": ("HellaSwag", 1.0),
    "Winograd": ("Winogrande", 1.0), "TruthfulQA": ("TruthfulQA", 1.0), "GSM8K": ("GSM8K", 1.0),
    "XWinograd": ("XWinograd", 1.0), "HumanEval": ("HumanEval", 1.0),
}

# Mean of 1/(number of choices) over the 24 BBH subtasks of Open LLM Leaderboard v2 (boolean
# expressions 2, causal judgement 2, date understanding 6, disambiguation QA 3, formal fallacies 2,
# geometric shapes 11, hyperbaton 2, logical deduction 5/7/3, movie recommendation 6, navigate 2,
# object counting 19, penguins 5, colored objects 18, ruin names 6, salient translation 6, snarks 2,
# sports 2, temporal sequences 4, tracking shuffled objects 5/7/3, web of lies 2). Choice counts as
# documented by the leaderboard's score-normalisation page; the ObsScaling provenance says BBH
# chance is "the mean of the per-subtask chance rates".
_BBH_CHOICES = (2, 2, 6, 3, 2, 11, 2, 5, 7, 3, 6, 2, 19, 5, 18, 6, 6, 2, 2, 4, 5, 7, 3, 2)
_BBH_CHANCE = float(np.mean([1.0 / k for k in _BBH_CHOICES]))
# MuSR: murder mysteries 2 choices, object placements 5, team allocation 3.
_MUSR_CHANCE = float(np.mean([1 / 2, 1 / 5, 1 / 3]))

#: Per target column: (divisor bringing the score to [0, 1], chance level on that [0, 1] scale,
#: whether to chance-normalise as (v - chance) / (1 - chance) before fitting, source of the chance).
TARGET_SCALES: Mapping[str, tuple[float, float, bool, str]] = {
    # BIG-Bench emergent tasks, 2-shot (Wei et al. 2022). parsinlu_qa is 4-way multiple choice.
    "parsinlu_qa_2_acc": (1.0, 0.25, False, "4-way multiple choice"),
    "word_unscrambling_2_exact_match": (1.0, 0.0, False, "generation"),
    "ipa_transliterate_2_exact_match": (1.0, 0.0, False, "generation"),
    "ipa_transliterate_2_bleu": (100.0, 0.0, False, "BLEU on 0-100, divided by 100"),
    "arithmetic_3ds_2_acc": (1.0, 0.0, False, "generation"),
    "arithmetic_3da_2_acc": (1.0, 0.0, False, "generation"),
    "arithmetic_2dm_2_acc": (1.0, 0.0, False, "generation"),
    "arithmetic_2da_2_acc": (1.0, 0.0, False, "generation"),
    # AgentBench overall score is on 0-10 (issue 7: "AgentBench score / 10").
    "ABench-OA": (10.0, 0.0, False, "AgentBench overall 0-10, divided by 10"),
    "ABoard-Avg_PR": (100.0, 0.0, False, "AgentBoard progress rate in percent, divided by 100"),
    "ABoard-Avg_SR": (100.0, 0.0, False, "AgentBoard success rate in percent, divided by 100"),
    # Open LLM Leaderboard v2, raw fractions; chance-normalised as the leaderboard does.
    "leaderboard_bbh": (1.0, _BBH_CHANCE, True, "mean of 1/choices over 24 subtasks"),
    "leaderboard_gpqa": (1.0, 0.25, True, "4-way multiple choice"),
    "leaderboard_ifeval": (1.0, 0.0, True, "instruction following, no chance floor"),
    "leaderboard_math_hard": (1.0, 0.0, True, "generation"),
    "leaderboard_mmlu_pro": (1.0, 0.1, True, "10-way multiple choice"),
    "leaderboard_musr": (1.0, _MUSR_CHANCE, True, "mean of 1/choices over 3 subtasks"),
    # Sloth names of the same leaderboard-v2 benchmarks.
    "BBH": (1.0, _BBH_CHANCE, True, "mean of 1/choices over 24 subtasks"),
    "GPQA": (1.0, 0.25, True, "4-way multiple choice"),
    "IFEval": (1.0, 0.0, True, "instruction following, no chance floor"),
    "MATH Lvl 5": (1.0, 0.0, True, "generation"),
    "MMLU-PRO": (1.0, 0.1, True, "10-way multiple choice"),
    "MUSR": (1.0, _MUSR_CHANCE, True, "mean of 1/choices over 3 subtasks"),
}

#: Our runner's task names -> ObsScaling benchmark columns (for our own checkpoints).
DEFAULT_TASK_BENCHMARKS: Mapping[str, str] = {
    "mmlu": "MMLU", "arc_challenge": "ARC-C", "hellaswag": "HellaSwag", "winogrande": "Winograd",
    "truthfulqa_mc2": "TruthfulQA", "gsm8k": "GSM8K", "xwinograd": "XWinograd",
    "humaneval": "HumanEval",
}


def standardize_frame(raw: pd.DataFrame, *, mapping: Mapping[str, tuple[str, float]] = OBS_COLUMN_MAPPING,
                      source: str = "table", keep: Iterable[str] = ()) -> pd.DataFrame:
    """Rename and rescale a raw table into the canonical frame (see the module docstring).

    ``source`` names the table in error messages. ``compute_flops`` is recomputed as 6·N·D with
    :func:`evalsuite.records.compute_flops`; compare it with ``compute_flops_reported`` through
    :func:`check_flops`. Columns in ``keep`` are carried over unchanged.
    """
    if not isinstance(raw, pd.DataFrame):
        raise ObsDataError(f"{source}: expected a pandas DataFrame, got {type(raw).__name__}")
    model_col = mapping["model"][0]
    if model_col not in raw.columns:
        raise ObsDataError(f"{source}: no column {model_col!r} naming the models; pass a table "
                           f"with it or a mapping whose 'model' entry names the id column")
    out = pd.DataFrame({"model": raw[model_col].astype(str).str.strip()})
    dup = out["model"][out["model"].duplicated()].tolist()
    if dup:
        raise ObsDataError(f"{source}: field {model_col!r} has duplicate models {dup[:5]}; "
                           "keep one row per model")
    for canon, (col, factor) in mapping.items():
        if canon == "model":
            continue
        if col not in raw.columns:
            if canon == "family":
                raise ObsDataError(f"{source}: no column {col!r} (model family); add it or map "
                                   "'family' to the column that holds it")
            out[canon] = np.nan
            continue
        if canon == "family":
            out["family"] = raw[col].astype(str).values
            continue
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = raw[col].notna() & values.isna()
        if bad.any():
            raise ObsDataError(f"{source}: field {col!r} has non-numeric values "
                               f"{raw[col][bad].head(3).tolist()}; fix or blank them")
        out[canon] = values.values * factor
    out["compute_flops"] = [
        (compute_flops(n, d) if not (math.isnan(n) or math.isnan(d)) else np.nan)
        for n, d in zip(out["n_params"].astype(float), out["tokens_seen"].astype(float))]
    for k in keep:
        if k in raw.columns:
            out[k] = raw[k].values
    return out.reset_index(drop=True)


def check_flops(frame: pd.DataFrame, *, rtol: float = 1e-6) -> pd.DataFrame:
    """Rows where 6·N·D disagrees with the table's own FLOPs column by more than ``rtol``.

    Returns a frame (model, compute_flops, compute_flops_reported, rel_diff); empty when all agree.
    Rows where either side is unknown are not compared.
    """
    both = frame.dropna(subset=["compute_flops", "compute_flops_reported"])
    rel = (both["compute_flops"] - both["compute_flops_reported"]).abs() / both["compute_flops_reported"]
    bad = both.assign(rel_diff=rel)[rel > rtol]
    return bad[["model", "compute_flops", "compute_flops_reported", "rel_diff"]].reset_index(drop=True)


def select_paper_models(frame: pd.DataFrame) -> pd.DataFrame:
    """The paper's original sample: 77 models in 21 families (PROVENANCE.md, two-step rule)."""
    keep = frame["family"].isin(PAPER_FAMILIES) & ~frame["model"].isin(PREREGISTERED_MODELS)
    return frame[keep].reset_index(drop=True)


def select_preregistered(frame: pd.DataFrame) -> pd.DataFrame:
    """The 20 models released after the paper and predicted in advance (true out-of-sample set)."""
    return frame[frame["model"].isin(PREREGISTERED_MODELS)].reset_index(drop=True)


def normalize_target(values: pd.Series, column: str, *, chance: float | None = None,
                     scale: float | None = None, normalize: bool | None = None) -> tuple[pd.Series, float]:
    """Bring a target column to [0, 1]; chance-normalise where the table says so.

    Returns (values, chance on the returned scale). Unknown columns need ``chance`` (else 0 is
    used and values must already be fractions). Chance-normalised targets have chance 0.
    """
    default = TARGET_SCALES.get(column, (1.0, 0.0, False, "unknown"))
    scale = default[0] if scale is None else scale
    chance = default[1] if chance is None else chance
    normalize = default[2] if normalize is None else normalize
    v = pd.to_numeric(values, errors="coerce").astype(float) / scale
    if normalize:
        return (v - chance) / (1.0 - chance), 0.0
    return v, float(chance)


def capability_frame_from_results(results: pd.DataFrame, *,
                                  task_benchmarks: Mapping[str, str] = DEFAULT_TASK_BENCHMARKS
                                  ) -> pd.DataFrame:
    """Our own checkpoints as canonical capability rows, from ResultRow columns.

    One row per ``checkpoint_id`` (model) with ``series`` as family, ``n_params``, ``tokens_seen``
    and ``compute_flops`` from the rows, and the primary-metric value of each task mapped to its
    ObsScaling benchmark column. Benchmarks that were not run stay NaN (projected around them).
    """
    need = {"checkpoint_id", "series", "task", "value", "is_primary"}
    missing = need - set(results.columns)
    if missing:
        raise ObsDataError(f"results rows: missing fields {sorted(missing)}; pass the frame of "
                           "ResultStore.to_frame()")
    rows = results[results["is_primary"].astype(bool) & results["task"].isin(list(task_benchmarks))]
    if rows.empty:
        return pd.DataFrame(columns=["model", "family", "n_params", "tokens_seen", "compute_flops",
                                     "compute_flops_reported", *OBS_BENCHMARKS])
    rows = rows.assign(benchmark=rows["task"].map(task_benchmarks))
    wide = rows.pivot_table(index="checkpoint_id", columns="benchmark", values="value",
                            aggfunc="last")
    meta = rows.groupby("checkpoint_id").agg(family=("series", "first"),
                                             n_params=("n_params", "first"),
                                             tokens_seen=("tokens_seen", "first"))
    out = meta.join(wide).reset_index().rename(columns={"checkpoint_id": "model"})
    out["n_params"] = pd.to_numeric(out["n_params"], errors="coerce").astype(float)
    out["tokens_seen"] = pd.to_numeric(out["tokens_seen"], errors="coerce").astype(float)
    out["compute_flops"] = 6.0 * out["n_params"] * out["tokens_seen"]  # = records.compute_flops
    out["compute_flops_reported"] = np.nan
    for b in OBS_BENCHMARKS:
        if b not in out.columns:
            out[b] = np.nan
    return out
