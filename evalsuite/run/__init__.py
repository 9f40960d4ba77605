"""Running a checkpoint series: plan the grid, score it, write the results.

``plan`` (cells and their keys, ``keys``) -> ``evaluate`` (a group of cells in one process:
load, score with lm-eval) -> ``rows`` (lm-eval's output -> result rows) -> ``driver`` (skip
finished cells, schedule groups on an executor, write the store) with ``executors/{local, ray}``.
"""

from .driver import RunReport, run_series
from .evaluate import GroupEvaluator
from .plan import Cell, RunError, plan_cells

__all__ = ["run_series", "RunReport", "RunError", "Cell", "plan_cells", "GroupEvaluator"]
