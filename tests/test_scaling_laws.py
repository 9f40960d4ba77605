"""Scaling laws recover known parameters from noisy synthetic data; the fit contract holds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from evalsuite.scaling import (FitError, Prediction, ScalingFit, ScalingLaw, fit_scaling_law,
                               get_law)


def frame_from(x, y, se, *, task="t", metric="acc", chance=0.25, higher=True, n=None):
    return pd.DataFrame({
        "checkpoint_id": [f"s-{i}@final:fp32" for i in range(len(x))], "series": "s",
        "size": [str(i) for i in range(len(x))], "step": None, "n_params": x,
        "compute_flops": np.asarray(x, float) * 6e9, "tokens_seen": 1e9, "task": task,
        "metric": metric, "is_primary": True, "value": y, "stderr": se, "n_samples": n,
        "chance": chance, "higher_is_better": higher})


X = np.logspace(6, 10, 12)


def test_power_law_recovers_loss_parameters():
    rng = np.random.default_rng(1)
    u = np.log10(X)
    E, A, alpha = 1.7, 2.5, 0.35
    y = E + A * 10 ** (-alpha * (u - u.min())) + rng.normal(0, 0.01, len(X))
    fit = ScalingLaw(form="power", x="n_params", n_boot=0).fit(
        frame_from(X, y, 0.01, metric="loss", higher=False, chance=None))
    assert fit.params["E"] == pytest.approx(E, abs=0.08)
    assert fit.params["A"] == pytest.approx(A, rel=0.08)
    assert fit.params["alpha"] == pytest.approx(alpha, rel=0.1)
    assert fit.sign == 1.0 and not fit.bounded


def test_power_law_recovers_score_ceiling():
    rng = np.random.default_rng(2)
    u = np.log10(X)
    E, A, alpha = 0.82, 0.5, 0.4
    y = E - A * 10 ** (-alpha * (u - u.min())) + rng.normal(0, 0.005, len(X))
    fit = ScalingLaw(form="power", x="n_params", n_boot=0).fit(frame_from(X, y, 0.005))
    assert fit.params["E"] == pytest.approx(E, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(alpha, rel=0.15)


def test_sigmoid_recovers_floor_below_chance_and_ceiling_below_one():
    rng = np.random.default_rng(3)
    u = np.log10(X)
    floor, ceiling, k, u0 = 0.20, 0.71, 2.0, 8.0   # floor under chance 0.25, ceiling < 1
    y = floor + (ceiling - floor) / (1 + np.exp(-k * (u - u0))) + rng.normal(0, 0.005, len(X))
    fit = ScalingLaw(form="sigmoid", x="n_params", n_boot=0).fit(frame_from(X, y, 0.005))
    assert fit.params["floor"] == pytest.approx(floor, abs=0.03)
    assert fit.params["ceiling"] == pytest.approx(ceiling, abs=0.03)
    assert fit.params["k"] == pytest.approx(k, rel=0.25)
    assert fit.params["u0"] == pytest.approx(u0, abs=0.15)


def test_linear_recovers_slope():
    rng = np.random.default_rng(4)
    u = np.log10(X)
    y = 0.3 + 0.05 * (u - u.min()) + rng.normal(0, 0.004, len(X))
    fit = ScalingLaw(form="linear", x="n_params", n_boot=0).fit(frame_from(X, y, 0.004))
    assert fit.params["b"] == pytest.approx(0.05, abs=0.005)


def test_sigmoid_slope_is_bounded_no_step_function():
    y = np.where(X < 1e8, 0.25, 0.8)  # a step: the fitted slope stays within its bound
    fit = ScalingLaw(form="sigmoid", x="n_params", n_boot=0).fit(frame_from(X, y, 0.01))
    from evalsuite.scaling.laws import MAX_SIGMOID_SLOPE
    assert fit.params["k"] <= MAX_SIGMOID_SLOPE + 1e-9


@pytest.mark.parametrize("form", ["power", "sigmoid", "linear", "flat"])
def test_contract_every_form(form):
    rng = np.random.default_rng(5)
    u = np.log10(X)
    y = 0.8 - 0.5 * 10 ** (-0.3 * (u - u.min())) + rng.normal(0, 0.01, len(X))
    law = ScalingLaw(form=form, x="n_params", n_boot=30, seed=1)
    assert law.get_params()["form"] == form          # constructor only stores
    fit = law.fit(frame_from(X, y, 0.01, n=1000))
    assert isinstance(fit, ScalingFit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.form = "x"
    json.dumps(fit.summary())                         # JSON-ready
    assert fit.task in fit.report()
    p = fit.predict(1e12, level=0.9)
    assert isinstance(p, Prediction) and p.extrapolated and p.distance == pytest.approx(2.0)
    assert p.lower <= p.mean <= p.upper
    inside = fit.predict(X[3])
    assert not inside.extrapolated and inside.distance == 0.0
    arr = fit.predict(np.array([1e7, 1e9, 1e11]))
    assert arr.mean.shape == (3,) and list(arr.extrapolated) == [False, False, True]
    wide = fit.predict(1e12, level=0.99)
    assert wide.upper - wide.lower >= p.upper - p.lower - 1e-9


def test_interval_widens_with_extrapolation():
    rng = np.random.default_rng(6)
    u = np.log10(X)
    y = 0.8 - 0.5 * 10 ** (-0.3 * (u - u.min())) + rng.normal(0, 0.01, len(X))
    fit = ScalingLaw(form="power", x="n_params", n_boot=60).fit(frame_from(X, y, 0.01))
    near, far = fit.predict(2e10), fit.predict(1e14)
    assert far.upper - far.lower > near.upper - near.lower


def test_validation_errors_name_field_and_fix():
    y = np.linspace(0.3, 0.6, len(X))
    bad = frame_from(X, y, 0.01)
    bad.loc[2, "value"] = np.nan
    with pytest.raises(FitError, match="'value'.*dropna"):
        ScalingLaw(x="n_params").fit(bad)
    with pytest.raises(FitError, match="at least 4 distinct"):
        ScalingLaw(form="power", x="n_params").fit(frame_from(X[:3], y[:3], 0.01))
    two = pd.concat([frame_from(X, y, 0.01, task="a"), frame_from(X, y, 0.01, task="b")])
    with pytest.raises(FitError, match="several tasks"):
        ScalingLaw(x="n_params").fit(two)
    with pytest.raises(FitError, match="not a known axis"):
        ScalingLaw(x="params").fit(frame_from(X, y, 0.01))
    with pytest.raises(ValueError, match="unknown scaling-law form"):
        ScalingLaw(form="cubic").fit(frame_from(X, y, 0.01))
    zero = frame_from(X, y, 0.01)
    zero.loc[0, "n_params"] = 0
    with pytest.raises(FitError, match="> 0"):
        ScalingLaw(x="n_params").fit(zero)


def test_bootstrap_over_items_uses_samples():
    rng = np.random.default_rng(7)
    u = np.log10(X)
    p = 0.8 - 0.5 * 10 ** (-0.3 * (u - u.min()))
    n = 200
    samples = pd.concat([pd.DataFrame({"checkpoint_id": f"s-{i}@final:fp32",
                                       "value": (rng.random(n) < pi).astype(float)})
                         for i, pi in enumerate(p)])
    y = samples.groupby("checkpoint_id", sort=False)["value"].mean().to_numpy()
    se = np.sqrt(y * (1 - y) / n)
    fit = fit_scaling_law(frame_from(X, y, se, n=n), samples=samples, form="power",
                          x="n_params", n_boot=40)
    assert "items from samples" in fit.bootstrap
    lo, hi = fit.param_intervals()["E"]
    assert lo <= fit.params["E"] <= hi


def test_get_law_lists_forms():
    assert get_law("power").n_params == 3
    with pytest.raises(ValueError):
        get_law("nope")


def test_scaling_imports_without_torch():
    code = ("import sys, evalsuite.scaling, evalsuite.scaling.backtest, "
            "evalsuite.scaling.predict, evalsuite.scaling.emergence, evalsuite.importer; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_selection_by_bic_picks_the_true_form():
    rng = np.random.default_rng(8)
    u = np.log10(X)
    y_line = 0.3 + 0.05 * (u - u.min()) + rng.normal(0, 0.003, len(X))
    fit = ScalingLaw(form="bic", x="n_params", n_boot=0).fit(frame_from(X, y_line, 0.003))
    assert fit.form in ("linear", "power")  # a power law with small curvature is a line too
    y_flat = 0.25 + 0.003 * np.array([1, -1, -1, 1] * 3)   # no trend in any direction
    assert ScalingLaw(form="bic", x="n_params", n_boot=0).fit(
        frame_from(X, y_flat, 0.003)).form == "flat"
    fit = ScalingLaw(form="aicc", x="n_params", n_boot=0).fit(frame_from(X[:3], y_flat[:3], 0.003))
    assert fit.form in ("flat", "linear")


def test_size_token_law_recovers_parameters():
    from evalsuite.scaling import SizeTokenLaw

    rng = np.random.default_rng(9)
    n = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9], 6)
    d = np.tile([1e9, 3e9, 1e10, 3e10, 1e11, 3e11], 5)
    E, A, alpha, B, beta = 0.85, 0.3, 0.35, 0.2, 0.3
    y = E - A * (n / 1e7) ** -alpha - B * (d / 1e9) ** -beta + rng.normal(0, 0.003, len(n))
    frame = pd.DataFrame({"n_params": n, "tokens_seen": d, "value": y, "stderr": 0.003,
                          "n_samples": 2000})
    fit = SizeTokenLaw(n_boot=10).fit(frame)
    assert fit.params["E"] == pytest.approx(E, abs=0.03)
    assert fit.params["alpha"] == pytest.approx(alpha, rel=0.2)
    assert fit.params["beta"] == pytest.approx(beta, rel=0.2)
    p = fit.predict([1e10], 3e11)
    assert p.extrapolated[0] and p.distance[0] == pytest.approx(1.0)
    assert p.lower[0] <= p.mean[0] <= p.upper[0]
