"""Worker processes for the leaderboard's fits and plots (results never depend on how many)."""

from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = ["default_jobs", "parallel_map"]


def default_jobs() -> int:
    """Worker processes for fits and plots: the cores this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def parallel_map(fn, items: Sequence[Any], jobs: int = 1, min_items: int = 6) -> list[Any]:
    """``[fn(x) for x in items]``, in forked worker processes when ``jobs > 1`` and there are
    at least ``min_items`` (order kept, so results do not depend on scheduling). ``fn`` must be
    a pure module-level function; without ``fork`` (Windows, macOS) it runs in this process."""
    items = list(items)
    if jobs <= 1 or len(items) < min_items:
        return [fn(x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return [fn(x) for x in items]
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=ctx) as pool:
        return list(pool.map(fn, items, chunksize=1))
