"""evalsuite: evaluate language-model checkpoint series, fit scaling laws, build leaderboards."""

__version__ = "0.1.0"

from .records import Checkpoint, ResultRow, RunConfig, TaskSpec, compute_flops  # noqa: E402
from .store import ResultStore  # noqa: E402

_LAZY = {
    # scaling (numpy/scipy only, no torch): imported on first use so `import evalsuite` stays light
    "ScalingLaw": "evalsuite.scaling", "ScalingFit": "evalsuite.scaling",
    "Prediction": "evalsuite.scaling", "fit_scaling_law": "evalsuite.scaling",
    "detect_emergence": "evalsuite.scaling", "predict_sizes": "evalsuite.scaling",
    "backtest": "evalsuite.scaling", "import_results": "evalsuite.importer",
    "discover_series": "evalsuite.series", "TaskRegistry": "evalsuite.tasks.registry",
    "run_series": "evalsuite.run", "build_leaderboard": "evalsuite.leaderboard",
}

__all__ = ["__version__", "Checkpoint", "ResultRow", "RunConfig", "TaskSpec", "compute_flops",
           "ResultStore", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evalsuite' has no attribute {name!r}")
