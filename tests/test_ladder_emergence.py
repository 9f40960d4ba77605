"""On the committed reference-ladder results: 2-digit addition jumps, but its 200k model dips far
below the 100k one, so the verdict reports the dip and a resolution-limited width instead of
calling it emergent (issue 21); a task without a jump is not flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.scaling import emergence_table
from evalsuite.store import ResultStore

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture(scope="module")
def table():
    frame = ResultStore(RESULTS).to_frame()
    frame = frame[(frame.series == "ladder") & frame.is_primary.astype(bool)]
    if frame.empty:
        pytest.skip("results/ holds no reference-ladder rows (run `evalsuite demo`)")
    return frame, emergence_table(frame, series="ladder", across="sizes", n_boot=100)


def test_two_digit_addition_reports_the_200k_dip_and_a_resolution_limited_width(table):
    frame, t = table
    row = t[t.task == "arithmetic_2da"].iloc[0]
    assert row.verdict == "non-monotone", row.explanation
    final = frame[(frame.task == "arithmetic_2da") & (frame.step == frame.step.max())]
    x200 = float(final[final["size"] == "200k"].compute_flops.iloc[0])
    assert f"compute_flops={x200:.3g}" in row.dips
    assert "within one gap" in row.explanation and row.within_gap_decades > 0
    assert "Sensitivity" in row.explanation


def test_a_task_without_a_jump_is_not_flagged(table):
    _, t = table
    assert t[t.task == "arithmetic_2ds"].iloc[0].verdict != "emergent"
