"""evalsuite: evaluate language-model checkpoint series, fit scaling laws, build leaderboards."""

__version__ = "0.1.0"

from .records import Checkpoint, ResultRow, RunConfig, TaskSpec, compute_flops  # noqa: E402
from .store import ResultStore  # noqa: E402

__all__ = ["__version__", "Checkpoint", "ResultRow", "RunConfig", "TaskSpec", "compute_flops",
           "ResultStore"]
