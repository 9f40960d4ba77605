"""Scaling laws, emergence detection, predictions and observational scaling.

Takes pandas DataFrames (the ResultRow columns); never imports torch, the runner or the store.
"""

from .backtest import (CALIBRATION_LEVELS, CORE_TASKS, backtest, calibration_table,
                       summarize_backtest, task_group)
from .emergence import (EmergenceResult, brier_rows, classify_curve, detect_emergence,
                        emergence_table, logprob_rows)
from .fit import (FitError, Prediction, ScalingFit, ScalingLaw, fit_scaling_law, select_points)
from .laws import LAWS, Law, get_law
from .predict import SizeTokenFit, SizeTokenLaw, predict_sizes, resolve_size
from . import observational
from .observational import (CapabilityPCA, FamilyEfficiency, ObservationalPredictor, ObsDataError,
                            place_models, select_families)

__all__ = [
    "CALIBRATION_LEVELS", "CORE_TASKS", "calibration_table", "CapabilityPCA", "FamilyEfficiency", "ObservationalPredictor", "ObsDataError",
    "observational", "place_models", "select_families", "EmergenceResult", "FitError", "LAWS", "Law", "Prediction", "ScalingFit",
    "ScalingLaw", "SizeTokenFit", "SizeTokenLaw", "backtest", "classify_curve",
    "detect_emergence", "emergence_table", "brier_rows", "fit_scaling_law", "get_law", "logprob_rows",
    "predict_sizes",
    "resolve_size", "select_points", "summarize_backtest", "task_group",
]
