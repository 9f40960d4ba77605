"""Observational scaling (Ruan, Maddison & Hashimoto 2024): capability space and family efficiency.

Figures are checked against independent computations: numpy's eigendecomposition of the
covariance matrix for the PCA (our code uses an SVD of the centred matrix), closed-form OLS
(numpy.polyfit and scipy.stats.linregress) for the per-family lines. Real data is read in place
from ../shared/data/obsscaling; the tests skip with the reason when it is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evalsuite.scaling.observational import (OBS_BENCHMARKS, CapabilityPCA, FamilyEfficiency,
                                             ObsDataError, SigmoidRegression, check_flops,
                                             impute_low_rank,
                                             select_paper_models, select_preregistered,
                                             standardize_frame)
from tests.conftest import shared_data_path


@pytest.fixture(scope="module")
def base_frame():
    path = shared_data_path("obsscaling", "base_llm_benchmark_eval.csv")
    return standardize_frame(pd.read_csv(path), source=str(path))


@pytest.fixture(scope="module")
def paper(base_frame):
    return select_paper_models(base_frame)


@pytest.fixture(scope="module")
def paper_pca(paper):
    return CapabilityPCA(n_components=3).fit(paper)


def test_imports_without_torch():
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('torch blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import evalsuite.scaling.observational\n"
            "assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_paper_sample_and_flops(base_frame, paper):
    # PROVENANCE.md: 148 rows; the paper's sample is 77 models in 21 families; 20 pre-registered.
    assert len(base_frame) == 148
    assert len(paper) == 77 and paper["family"].nunique() == 21
    assert len(select_preregistered(base_frame)) == 20
    # FLOPs (1E21) is exactly 6·N·D: our compute_flops agrees on every row that has both.
    assert check_flops(base_frame).empty
    assert base_frame["compute_flops"].notna().sum() == 148 - 25
    llama7 = base_frame.set_index("model").loc["meta-llama/Llama-2-7b-hf", "compute_flops"]
    assert llama7 == pytest.approx(6 * 7e9 * 2e12)


def test_pca_complete_cases_matches_eigh(paper):
    """Without missing values no imputation runs: EVR and loadings equal eigh of the covariance."""
    complete = paper.dropna(subset=list(OBS_BENCHMARKS)).reset_index(drop=True)
    fit = CapabilityPCA(n_components=3).fit(complete)
    assert fit.n_imputed == 0
    x = complete[list(OBS_BENCHMARKS)].to_numpy(float)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    np.testing.assert_allclose(fit.explained_variance, evals[:3], rtol=1e-9)
    np.testing.assert_allclose(fit.explained_variance_ratio, evals[:3] / evals.sum(), rtol=1e-9)
    for i in range(3):
        v = evecs[:, i] * np.sign(evecs[:, i].sum())  # same orientation rule: loadings sum >= 0
        np.testing.assert_allclose(fit.components[i], v, atol=1e-9)
    # scores are projections of the centred data
    np.testing.assert_allclose(fit.train_scores, (x - x.mean(0)) @ fit.components.T, atol=1e-12)


def test_pca_paper_sample_figures(paper, paper_pca):
    """The 77 paper models (6 missing scores: ARC-C 2 for Llama-3, HumanEval 4 for Falcon), K = 3.

    Independent check: with eigh of the completed covariance, the imputed entries are a fixed
    point of the regularised rank-3 reconstruction (scores shrunk by (s² - n·σ²)/s², σ² the
    mean left-over eigenvalue per dimension), observed entries are untouched, and the same eigh
    gives the explained variance and loadings. Figures: PC1 explains 79.9 % of the variance,
    PC2 12.3 %, PC3 4.5 % (96.7 % together; the paper reports ~97 % for three PCs). All PC1
    loadings are positive (a general capability axis), largest on GSM8K (0.555) and MMLU (0.450);
    PC2 contrasts HellaSwag/ARC/Winograd (+) with HumanEval/GSM8K (-); PC3 is mostly HumanEval
    (+0.81). Imputed: Llama-3-70B/8B ARC-C 0.696/0.606, Falcon-180B/40B/7B/rw-1b HumanEval
    0.348/0.176/0.131/0.041.
    """
    fit = paper_pca
    x = paper[list(OBS_BENCHMARKS)].to_numpy(float)
    mask = np.isnan(x)
    assert fit.n_imputed == int(mask.sum()) == 6
    np.testing.assert_array_equal(fit.completed[~mask], x[~mask])
    c = fit.completed
    n, nb = c.shape
    evals, evecs = np.linalg.eigh(np.cov(c, rowvar=False))
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    sq = evals * (n - 1)                      # squared singular values of the centred matrix
    sigma2 = sq[3:].sum() / (n * (nb - 3))
    shrink = np.maximum(sq[:3] - n * sigma2, 0) / sq[:3]
    v3 = evecs[:, :3]
    recon = c.mean(0) + (c - c.mean(0)) @ v3 @ np.diag(shrink) @ v3.T
    np.testing.assert_allclose(c[mask], recon[mask], atol=1e-6)
    np.testing.assert_allclose(fit.explained_variance_ratio, evals[:3] / evals.sum(), rtol=1e-9)
    for i in range(3):
        np.testing.assert_allclose(fit.components[i], evecs[:, i] * np.sign(evecs[:, i].sum()),
                                   atol=1e-9)
    np.testing.assert_allclose(fit.explained_variance_ratio, [0.799, 0.123, 0.045], atol=1.5e-3)
    load = dict(zip(OBS_BENCHMARKS, fit.components[0]))
    assert all(v > 0 for v in load.values())
    assert load["GSM8K"] == pytest.approx(0.555, abs=2e-3)
    assert load["MMLU"] == pytest.approx(0.450, abs=2e-3)
    assert dict(zip(OBS_BENCHMARKS, fit.components[2]))["HumanEval"] == pytest.approx(0.809, abs=3e-3)
    np.testing.assert_allclose(np.sort(c[mask]), [0.041, 0.131, 0.176, 0.348, 0.606, 0.696], atol=2e-3)
    json.dumps(fit.summary())
    assert "PC1 0.799" in fit.report()


def test_unregularised_imputation_overfits(paper):
    """Why the imputation is regularised: plain rank-3 EM imputes a negative HumanEval score."""
    x = paper[list(OBS_BENCHMARKS)].to_numpy(float)
    plain, _ = impute_low_rank(x, rank=3, regularized=False)
    reg, _ = impute_low_rank(x, rank=3)
    mask = np.isnan(x)
    assert plain[mask].min() < -0.05
    assert reg[mask].min() > 0


def test_transform_projects_new_models_on_observed_benchmarks(base_frame, paper_pca):
    pre = select_preregistered(base_frame)
    scores = paper_pca.transform(pre)
    assert scores[["PC1", "PC2", "PC3"]].notna().all().all()
    # A model with every benchmark is projected exactly: (x - mean) @ Vᵀ.
    row = pre.dropna(subset=list(OBS_BENCHMARKS)).iloc[[0]]
    x = row[list(OBS_BENCHMARKS)].to_numpy(float)
    expect = (x - paper_pca.mean) @ paper_pca.components.T
    got = paper_pca.transform(row)[["PC1", "PC2", "PC3"]].to_numpy()
    np.testing.assert_allclose(got, expect, atol=1e-10)
    # Llama-3.1-405B is far more capable than any paper model: PC1 beyond the training range.
    s = scores.set_index("model")
    assert s.loc["meta-llama/Meta-Llama-3.1-405B-FP8", "PC1"] > paper_pca.train_scores[:, 0].max()


def test_family_efficiency_matches_closed_form_ols(paper, paper_pca):
    """Per-family slopes, intercepts, R² and t-intervals equal numpy.polyfit / scipy linregress.

    Figures (PC1 per decade of FLOPs): Llama-2 0.521, Qwen1.5 0.426, Llama 0.378, Falcon 0.286,
    Pythia 0.166, BLOOM 0.167, OPT 0.134: newer families turn compute into capability 3-4x more
    efficiently than the 2022 ones. Mistral and Mixtral have no public compute and are skipped.
    """
    scores = paper_pca.transform(paper)
    eff = FamilyEfficiency(level=0.9).fit(scores, paper)
    merged = scores.merge(paper[["model", "family", "compute_flops"]], on="model")
    checked = 0
    for ln in eff.lines:
        g = merged[(merged["family"] == ln.family) & merged["compute_flops"].notna()]
        x, y = np.log10(g["compute_flops"].to_numpy()), g[ln.component].to_numpy()
        slope, intercept = np.polyfit(x, y, 1)
        assert ln.slope == pytest.approx(slope, abs=1e-10)
        assert ln.intercept == pytest.approx(intercept, abs=1e-9)
        if len(x) >= 3:
            lr = stats.linregress(x, y)
            assert ln.r2 == pytest.approx(lr.rvalue ** 2, abs=1e-10)
            t = stats.t.ppf(0.95, len(x) - 2)
            assert ln.slope_lower == pytest.approx(lr.slope - t * lr.stderr, abs=1e-9)
            assert ln.intercept_upper == pytest.approx(lr.intercept + t * lr.intercept_stderr, abs=1e-8)
        checked += 1
    assert checked == 19 * 3
    assert {f for f, _ in eff.skipped} == {"Mistral", "Mixtral"}
    pc1 = {ln.family: ln.slope for ln in eff.lines if ln.component == "PC1"}
    expected = {"Llama-2": 0.521, "Qwen1.5": 0.426, "Llama": 0.378, "Falcon": 0.286,
                "Pythia": 0.166, "BLOOM": 0.167, "OPT": 0.134}
    for fam, v in expected.items():
        assert pc1[fam] == pytest.approx(v, abs=2e-3), fam
    assert eff.line("Pythia", "PC1").r2 > 0.98
    json.dumps(eff.summary())


def test_pca_validation_errors(paper):
    with pytest.raises(ObsDataError, match="absent"):
        CapabilityPCA().fit(paper.drop(columns=["MMLU"]))
    pct = paper.assign(MMLU=paper["MMLU"] * 100)
    with pytest.raises(ObsDataError, match="divide percentages by 100"):
        CapabilityPCA().fit(pct)
    with pytest.raises(ObsDataError, match="n_components"):
        CapabilityPCA(n_components=9).fit(paper)
    with pytest.raises(TypeError):
        CapabilityPCA(3)  # keyword-only hyperparameters


def test_standardize_frame_errors():
    with pytest.raises(ObsDataError, match="'Model'"):
        standardize_frame(pd.DataFrame({"x": [1]}), source="t.csv")
    raw = pd.DataFrame({"Model": ["a", "a"], "Model Family": ["f", "f"]})
    with pytest.raises(ObsDataError, match="duplicate"):
        standardize_frame(raw, source="t.csv")


def _synthetic(n=80, seed=1, a=-1.0, w=(3.0, -1.0), b=0.25, noise=0.01):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, len(w)))
    y = (1 - b) / (1 + np.exp(-(a + x @ np.array(w)))) + b + rng.normal(0, noise, n)
    return x, y


def test_sigmoid_recovers_known_parameters():
    x, y = _synthetic()
    fit = SigmoidRegression(chance=0.25, n_bootstrap=100, seed=0).fit(
        x, y, feature_names=["PC1", "PC2"])
    assert fit.intercept == pytest.approx(-1.0, abs=0.15)
    np.testing.assert_allclose(fit.weights, [3.0, -1.0], atol=0.3)
    assert fit.floor == pytest.approx(0.25, abs=0.02)
    pred = fit.predict(np.array([[0.0, 0.0], [10.0, 0.0]]))
    true0 = 0.75 / (1 + np.exp(1.0)) + 0.25
    assert pred.loc[0, "lower"] <= true0 <= pred.loc[0, "upper"]
    assert pred.loc[0, "obs_lower"] <= pred.loc[0, "lower"]  # new-observation interval is wider
    assert not pred.loc[0, "extrapolated"] and pred.loc[1, "extrapolated"]
    json.dumps(fit.summary())


def test_sigmoid_floor_bounded_by_chance():
    x, y = _synthetic(b=0.4)
    fit = SigmoidRegression(chance=0.25, n_bootstrap=0).fit(x, y, feature_names=["a", "b"])
    assert 0.0 <= fit.floor <= 0.25
    fit0 = SigmoidRegression(chance=0.0, n_bootstrap=0).fit(x, y, feature_names=["a", "b"])
    assert fit0.floor == 0.0
    with pytest.raises(ObsDataError, match="training models"):
        SigmoidRegression(n_bootstrap=0).fit(x[:3], y[:3], feature_names=["a", "b"])


def test_estimator_contract(paper):
    """One contract over every estimator: keyword-only frozen hyperparameters, fit returns an
    immutable result whose summary() is JSON-ready and report() is text."""
    import dataclasses

    from evalsuite.scaling.observational import ObservationalPredictor, split_by_flops

    x, y = _synthetic()
    pca = CapabilityPCA().fit(paper)
    target = pd.Series(np.linspace(0, 1, len(paper)), index=paper["model"], name="t")
    cases = [
        (CapabilityPCA, lambda e: e.fit(paper)),
        (FamilyEfficiency, lambda e: e.fit(pca.transform(paper), paper)),
        (SigmoidRegression, lambda e: dataclasses.replace(e, n_bootstrap=10).fit(
            x, y, feature_names=["a", "b"])),
        (ObservationalPredictor, lambda e: dataclasses.replace(
            e, regression=SigmoidRegression(n_bootstrap=10)).fit(
            paper, target, split_by_flops(paper, 84e21)[0])),
    ]
    for cls, fit in cases:
        with pytest.raises(TypeError):
            cls(1)
        est = cls()
        with pytest.raises(dataclasses.FrozenInstanceError):
            est.seed = 1
        fitted = fit(est)
        json.dumps(fitted.summary())
        assert isinstance(fitted.report(), str) and fitted.report()
        field = dataclasses.fields(fitted)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fitted, field, None)


def test_new_observation_interval_is_calibrated_in_range():
    """On synthetic data from the model itself, the 90 % new-observation interval covers about
    90 % of fresh draws inside the training range: 0.874 here (training residuals are a little
    smaller than fresh noise, so it runs slightly under nominal); the mean interval covers 0.14."""
    x, y = _synthetic(n=120, seed=3, noise=0.03)
    fit = SigmoidRegression(chance=0.25, n_bootstrap=100, seed=0).fit(
        x, y, feature_names=["a", "b"])
    xn, yn = _synthetic(n=400, seed=4, noise=0.03)
    inside = ((xn >= fit.x_min) & (xn <= fit.x_max)).all(axis=1)
    pred = fit.predict(xn[inside], level=0.9)
    assert not pred["extrapolated"].any()
    cover = ((yn[inside] >= pred["obs_lower"]) & (yn[inside] <= pred["obs_upper"])).mean()
    cover_mean = ((yn[inside] >= pred["lower"]) & (yn[inside] <= pred["upper"])).mean()
    assert 0.82 <= cover <= 0.97
    assert cover_mean < cover


def test_paper_preset_reproduces_the_authors_capability_space(paper):
    """``CapabilityPCA(**PAPER_PCA)`` follows ryoungj/ObsScaling (utils/data.py pca_impute and
    perform_pca with their defaults): standardise, rank-1 iterative PCA for the 6 missing cells
    (1000 iterations), clip to [0, 1], centred PCA, sklearn's sign. Expected values are what the
    authors' code computes on this table (the paper prints "~80%" for PC1 and "~97%" for three
    PCs; its family lines have R² > 0.9)."""
    from evalsuite.scaling.observational import PAPER_PCA

    fit = CapabilityPCA(**PAPER_PCA).fit(paper)
    np.testing.assert_allclose(fit.explained_variance_ratio, [0.8016, 0.1190, 0.0463], atol=6e-5)
    load = dict(zip(OBS_BENCHMARKS, fit.components[0]))
    expected = {"MMLU": .448, "ARC-C": .344, "HellaSwag": .379, "Winograd": .242,
                "TruthfulQA": .085, "GSM8K": .552, "XWinograd": .214, "HumanEval": .347}
    for bench, v in expected.items():
        assert load[bench] == pytest.approx(v, abs=6e-4), bench
    assert dict(zip(OBS_BENCHMARKS, fit.components[2]))["HumanEval"] == pytest.approx(.826, abs=6e-4)
    x = paper[list(OBS_BENCHMARKS)].to_numpy(float)
    imputed = dict(zip(paper["model"][np.isnan(x).any(axis=1)],
                       fit.completed[np.isnan(x).any(axis=1)][np.isnan(x)[np.isnan(x).any(axis=1)]]))
    np.testing.assert_allclose(np.sort(list(imputed.values())),
                               np.sort([.7272, .6147, .4182, .3306, .1964, .0935]), atol=6e-5)
    scores = fit.transform(paper)
    eff = FamilyEfficiency(level=0.9).fit(scores, paper)
    slopes = {ln.family: ln.slope for ln in eff.lines if ln.component == "PC1"}
    assert slopes["Llama-2"] == pytest.approx(0.520, abs=6e-4)
    assert slopes["Qwen1.5"] == pytest.approx(0.426, abs=6e-4)
    assert slopes["CodeLlama"] == pytest.approx(0.580, abs=6e-4)


def test_obs_pca_cli_preset_paper(capsys):
    from evalsuite.cli import main

    shared_data_path("obsscaling")
    assert main(["obs", "pca", "--preset", "paper", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["explained_variance_ratio"], [0.8016, 0.1190, 0.0463], atol=6e-5)
    assert out["impute_iterations"] == 1000
