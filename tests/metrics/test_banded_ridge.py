"""Banded ridge (``_banded.solve_banded_ridge_cv``, ``banded_ridge``) vs himalaya and itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import banded_ridge, solve_banded_ridge_cv
from cortexalign.metrics._banded import banded_gammas, r2_split
from cortexalign.metrics._encoding import encoding_scores
from cortexalign.metrics._ridge import solve_ridge_cv
from cortexalign.neural import make_responses

ALPHAS = np.logspace(-2, 4, 7)


def _spaces(rng, s=60, t=9, ds=(30, 80, 10), n=15, drive=(1.0, 0.5, 0.0)):
    """Offset spaces; targets a mix of the spaces (weights ``drive``) + noise of varied size."""
    xs = [rng.normal(size=(s + t, d)) / np.sqrt(1 + np.arange(d)) + 0.3 for d in ds]
    y = sum(w * x @ rng.normal(size=(x.shape[1], n)) for w, x in zip(drive, xs, strict=True))
    y = y + rng.normal(size=(s + t, n)) * np.logspace(-1, 0.5, n) + 2.0
    return [x[:s] for x in xs], y[:s], [x[s:] for x in xs]


def _t(arrays):
    return [torch.as_tensor(a) for a in arrays]


def _himalaya(xs_sd, y_sn, xs_td, gammas, alphas, inner_folds, seed):
    from himalaya.backend import get_backend, set_backend
    from himalaya.ridge import BandedRidgeCV

    previous = get_backend().name
    set_backend("numpy")
    try:
        model = BandedRidgeCV(groups="input", fit_intercept=True,
                              cv=KFold(inner_folds, shuffle=True, random_state=seed),
                              solver_params=dict(n_iter=np.asarray(gammas), alphas=alphas,
                                                 progress_bar=False, warn=False))
        model.fit(xs_sd, y_sn)
        pred = model.predict(xs_td)
    finally:
        set_backend(previous)
    gamma_nm = (np.exp(model.deltas_) * model.best_alphas_).T
    edges = np.cumsum([0] + [x.shape[1] for x in xs_sd])
    # per-space parts of the prediction: centred test features times that space's coefficients
    split = np.stack([(xt - xs.mean(0)) @ model.coef_[a:b] for xs, xt, a, b
                      in zip(xs_sd, xs_td, edges[:-1], edges[1:], strict=True)])
    return pred, split, gamma_nm, model.best_alphas_


@pytest.mark.parametrize("shape", [dict(s=60, ds=(30, 80, 10)), dict(s=80, ds=(12, 20))],
                         ids=["s<sum(d)", "s>sum(d)"])
def test_matches_himalaya_banded_ridge_cv(rng, shape):
    xs_sd, y_sn, xs_td = _spaces(rng, **shape, drive=(1.0, 0.5, 0.0)[:len(shape["ds"])])
    m = len(xs_sd)
    # near one-hot rows, not exact ones: BandedRidgeCV scales the features by sqrt(gamma) in place
    # and divides them back, so a gamma of 0 turns them into NaN (himalaya 0.4.x)
    near_one_hot = (np.eye(m) * 0.97 + 0.01) / (0.97 + 0.01 * m)
    gammas = np.vstack([banded_gammas(10, m, seed=1), near_one_hot])
    fit = solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td), alphas=ALPHAS,
                                gammas=gammas, inner_folds=4, seed=5)
    pred, split, gamma_nm, alpha_n = _himalaya(xs_sd, y_sn, xs_td, gammas, ALPHAS, 4, 5)
    # himalaya returns log(gamma / alpha): map its gammas back to the candidate rows
    rows = [int(np.argmin(np.abs(gammas - g).sum(1))) for g in gamma_nm]
    np.testing.assert_array_equal(fit.gamma_nm.numpy(), gammas[rows])
    np.testing.assert_allclose(fit.gamma_nm.numpy(), gamma_nm, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit.alpha_n.numpy(), alpha_n, rtol=1e-9)
    np.testing.assert_allclose(fit.pred_tn.numpy(), pred, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fit.split_mtn.numpy(), split, rtol=0, atol=1e-6)


def test_candidates_are_himalayas_dirichlet_draws():
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import generate_dirichlet_samples

    set_backend("numpy")
    for n_iter, m, conc, seed in [(7, 3, [0.1, 1.0], 3), (20, 4, [0.5], 0), (5, 2, [1.0, np.inf], 9)]:
        ref = generate_dirichlet_samples(n_iter, m, concentration=conc, random_state=seed)
        ref[0] = 1 / m  # what solve_*_random_search does with an int n_iter
        np.testing.assert_array_equal(banded_gammas(n_iter, m, conc, seed), ref)


def test_n_iter_draws_the_same_candidates_as_himalaya(rng):
    xs_sd, y_sn, xs_td = _spaces(rng, s=40, ds=(15, 25), n=6, drive=(1.0, 0.3))
    fit = solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td), alphas=ALPHAS,
                                n_iter=6, inner_folds=3, seed=4)
    np.testing.assert_array_equal(fit.gammas_cm.numpy(), banded_gammas(6, 2, (0.1, 1.0), 4))
    np.testing.assert_allclose(fit.gammas_cm.numpy()[0], [0.5, 0.5])


def test_one_space_is_solve_ridge_cv(rng):
    xs_sd, y_sn, xs_td = _spaces(rng, s=50, ds=(70,), n=10, drive=(1.0,))
    fit = solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td), alphas=ALPHAS,
                                n_iter=1, inner_folds=5, seed=2)
    ref = solve_ridge_cv(torch.as_tensor(xs_sd[0]), torch.as_tensor(y_sn),
                         torch.as_tensor(xs_td[0]), ALPHAS, inner_folds=5, seed=2)
    np.testing.assert_allclose(fit.pred_tn.numpy(), ref.pred_td.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fit.alpha_n.numpy(), ref.alpha_n.numpy())
    np.testing.assert_allclose(-fit.cv_score_n.numpy(), ref.cv_mse_n.numpy(), rtol=1e-9)
    assert torch.all(fit.gamma_nm == 1.0)


def test_split_sums_to_the_prediction_and_chunks_and_float32_agree(rng):
    xs_sd, y_sn, xs_td = _spaces(rng, s=45, ds=(20, 30, 8), n=9)
    args = (_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td))
    fit = solve_banded_ridge_cv(*args, alphas=ALPHAS, n_iter=8, inner_folds=3)
    np.testing.assert_allclose(fit.split_mtn.sum(0) + fit.mean_n, fit.pred_tn, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fit.mean_n.numpy(), y_sn.mean(0))
    chunked = solve_banded_ridge_cv(*args, alphas=ALPHAS, n_iter=8, inner_folds=3, target_chunk=2)
    np.testing.assert_array_equal(chunked.gamma_nm, fit.gamma_nm)
    np.testing.assert_allclose(chunked.pred_tn, fit.pred_tn, rtol=0, atol=1e-12)
    f32 = solve_banded_ridge_cv(*args, alphas=ALPHAS, n_iter=8, inner_folds=3, dtype="float32")
    assert f32.pred_tn.dtype == torch.float64
    np.testing.assert_allclose(f32.pred_tn, fit.pred_tn, rtol=0, atol=1e-3 * np.abs(y_sn).max())


def test_prediction_is_the_explicit_weighted_kernel_ridge(rng):
    """Refit check without CV: one candidate, one alpha -> the closed form with scaled features."""
    xs_sd, y_sn, xs_td = _spaces(rng, s=30, ds=(10, 40), n=4, drive=(1.0, 1.0))
    gamma, alpha = np.array([0.8, 0.2]), 2.5
    fit = solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td), alphas=[alpha],
                                gammas=gamma[None], inner_folds=3)
    mu = [x.mean(0) for x in xs_sd]
    k_ss = sum(g * (x - m) @ (x - m).T for g, x, m in zip(gamma, xs_sd, mu, strict=True))
    w_sn = np.linalg.solve(k_ss + alpha * np.eye(30), y_sn - y_sn.mean(0))
    parts = [g * (xt - m) @ (x - m).T @ w_sn for g, x, xt, m in zip(gamma, xs_sd, xs_td, mu,
                                                                      strict=True)]
    np.testing.assert_allclose(fit.split_mtn.numpy(), np.stack(parts), rtol=0, atol=1e-9)


def test_gamma_concentrates_on_the_space_that_drives_the_targets(rng):
    xs_sd, y_sn, xs_td = _spaces(rng, s=120, ds=(20, 20, 20), n=30, drive=(1.0, 0.0, 0.0))
    fit = solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td), alphas=ALPHAS,
                                n_iter=30, inner_folds=5)
    share = fit.gamma_nm[:, 0].numpy()
    assert np.mean(share > 0.5) >= 0.8, share
    assert np.median(share) > 0.8, share


def _responses(rng, y_sn):
    return make_responses(y_sn, [f"im{i}" for i in range(len(y_sn))])


def test_banded_ridge_scores_and_r2_split(rng):
    xs_sd, y_sn, _ = _spaces(rng, s=90, ds=(15, 40), n=12, drive=(1.0, 0.0))
    res = banded_ridge({"a": xs_sd[0], "b": xs_sd[1]}, _responses(rng, y_sn), n_folds=3,
                       n_iter=10, inner_folds=3)
    assert res.space_names == ("a", "b") and res.gammas.shape == (3, 12, 2)
    assert res.alphas.shape == (3, 12) and res.candidates.shape == (10, 2)
    assert np.median(res.r2_split["a"]) > 0.3 and np.median(res.r2_split["a"]) > np.median(
        res.r2_split["b"]) + 0.2
    # the held-out predictions reassembled by hand from the solver (same folds, same seeds)
    pred, parts = np.zeros_like(y_sn), np.zeros((2, *y_sn.shape))
    for k, (tr, te) in enumerate(KFold(3, shuffle=True, random_state=0).split(y_sn)):
        z = [((x[tr] - x[tr].mean(0)) / x[tr].std(0), (x[te] - x[tr].mean(0)) / x[tr].std(0))
             for x in xs_sd]
        fit = solve_banded_ridge_cv(_t([p[0] for p in z]), torch.as_tensor(y_sn[tr]),
                                    _t([p[1] for p in z]), alphas=np.logspace(-3, 7, 21),
                                    gammas=res.candidates, inner_folds=3, seed=k)
        pred[te], parts[:, te] = fit.pred_tn.numpy(), fit.split_mtn.numpy()
        np.testing.assert_array_equal(res.gammas[k], fit.gamma_nm.numpy())
    r, r2 = encoding_scores(y_sn, pred)
    np.testing.assert_allclose(res.r, r, atol=1e-10)
    np.testing.assert_allclose(res.r2, r2, atol=1e-10)
    # the split is himalaya's r2_score_split of the parts (spaces, then each fold's intercept
    # minus the mean response) on centred responses, and its components sum to the plain R^2
    from himalaya.backend import set_backend
    from himalaya.scoring import r2_score_split

    set_backend("numpy")
    offset = np.zeros_like(y_sn)
    for tr, te in KFold(3, shuffle=True, random_state=0).split(y_sn):
        offset[te] = y_sn[tr].mean(0) - y_sn.mean(0)
    ref = r2_score_split(y_sn - y_sn.mean(0), np.concatenate([parts, offset[None]]))
    got = np.stack([res.r2_split["a"], res.r2_split["b"], res.r2_intercept])
    np.testing.assert_allclose(got, ref, atol=1e-10)
    np.testing.assert_allclose(got.sum(0), r2, atol=1e-10)
    # one part holding the whole prediction gives the plain R^2
    np.testing.assert_allclose(r2_split(y_sn, (pred - y_sn.mean(0))[None])[0], r2, atol=1e-12)


@pytest.mark.parametrize("kwargs, parameter", [
    (dict(gammas=np.ones((3, 3))), "gammas"),
    (dict(gammas=-np.eye(2)), "gammas"),
    (dict(n_iter=0), "n_iter"),
    (dict(concentration=[0.0]), "concentration"),
    (dict(alphas=[-1.0]), "alphas"),
    (dict(inner_folds=1), "inner_folds"),
    (dict(target_chunk=0), "target_chunk"),
    (dict(dtype="int8"), "dtype"),
])
def test_solver_bad_inputs_name_the_parameter(rng, kwargs, parameter):
    xs_sd, y_sn, xs_td = _spaces(rng, s=20, ds=(5, 6), n=3, drive=(1.0, 1.0))
    kw = dict(alphas=ALPHAS) | kwargs
    with pytest.raises(InputError) as err:
        solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td), **kw)
    assert err.value.parameter == parameter


def test_solver_rejects_mismatched_spaces(rng):
    xs_sd, y_sn, xs_td = _spaces(rng, s=20, ds=(5, 6), n=3, drive=(1.0, 1.0))
    with pytest.raises(InputError, match="xs_sd"):
        solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t(xs_td[:1]), alphas=ALPHAS)
    with pytest.raises(InputError, match=r"xs_sd\[1\]"):
        solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn), _t([xs_td[0], xs_td[0]]),
                              alphas=ALPHAS)
    with pytest.raises(InputError, match="y_sn"):
        solve_banded_ridge_cv(_t(xs_sd), torch.as_tensor(y_sn[:-1]), _t(xs_td), alphas=ALPHAS)


def test_banded_ridge_bad_inputs(rng):
    xs_sd, y_sn, _ = _spaces(rng, s=20, ds=(5, 6), n=3, drive=(1.0, 1.0))
    target = _responses(rng, y_sn)
    cases = [(dict(features={}), "features"),
             (dict(features={"a": xs_sd[0], "b": xs_sd[1][:-1]}), "features['b']"),
             (dict(features={"a": np.full((20, 4), np.nan)}), "features['a']"),
             (dict(target=y_sn), "target"),
             (dict(n_folds=1), "n_folds"),
             (dict(n_iter=-2), "n_iter")]
    for override, parameter in cases:
        kw = dict(features={"a": xs_sd[0], "b": xs_sd[1]}, target=target) | override
        with pytest.raises(InputError) as err:
            banded_ridge(kw.pop("features"), kw.pop("target"), **kw)
        assert err.value.parameter == parameter, (override, err.value)
    with pytest.raises(UnknownNameError):
        banded_ridge({"a": xs_sd[0]}, target, scaling="minmax")
