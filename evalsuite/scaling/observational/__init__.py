"""Observational scaling laws: a capability space over public model families, and predictions.

Paper: Yangjun Ruan, Chris J. Maddison, Tatsunori Hashimoto, "Observational Scaling Laws and the
Predictability of Language Model Performance", NeurIPS 2024 (arXiv:2405.10938).

The idea, and where each formula lives:

1. Benchmark scores of many public models lie in a low-dimensional capability space: the first K
   principal components of the centred score matrix (paper section 3.2) -> ``capability``
   (:class:`CapabilityPCA`, with iterative low-rank imputation of missing scores).
2. Within a family, each PC is linear in log10 training compute C = 6·N·D (paper eq. 4) ->
   ``capability`` (:class:`FamilyEfficiency`); the slope is the family's compute efficiency.
3. Downstream metrics, emergent and agentic ones included, are sigmoids of a linear function of
   the PCs, y = (1 - b)·σ(a + wᵀ·PC) + b (paper eq. 5) -> ``predict``
   (:class:`ObservationalPredictor`), with log-FLOPs and log-size baselines, holdout splits,
   bootstrap intervals, equivalent compute against a reference family, and backtests.
4. Which families to evaluate under a budget of models (V-optimal design, paper section 5) ->
   ``select`` (:func:`select_families`).

Input tables and their column mappings (ObsScaling and Sloth), the paper's 77-model sample and
the 20 pre-registered models are in ``data``. Everything takes pandas DataFrames, reads no
files and imports no torch.
"""

from __future__ import annotations

from .capability import (CapabilityPCA, FamilyEfficiency, FamilyLine, FittedCapabilityPCA,
                         FittedFamilyEfficiency, PAPER_PCA, impute_low_rank, impute_paper)
from .data import (DEFAULT_TASK_BENCHMARKS, INSTRUCT_COLUMN_MAPPING, OBS_BENCHMARKS,
                   OBS_COLUMN_MAPPING, PAPER_FAMILIES, PREREGISTERED_MODELS, SLOTH_COLUMN_MAPPING,
                   TARGET_SCALES, ObsDataError, capability_frame_from_results, check_flops,
                   normalize_target, select_paper_models, select_preregistered, standardize_frame)
from .select import FamilySelection, place_models, select_families
from .predict import (METHODS, BacktestResult, BacktestTable, FittedObservationalPredictor,
                      FittedSigmoid, ObservationalPredictor, SigmoidRegression, backtest_target,
                      backtest_targets, split_by_flops, split_by_rank)

__all__ = [
    "CapabilityPCA", "FittedCapabilityPCA", "impute_low_rank", "impute_paper", "PAPER_PCA",
    "FamilyEfficiency",
    "FittedFamilyEfficiency", "FamilyLine",
    "OBS_BENCHMARKS", "PAPER_FAMILIES", "PREREGISTERED_MODELS", "OBS_COLUMN_MAPPING",
    "SLOTH_COLUMN_MAPPING", "INSTRUCT_COLUMN_MAPPING", "TARGET_SCALES", "DEFAULT_TASK_BENCHMARKS",
    "ObsDataError", "standardize_frame", "check_flops", "select_paper_models",
    "select_preregistered", "normalize_target", "capability_frame_from_results",
    "METHODS", "SigmoidRegression", "FittedSigmoid", "ObservationalPredictor",
    "FittedObservationalPredictor", "BacktestResult", "backtest_target", "split_by_flops",
    "split_by_rank", "BacktestTable", "backtest_targets",
    "FamilySelection", "select_families", "place_models",
]
