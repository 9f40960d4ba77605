"""Benchmark: build the leaderboards for 10,000 result rows (target: under 20 s).

    python benchmarks/bench_leaderboard.py          prints the build time (and per-stage times)
    pytest benchmarks/bench_leaderboard.py          the same under pytest-benchmark

The rows are synthetic (evalsuite.testing.rows), shaped like our reference ladder:
1 series x 6 sizes x 10 steps x 4 precisions x 21 tasks x 2 metrics = 10,080 rows, 5,040
primary cells, 21 scaling fits, 147 emergence curves, 21 plots. The cost grows with tasks x
series (fits, plots), far less with rows. Time is wall-clock for ``build_leaderboard`` into a fresh
folder, with the imports already done (the CLI adds about 2-5 s of imports on a shared machine).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsuite.leaderboard import build_leaderboard, default_jobs, prepare_leaderboard  # noqa: E402
from evalsuite.testing.rows import synthetic_rows  # noqa: E402

SIZES = tuple((f"{n}k", n * 1000) for n in (7, 25, 55, 100, 200, 450))
STEPS = tuple(range(100, 1100, 100))
TASKS = tuple(f"task_{i:02d}" for i in range(21))
JOBS = default_jobs()  # what the CLI uses


def rows_10k():
    return synthetic_rows(series=("ladder",), sizes=SIZES, steps=STEPS, tasks=TASKS,
                          precisions=("fp32", "bf16", "int8", "int4"), tokens_per_step=4096,
                          model_bits=True, midpoint_flops=1e11)


def _cpu() -> float:
    t = os.times()  # this process and its finished worker processes
    return t.user + t.system + t.children_user + t.children_system


def build_once(rows, jobs: int = JOBS) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its workers) of one build into a fresh
    folder."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), _cpu()
        build_leaderboard(rows, tmp, jobs=jobs)
        return time.perf_counter() - t0, _cpu() - c0


def test_build_10k_rows(benchmark):
    rows = rows_10k()
    assert len(rows) >= 10_000
    build_leaderboard(rows[:200], tempfile.mkdtemp())  # warm the imports
    benchmark.pedantic(build_once, args=(rows,), rounds=1, iterations=1)


def main() -> None:
    rows = rows_10k()
    build_leaderboard(rows[:200], tempfile.mkdtemp())  # warm the imports
    t0 = time.perf_counter()
    prepare_leaderboard(rows, scaling=False)
    t_tables = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare_leaderboard(rows, jobs=JOBS)
    t_prep = time.perf_counter() - t0
    t_total, cpu_total = build_once(rows)
    print(f"rows: {len(rows)}; load average before: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; {JOBS} worker processes")
    print(f"cells and tables only: {t_tables:.2f} s")
    print(f"+ scaling fits, predictions, emergence: {t_prep:.2f} s")
    print(f"build_leaderboard, all files written (plots, html): {t_total:.2f} s wall, "
          f"{cpu_total:.2f} s CPU over all processes (target < 20 s wall; on a shared machine "
          "wall time depends on its load, CPU time does not)")
    if JOBS > 1:
        t1, c1 = build_once(rows, jobs=1)
        print(f"the same with --jobs 1: {t1:.2f} s wall, {c1:.2f} s CPU")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
