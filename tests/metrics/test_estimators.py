"""RidgeEncoder and PLSEncoder: scikit-learn's estimator checks, himalaya's RidgeCV and
scikit-learn's PLSRegression as references, and the ridge/pls metrics' scores through them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from cortexalign.errors import InputError
from cortexalign.metrics import PLSEncoder, RidgeEncoder, score
from cortexalign.metrics._ridge import solve_ridge_cv
from cortexalign.neural import make_responses

ALPHAS = np.logspace(-2, 4, 13)


def _data(seed=0, s=60, d=40, n=6, t=15, noise=0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(s + t, d))
    w = rng.normal(size=(d, n)) * (rng.random(d) < 0.3)[:, None]
    y = x @ w + noise * rng.normal(size=(s + t, n)) + rng.normal(size=n)  # with intercepts
    return x[:s], y[:s], x[s:], y[s:]


@parametrize_with_checks([RidgeEncoder(alphas=np.logspace(-2, 3, 6), inner_folds=2, device="cpu"),
                          PLSEncoder(n_components=2)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("d", [40, 200])  # primal route (d <= s) and kernel route (s < d)
def test_ridge_encoder_equals_himalaya_ridgecv(d):
    from himalaya.backend import get_backend, set_backend
    from himalaya.ridge import RidgeCV

    x, y, xt, _ = _data(d=d)
    cv = KFold(5, shuffle=True, random_state=3)
    previous = get_backend().name
    set_backend("numpy")
    try:
        ref = RidgeCV(alphas=ALPHAS, fit_intercept=True, cv=cv,
                      solver_params={"local_alpha": True}).fit(x, y)
        ref_pred = ref.predict(xt)
    finally:
        set_backend(previous)
    enc = RidgeEncoder(alphas=ALPHAS, inner_folds=5, random_state=3, device="cpu").fit(x, y)
    np.testing.assert_allclose(enc.alpha_, np.asarray(ref.best_alphas_), rtol=1e-12)
    np.testing.assert_allclose(enc.coef_, np.asarray(ref.coef_).T, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(enc.intercept_, np.asarray(ref.intercept_), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(enc.predict(xt), ref_pred, rtol=1e-7, atol=1e-9)


def test_ridge_encoder_predicts_what_the_solver_predicts_and_takes_device_tensors():
    x, y, xt, yt = _data()
    fit = solve_ridge_cv(torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(xt), ALPHAS,
                         inner_folds=5, seed=1)
    enc = RidgeEncoder(alphas=ALPHAS, random_state=1, device="cpu").fit(x, y)
    np.testing.assert_allclose(enc.predict(xt), fit.pred_td.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(enc.alpha_, fit.alpha_n.numpy())
    on_tensors = RidgeEncoder(alphas=ALPHAS, random_state=1).fit(torch.as_tensor(x),
                                                                 torch.as_tensor(y))
    pred = on_tensors.predict(torch.as_tensor(xt))
    assert isinstance(pred, torch.Tensor)
    np.testing.assert_allclose(pred.numpy(), enc.predict(xt), rtol=1e-12, atol=1e-12)
    assert enc.score(xt, yt) > 0.5  # planted linear structure is recovered on new stimuli
    assert enc.get_params()["alphas"] is ALPHAS
    assert enc.set_params(inner_folds=3).inner_folds == 3


def test_ridge_encoder_one_target_and_bad_input():
    x, y, xt, _ = _data()
    enc = RidgeEncoder(alphas=ALPHAS, device="cpu").fit(x, y[:, 0])
    assert enc.coef_.shape == (x.shape[1],) and np.ndim(enc.intercept_) == 0
    assert enc.predict(xt).shape == (len(xt),)
    with pytest.raises(InputError, match="inner_folds"):
        RidgeEncoder(inner_folds=99, device="cpu").fit(x[:10], y[:10])
    with pytest.raises(InputError, match="alphas"):
        RidgeEncoder(alphas=[-1.0], device="cpu").fit(x, y)


def test_pls_encoder_equals_sklearn_and_caps_components():
    x, y, xt, _ = _data(s=30, d=8)
    enc = PLSEncoder(n_components=25).fit(x, y)
    assert enc.n_components_ == 8  # min(25, s - 1, d)
    ref = PLSRegression(n_components=8, scale=False).fit(x, y)
    np.testing.assert_allclose(enc.predict(xt), ref.predict(xt), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", ["ridge", "pls"])
def test_the_encoding_metrics_fit_the_estimators_fold_by_fold(metric):
    # the metric's per-neuroid r equals held-out predictions of the estimator, fold by fold
    x, y, _, _ = _data(s=50, n=4)
    ids = [f"s{i}" for i in range(len(x))]
    target = make_responses(y, ids)
    s = score(metric, x, target, n_folds=5, seed=2, device="cpu")
    pred = np.full(y.shape, np.nan)
    for fold, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=2).split(x)):
        enc = (RidgeEncoder(random_state=2 + fold, device="cpu") if metric == "ridge"
               else PLSEncoder())
        pred[te] = enc.fit(x[tr], y[tr]).predict(x[te])
    r = [np.corrcoef(pred[:, k], y[:, k])[0, 1] for k in range(y.shape[1])]
    np.testing.assert_allclose(s.extra["r"], r, rtol=1e-9, atol=1e-12)
