"""The emergence criterion on synthetic curves, on the NOTES arithmetic figures, on real Pythia."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalsuite.scaling import FitError, classify_curve, detect_emergence, emergence_table

X = np.logspace(5, 9, 9)


def test_sharp_rise_after_flat_chance_is_emergent_with_onset_inside():
    rng = np.random.default_rng(0)
    u = np.log10(X)
    y = np.where(u < 7.0, 0.25, 0.25 + 0.6 * np.minimum(1, (u - 7.0) / 0.8))
    y = y + rng.normal(0, 0.005, len(X))
    r = classify_curve(X, y, np.full(len(X), 0.01), chance=0.25, n_boot=50)
    assert r.verdict == "emergent", r.explanation
    assert X[0] < r.onset_x < X[-1]
    assert r.onset_lower <= r.onset_x <= r.onset_upper
    assert 10 ** 6.5 < r.onset_x < 10 ** 7.5


def test_straight_line_in_log_x_is_smooth():
    u = np.log10(X)
    y = 0.3 + 0.06 * (u - u[0])
    r = classify_curve(X, y, np.full(len(X), 0.01), chance=0.25, n_boot=0)
    assert r.verdict == "smooth", r.explanation


def test_gradual_rise_after_warmup_plateau_is_not_emergent():
    # flat at chance, then a slow rise over 3 decades (like every task over training steps)
    u = np.log10(X)
    y = 0.25 + 0.4 * np.clip((u - 6) / 3, 0, 1)
    r = classify_curve(X, y, np.full(len(X), 0.005), chance=0.25, n_boot=0)
    assert r.verdict == "smooth" and "sharp" in r.explanation


def test_flat_and_peaked_and_inverse():
    flat = classify_curve(X, 0.25 + np.zeros(len(X)), np.full(len(X), 0.01), chance=0.25,
                          n_boot=0)
    assert flat.verdict == "flat"
    y = np.array([0.2, 0.3, 0.38, 0.42, 0.43, 0.40, 0.37, 0.35, 0.33])
    peaked = classify_curve(X, y, np.full(len(X), 0.005), chance=0.0, n_boot=0)
    assert peaked.verdict == "peaked" and peaked.peak_x == pytest.approx(X[4])
    down = classify_curve(X, np.linspace(0.6, 0.3, len(X)), np.full(len(X), 0.005), n_boot=0)
    assert down.verdict == "inverse"


def test_too_few_points_and_bad_values():
    with pytest.raises(FitError, match="at least 4"):
        classify_curve(X[:3], [0.1, 0.2, 0.3])
    with pytest.raises(FitError, match="non-finite"):
        classify_curve(X[:5], [0.1, np.nan, 0.3, 0.4, 0.5])


def test_notes_arithmetic_ladder_figures_are_emergent():
    # ../shared/NOTES.md: ~12K non-embedding params ~1%, 25K 4.7%, 100K 8.2%, 450K 84%, 800K 86%
    # (arithmetic_2da, 2,000 items, chance 0).
    x = np.array([12e3, 25e3, 100e3, 450e3, 800e3])
    y = np.array([0.01, 0.047, 0.082, 0.84, 0.86])
    se = np.sqrt(y * (1 - y) / 2000)
    r = classify_curve(x, y, se, chance=0.0, n_boot=50)
    assert r.verdict == "emergent", r.explanation
    assert x[0] < r.onset_x < x[-1]


def test_companion_metric_smooth_where_discrete_jumps():
    u = np.log10(X)
    acc = np.where(u < 7.0, 0.0, np.minimum(0.8, (u - 7.0) * 0.9)) + 0.001
    logp = -3.0 + 0.3 * (u - u[0])          # smooth log-probability
    base = pd.DataFrame({"task": "t", "compute_flops": X, "series": "s", "chance": 0.0})
    rows = base.assign(metric="acc", value=acc, stderr=0.005)
    comp = base.assign(metric="logprob", value=logp, stderr=0.01)
    r = detect_emergence(rows, companion=comp, n_boot=0)
    # Schaeffer et al. 2023: the metric jumps, the model's log-probability does not
    assert r.verdict == "metric_artifact", r.explanation
    assert r.companion_verdict == "smooth" and r.companion_smooth
    assert r.onset_x is not None and "Sensitivity" in r.explanation
    # the same jump with a companion that jumps as well stays emergent
    logp_jump = np.where(u < 7.0, -6.0, -6.0 + np.minimum(5.0, (u - 7.0) * 6))
    r2 = detect_emergence(rows, companion=base.assign(metric="logprob", value=logp_jump,
                                                      stderr=0.01), n_boot=0)
    assert r2.verdict == "emergent" and r2.companion_verdict == "jump", r2.explanation


def test_mid_curve_dip_is_reported_and_not_emergent():
    # the shipped ladder's 2-digit addition at the final step: 200k dips 37 points
    x = np.array([25e3, 50e3, 100e3, 200e3, 450e3, 800e3])
    y = np.array([0.035, 0.086, 0.085, 0.800, 0.430, 0.808])
    se = np.sqrt(np.maximum(y * (1 - y), 1e-3) / 2000)
    r = classify_curve(x, y, se, chance=0.0, n_boot=0)
    assert r.verdict == "non-monotone", r.explanation
    assert "x=4.5e+05" in r.dips and "below x=2e+05" in r.dips


def test_rise_between_two_points_is_reported_as_within_one_gap():
    x = np.logspace(5, 7, 5)            # 0.5 decades apart
    y = np.array([0.01, 0.012, 0.011, 0.80, 0.81])
    r = classify_curve(x, y, np.full(5, 0.005), chance=0.0, n_boot=0)
    assert r.rise_decades is None and r.within_gap_decades == pytest.approx(0.5)
    assert "within one gap" in r.explanation
    assert r.verdict == "emergent", r.explanation
    assert r.sensitivity.count("/") == 4   # three thresholds, three verdicts


def _pythia_rows(shared_data, sizes, steps=(143000,), series_dir="pythia-{}"):
    from evalsuite.importer import import_results

    root = shared_data("pythia_evals", "pythia-v1")
    files = []
    for size in sizes:
        folder = root / series_dir.format(size) / "zero-shot"
        for step in steps:
            files.extend(folder.glob(f"*_step{step}.json"))
    rows = import_results(files)
    return pd.DataFrame([r.to_dict() for r in rows])


def test_pythia_lambada_falling_late_in_training_is_flagged(shared_data):
    steps = (1000, 3000, 13000, 23000, 33000, 43000, 53000, 63000, 73000, 83000, 93000, 103000,
             113000, 123000, 133000, 143000)
    df = _pythia_rows(shared_data, ["160m"], steps)
    t = emergence_table(df, across="steps", tasks=["lambada_openai", "piqa"], n_boot=0)
    verdicts = dict(zip(t.task, t.verdict))
    assert verdicts["lambada_openai"] == "peaked"
    assert verdicts["piqa"] in ("smooth", "flat")
    lam = t[t.task == "lambada_openai"].iloc[0]
    assert lam.companion_verdict is not None   # ppl companion classified alongside


def test_pythia_core_tasks_across_sizes_are_not_emergent(shared_data):
    df = _pythia_rows(shared_data, ["70m", "160m", "410m", "1b-bf16", "1.4b", "2.8b", "6.9b",
                                    "12b"])
    t = emergence_table(df, across="sizes", tasks=["lambada_openai", "piqa", "arc_easy",
                                                   "winogrande", "sciq"], n_boot=0)
    assert set(t.verdict) <= {"smooth"}, t[["task", "verdict", "explanation"]].to_string()
    # every verdict carries its sensitivity line: the verdicts at 1, 2 and 4 median gaps
    assert t["sensitivity"].str.match(r"sharpness threshold [\d.]+ / [\d.]+ / [\d.]+ decades: "
                                      r"\w[\w-]* / \w[\w-]* / \w[\w-]*$").all()
    assert t["explanation"].str.contains("Sensitivity: ").all()


def test_brier_companion_from_per_sample_log_likelihoods():
    from evalsuite.scaling import brier_rows

    rows = pd.DataFrame({"cell_key": ["c"], "task": ["t"], "metric": ["acc"], "value": [0.5],
                         "stderr": [0.1], "n_samples": [3], "is_primary": [True],
                         "chance": [0.5], "higher_is_better": [True]})
    lls = [[0.0, np.log(3.0)], [np.log(3.0), 0.0], [0.0, 0.0]]   # p = (1/4, 3/4), (3/4, 1/4), 1/2
    samples = {"c": pd.DataFrame({"loglikelihoods": lls, "target": ["1", "1", "0"]})}
    out = brier_rows(rows, samples).iloc[0]
    # per item: 2 (1/4)^2 = 0.125; 2 (3/4)^2 = 1.125; 2 (1/2)^2 = 0.5
    assert out["metric"] == "brier" and not out["higher_is_better"]
    assert out["value"] == pytest.approx((0.125 + 1.125 + 0.5) / 3)
    assert out["n_samples"] == 3


def test_rows_at_one_x_are_one_point():
    """Several precisions of one size share an x: they are averaged, not read as a dip."""
    xs = 10.0 ** np.arange(18, 24)
    ys = np.array([.30, .35, .40, .45, .50, .55])
    r = classify_curve(np.repeat(xs, 2), np.repeat(ys, 2) + np.tile([.03, -.03], 6),
                       np.full(12, .01), chance=.25, n_boot=0)
    assert r.verdict == "smooth" and r.dips is None and r.n_points == 6, r.explanation


def test_a_companion_that_misses_the_onset_cannot_call_a_metric_artifact():
    x = 10.0 ** np.arange(18, 26)
    y = np.array([.25, .25, .26, .25, .70, .72, .73, .74])
    r = classify_curve(x, y, np.full(8, .01), chance=.25, n_boot=0,
                       companion=(x[4:], np.array([-2., -1.9, -1.8, -1.7]), np.full(4, .01)),
                       companion_metric="logprob")
    assert r.verdict == "emergent" and "cannot check it" in r.explanation
    unknown = classify_curve(x, y, np.full(8, .01), n_boot=0)
    assert "lowest score; chance unknown" in unknown.explanation
