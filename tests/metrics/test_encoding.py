"""Ridge and PLS encoding vs scikit-learn and a closed-form ridge on the same splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import METRICS, score
from cortexalign.metrics._encoding import (
    ENCODERS,
    cross_validated_predictions,
    encoding_scores,
)
from cortexalign.neural import RDMSet, make_responses
from cortexalign.neural._reliability import split_half_reliability


def _data(rng, s=40, d=12, n=6, noise=1.0, reps=None):
    x = rng.normal(size=(s, d))
    w = rng.normal(size=(d, n))
    y = x @ w + 2.0
    if reps:
        y = y[:, :, None] + noise * rng.normal(size=(s, n, reps)) * np.arange(1, n + 1)[:, None]
    else:
        y = y + noise * rng.normal(size=(s, n))
    return x, y


def _outer(s, n_folds=4, seed=0):
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(s)))


def test_single_alpha_matches_sklearn_and_closed_form(rng):
    x, y = _data(rng)
    alpha = 3.7
    pred, _ = cross_validated_predictions(x, y, "ridge", n_folds=4, alphas=[alpha], inner_folds=3)
    for tr, te in _outer(len(x)):
        ref = Ridge(alpha=alpha).fit(x[tr], y[tr]).predict(x[te])
        np.testing.assert_allclose(pred[te], ref, atol=1e-9)
        xm, ym = x[tr].mean(0), y[tr].mean(0)
        xc = x[tr] - xm
        beta = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y[tr] - ym))
        np.testing.assert_allclose(pred[te], (x[te] - xm) @ beta + ym, atol=1e-9)


def test_per_neuroid_alpha_matches_explicit_sklearn_loop(rng):
    x, y = _data(rng, noise=np.array([0.1, 1, 3, 10, 30, 100]))
    alphas = np.logspace(-2, 4, 7)
    pred, chosen = cross_validated_predictions(x, y, "ridge", n_folds=4, seed=5, alphas=alphas,
                                               inner_folds=3)
    for fold, (tr, te) in enumerate(_outer(len(x), 4, 5)):
        inner = list(KFold(3, shuffle=True, random_state=5 + fold).split(x[tr]))
        for j in range(y.shape[1]):
            cv = [np.mean([-np.mean((Ridge(alpha=a).fit(x[tr][i], y[tr][i, j]).predict(x[tr][v])
                                     - y[tr][v, j]) ** 2) for i, v in inner]) for a in alphas]
            best = alphas[int(np.argmax(cv))]
            assert chosen[fold, j] == pytest.approx(best)
            ref = Ridge(alpha=best).fit(x[tr], y[tr, j]).predict(x[te])
            np.testing.assert_allclose(pred[te, j], ref, atol=1e-8)
    assert len(set(chosen.ravel().round(6))) > 1  # the penalties do differ between neuroids


def test_leave_one_out_inner_cv_matches_sklearn_ridgecv(rng):
    x, y = _data(rng, s=40, noise=np.array([0.1, 1, 3, 10, 30, 100]))
    alphas = np.logspace(-2, 4, 13)
    pred, chosen = cross_validated_predictions(x, y, "ridge", n_folds=4, alphas=alphas,
                                               inner_folds=30)  # 30 training stimuli: LOO
    for fold, (tr, te) in enumerate(_outer(40)):
        ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[tr], y[tr])
        np.testing.assert_allclose(chosen[fold], ref.alpha_)
        np.testing.assert_allclose(pred[te], ref.predict(x[te]), atol=1e-8)


def test_pls_matches_sklearn_on_the_same_splits(rng):
    x, y = _data(rng, s=60, d=30)
    pred, _ = cross_validated_predictions(x, y, "pls", n_folds=3, n_components=25)
    for tr, te in _outer(60, 3):
        ref = PLSRegression(n_components=25, scale=False).fit(x[tr], y[tr]).predict(x[te])
        np.testing.assert_allclose(pred[te], ref, atol=1e-8)


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_held_out_stimulus_never_leaks(rng, encoder):
    x, y = _data(rng)
    pred, _ = cross_validated_predictions(x, y, encoder, n_folds=4)
    for _tr, te in _outer(len(x)):
        y2 = y.copy()
        y2[te] = 1e6  # a fold's own responses must not move its predictions
        pred2, _ = cross_validated_predictions(x, y2, encoder, n_folds=4)
        np.testing.assert_allclose(pred2[te], pred[te], atol=1e-6)


def test_encoding_scores_reference(rng):
    y, p = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    r, r2 = encoding_scores(y, p)
    for j in range(4):
        assert r[j] == pytest.approx(np.corrcoef(y[:, j], p[:, j])[0, 1])
        assert r2[j] == pytest.approx(1 - ((y[:, j] - p[:, j]) ** 2).sum()
                                      / ((y[:, j] - y[:, j].mean()) ** 2).sum())


@pytest.mark.parametrize("name", ["ridge", "pls"])
def test_metric_contract_and_properties(rng, name):
    assert METRICS.entry(name).meta["target"] == "responses"
    x, y = _data(rng, s=60, d=8, noise=0.05)
    ids = [f"s{i}" for i in range(60)]
    good = score(name, x, make_responses(y, ids))
    assert good.value > 0.95 and good.n_stimuli == 60 and len(good.extra["r"]) == 6
    null = score(name, x, make_responses(rng.normal(size=(60, 40)), ids))
    assert abs(null.value) < 0.2


def test_normalize_divides_by_sqrt_reliability(rng):
    x, y = _data(rng, s=50, d=6, noise=0.3, reps=4)
    da = make_responses(y, [f"s{i}" for i in range(50)])
    raw = METRICS.get("ridge")(x, da, n_splits=10, seed=1)
    norm = METRICS.get("ridge")(x, da, normalize=True, n_splits=10, seed=1)
    rel = split_half_reliability(y, n_splits=10, seed=1)
    np.testing.assert_allclose(norm.extra["r_normalized"], raw.extra["r"] / np.sqrt(rel))
    assert norm.value == pytest.approx(np.median(raw.extra["r"] / np.sqrt(rel)))
    assert raw.ceiling_low == pytest.approx(np.median(np.sqrt(rel)))
    bs = METRICS.get("ridge")(x, da, ceiling_transform="brainscore", normalize=True, n_splits=10,
                              seed=1)
    np.testing.assert_allclose(bs.extra["r_normalized"], raw.extra["r"] / rel)


def test_bootstrap_interval_brackets_value(rng):
    x, y = _data(rng, s=40, n=20, noise=3.0)
    s = METRICS.get("ridge")(x, make_responses(y, [f"s{i}" for i in range(40)]), n_bootstrap=200)
    assert s.ci_low <= s.value <= s.ci_high


def test_backend_restored_and_bad_inputs(rng):
    from himalaya.backend import get_backend, set_backend

    set_backend("numpy")
    x, y = _data(rng)
    da = make_responses(y, [f"s{i}" for i in range(40)])
    METRICS.get("ridge")(x, da)
    assert get_backend().name == "numpy"
    with pytest.raises(InputError, match="stimuli"):
        METRICS.get("ridge")(x[:30], da)
    with pytest.raises(InputError, match="NaN"):
        METRICS.get("ridge")(np.where(x > 2, np.nan, x), da)
    d = np.abs(rng.normal(size=(40, 40)))
    rdms = RDMSet((d + d.T) * (1 - np.eye(40)), [f"s{i}" for i in range(40)])
    with pytest.raises(InputError, match="responses"):
        METRICS.get("ridge")(x, rdms)
    with pytest.raises(InputError, match="repetition"):
        METRICS.get("ridge")(x, da, normalize=True)
    with pytest.raises(UnknownNameError):
        METRICS.get("ridge")(x, da, normalize=True, ceiling_transform="sqrt")
    with pytest.raises(UnknownNameError):
        cross_validated_predictions(x, y, "lasso")
    with pytest.raises(InputError, match="n_folds"):
        cross_validated_predictions(x, y, n_folds=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("solver", ["eigh", "himalaya"])
def test_gpu_matches_cpu(rng, solver):
    """On CUDA the folds are sliced from device tensors (DEVICE_ENCODERS); same predictions."""
    x, y = _data(rng)
    cpu, a_cpu = cross_validated_predictions(x, y, device="cpu", solver=solver)
    gpu, a_gpu = cross_validated_predictions(x, y, device="cuda", solver=solver)
    np.testing.assert_allclose(gpu, cpu, atol=1e-8)
    # the chosen penalties are the same grid values up to float rounding of the grid
    np.testing.assert_allclose(a_gpu, a_cpu, rtol=1e-12)
