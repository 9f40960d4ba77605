"""On the committed reference-ladder results, arithmetic is emergent and a smooth task is not."""

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


def test_two_digit_addition_is_emergent_inside_the_measured_range(table):
    frame, t = table
    row = t[t.task == "arithmetic_2da"].iloc[0]
    assert row.verdict == "emergent"
    final = frame[(frame.task == "arithmetic_2da") & (frame.step == frame.step.max())]
    lo, hi = final.compute_flops.min(), final.compute_flops.max()
    assert lo < row.onset_x < hi
    assert lo <= row.onset_lower <= row.onset_x <= row.onset_upper <= hi


def test_a_task_without_a_jump_is_not_flagged(table):
    _, t = table
    assert t[t.task == "arithmetic_2ds"].iloc[0].verdict != "emergent"
