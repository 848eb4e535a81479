"""The per-target ridge solver (``_ridge.solve_ridge_cv``) vs himalaya, scikit-learn and itself."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import METRICS, score
from cortexalign.metrics._encoding import cross_validated_predictions
from cortexalign.metrics._ridge import RIDGE_ROUTES, solve_ridge_cv
from cortexalign.metrics._ridge_solvers import RIDGE_SOLVERS
from cortexalign.neural import make_responses


def _data(rng, s, d, n=12, t=7):
    """Decaying-spectrum features, offset targets whose noise differs by 3 orders of magnitude."""
    x_sd = rng.normal(size=(s, d)) / np.sqrt(1 + np.arange(d)) + 0.5
    w_dn = rng.normal(size=(d, n))
    y_sn = x_sd @ w_dn + 2.0 + rng.normal(size=(s, n)) * np.logspace(-2, 1, n)
    x_td = rng.normal(size=(t, d)) / np.sqrt(1 + np.arange(d)) + 0.5
    return x_sd, y_sn, x_td


def _fit(x_sd, y_sn, x_td, alphas, **kw):
    return solve_ridge_cv(torch.as_tensor(x_sd), torch.as_tensor(y_sn), torch.as_tensor(x_td),
                          alphas, **kw)


def _himalaya(x_sd, y_sn, x_td, alphas, inner_folds, seed):
    from himalaya.backend import get_backend, set_backend
    from himalaya.ridge import solve_ridge_cv_svd

    previous = get_backend().name
    set_backend("numpy")
    try:
        best, coefs, _, intercept = solve_ridge_cv_svd(
            x_sd, y_sn, alphas=np.asarray(alphas, dtype=np.float64), fit_intercept=True,
            cv=KFold(inner_folds, shuffle=True, random_state=seed), local_alpha=True, warn=False)
    finally:
        set_backend(previous)
    return x_td @ coefs + intercept, best


@pytest.mark.parametrize("route", ["auto", *RIDGE_ROUTES])
@pytest.mark.parametrize("shape", [(40, 150), (90, 15)], ids=["s<d", "s>d"])
@pytest.mark.parametrize("alphas", [[3.0], np.logspace(-2, 5, 8)], ids=["one", "grid"])
def test_matches_himalaya_solve_ridge_cv_svd(rng, shape, alphas, route):
    x_sd, y_sn, x_td = _data(rng, *shape)
    fit = _fit(x_sd, y_sn, x_td, alphas, inner_folds=4, seed=7, route=route)
    pred_ref, alpha_ref = _himalaya(x_sd, y_sn, x_td, alphas, 4, 7)
    np.testing.assert_allclose(fit.pred_td.numpy(), pred_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fit.alpha_n.numpy(), alpha_ref, rtol=1e-9)


@pytest.mark.parametrize("shape", [(30, 80), (60, 9)], ids=["s<d", "s>d"])
def test_single_alpha_is_the_sklearn_ridge_closed_form(rng, shape):
    x_sd, y_sn, x_td = _data(rng, *shape)
    fit = _fit(x_sd, y_sn, x_td, [0.7], inner_folds=3)
    ref = Ridge(alpha=0.7).fit(x_sd, y_sn).predict(x_td)
    np.testing.assert_allclose(fit.pred_td.numpy(), ref, rtol=0, atol=1e-9)
    assert torch.all(fit.alpha_n == 0.7)


def test_chosen_alpha_and_cv_mse_match_an_explicit_sklearn_loop(rng):
    x_sd, y_sn, x_td = _data(rng, 36, 20, n=4)
    alphas = np.logspace(-2, 4, 7)
    fit = _fit(x_sd, y_sn, x_td, alphas, inner_folds=3, seed=2)
    splits = list(KFold(3, shuffle=True, random_state=2).split(x_sd))
    mse_an = np.array([[np.mean([np.mean((Ridge(alpha=a).fit(x_sd[tr], y_sn[tr, j])
                                          .predict(x_sd[va]) - y_sn[va, j]) ** 2)
                                 for tr, va in splits]) for j in range(4)] for a in alphas])
    best = mse_an.argmin(0)
    np.testing.assert_allclose(fit.alpha_n.numpy(), alphas[best])
    np.testing.assert_allclose(fit.cv_mse_n.numpy(), mse_an[best, range(4)], rtol=1e-9)


def test_penalties_differ_with_the_targets_noise(rng):
    x_sd = rng.normal(size=(80, 30))
    w_dn = rng.normal(size=(30, 2))
    y_sn = x_sd @ w_dn + rng.normal(size=(80, 2)) * np.array([0.01, 30.0])
    fit = _fit(x_sd, y_sn, x_sd[:5], np.logspace(-3, 5, 9), inner_folds=5)
    low_noise, high_noise = fit.alpha_n.tolist()
    assert low_noise < 1.0 < high_noise


def test_chunking_over_targets_changes_nothing(rng):
    x_sd, y_sn, x_td = _data(rng, 50, 70, n=11)
    alphas = np.logspace(-2, 5, 8)
    whole = _fit(x_sd, y_sn, x_td, alphas, target_chunk=11)
    for chunk in (1, 4):
        part = _fit(x_sd, y_sn, x_td, alphas, target_chunk=chunk)
        torch.testing.assert_close(part.pred_td, whole.pred_td, rtol=0, atol=1e-12)
        assert torch.equal(part.alpha_n, whole.alpha_n)


def test_float32_products_stay_close_to_float64(rng):
    x_sd, y_sn, x_td = _data(rng, 60, 120)
    alphas = np.logspace(-1, 5, 4)
    f64 = _fit(x_sd, y_sn, x_td, alphas)
    f32 = _fit(x_sd, y_sn, x_td, alphas, dtype=torch.float32)
    assert torch.equal(f32.alpha_n, f64.alpha_n)
    torch.testing.assert_close(f32.pred_td, f64.pred_td, rtol=0, atol=1e-4)


def test_leave_one_out_inner_folds(rng):
    x_sd, y_sn, x_td = _data(rng, 20, 8, n=3)
    fit = _fit(x_sd, y_sn, x_td, np.logspace(-2, 3, 6), inner_folds=20)
    pred_ref, alpha_ref = _himalaya(x_sd, y_sn, x_td, np.logspace(-2, 3, 6), 20, 0)
    np.testing.assert_allclose(fit.pred_td.numpy(), pred_ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fit.alpha_n.numpy(), alpha_ref, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(RIDGE_SOLVERS))
def test_every_solver_gives_the_same_fold(rng, name):
    x_sd, y_sn, x_td = _data(rng, 40, 60)
    alphas = np.logspace(-2, 5, 8)
    pred, alpha_n = RIDGE_SOLVERS[name](x_sd, y_sn, x_td, device=torch.device("cpu"), seed=1,
                                        alphas=alphas, inner_folds=4)
    pred_ref, alpha_ref = _himalaya(x_sd, y_sn, x_td, alphas, 4, 1)
    np.testing.assert_allclose(pred, pred_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(alpha_n, alpha_ref, rtol=1e-9)


def test_ridge_metric_same_score_with_either_solver(rng):
    x_sd, y_sn, _ = _data(rng, 40, 25, n=6)
    da = make_responses(y_sn, [f"s{i}" for i in range(40)])
    ours = METRICS.get("ridge")(x_sd, da, alphas=np.logspace(-2, 4, 7), inner_folds=3)
    ref = METRICS.get("ridge")(x_sd, da, alphas=np.logspace(-2, 4, 7), inner_folds=3,
                               solver="himalaya")
    assert ours.value == pytest.approx(ref.value, abs=1e-9)
    np.testing.assert_allclose(ours.extra["fold_params"], ref.extra["fold_params"], rtol=1e-9)


def _pearson_r(y_sn, pred_sn):
    return np.array([np.corrcoef(y_sn[:, j], pred_sn[:, j])[0, 1] for j in range(y_sn.shape[1])])


def test_ridge_metric_dtype_float32_float64_and_sklearn_agree(rng):
    """``ridge(dtype=...)``: both precisions choose the same penalties and give the r of a
    scikit-learn Ridge refitted per outer fold with those penalties; float64 is the default."""
    x_sd, y_sn, _ = _data(rng, 48, 30, n=8)
    da = make_responses(y_sn, [f"s{i}" for i in range(48)])
    kw = {"alphas": np.logspace(-2, 4, 7), "n_folds": 4, "inner_folds": 3, "seed": 3}
    default = score("ridge", x_sd, da, **kw)
    by_dtype = {name: score("ridge", x_sd, da, dtype=dtype, **kw)
                for name, dtype in [("float64", "float64"), ("float32", torch.float32)]}
    assert by_dtype["float64"].value == default.value  # float64 is the default: same numbers
    np.testing.assert_array_equal(by_dtype["float64"].extra["r"], default.extra["r"])
    np.testing.assert_array_equal(by_dtype["float32"].extra["fold_params"],
                                  by_dtype["float64"].extra["fold_params"])
    # float32 did reach the solver (its products round differently), yet within 1e-5 in r
    assert not np.array_equal(by_dtype["float32"].extra["r"], by_dtype["float64"].extra["r"])
    folds = list(KFold(4, shuffle=True, random_state=3).split(x_sd))
    for name, tol in [("float64", 1e-10), ("float32", 1e-5)]:
        fitted = by_dtype[name]
        pred_sn = np.empty_like(y_sn)
        for (tr, te), alpha_n in zip(folds, fitted.extra["fold_params"], strict=True):
            pred_sn[te] = Ridge(alpha=alpha_n).fit(x_sd[tr], y_sn[tr]).predict(x_sd[te])
        np.testing.assert_allclose(fitted.extra["r"], _pearson_r(y_sn, pred_sn), rtol=0, atol=tol)
        assert fitted.value == pytest.approx(np.median(_pearson_r(y_sn, pred_sn)), abs=tol)


def test_ridge_metric_target_chunk_changes_nothing(rng):
    x_sd, y_sn, _ = _data(rng, 40, 50, n=9)
    kw = {"alphas": np.logspace(-2, 4, 7), "inner_folds": 3}
    whole, alpha_whole = cross_validated_predictions(x_sd, y_sn, "ridge", **kw)
    da = make_responses(y_sn, [f"s{i}" for i in range(40)])
    metric_whole = score("ridge", x_sd, da, **kw)
    for chunk in (1, 4, np.int64(9), 100):
        part, alpha_part = cross_validated_predictions(x_sd, y_sn, "ridge", target_chunk=chunk,
                                                       **kw)
        np.testing.assert_allclose(part, whole, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(alpha_part, alpha_whole)
        metric = score("ridge", x_sd, da, target_chunk=chunk, **kw)
        np.testing.assert_allclose(metric.extra["r"], metric_whole.extra["r"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(metric.extra["fold_params"],
                                      metric_whole.extra["fold_params"])


def _solver_options(solver):
    """The options ``RIDGE_SOLVERS[solver]`` takes, read from its signature like the check."""
    params = inspect.signature(RIDGE_SOLVERS[solver]).parameters
    return {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} - {"device", "seed"}


OPTION_VALUES = {"alphas": [1.0], "inner_folds": 3, "dtype": "float32", "target_chunk": 2}
REFUSED = [(solver, option) for solver in sorted(RIDGE_SOLVERS)
           for option in sorted(set().union(*map(_solver_options, RIDGE_SOLVERS))
                                - _solver_options(solver))]


def test_every_solver_option_has_a_test_value():
    assert set().union(*map(_solver_options, RIDGE_SOLVERS)) == set(OPTION_VALUES)
    assert ("himalaya", "dtype") in REFUSED and ("himalaya", "target_chunk") in REFUSED


@pytest.mark.parametrize(("solver", "option"), REFUSED)
def test_an_option_the_solver_does_not_take_is_an_input_error(rng, solver, option):
    """Every option of one ``RIDGE_SOLVERS`` entry given to another that does not take it:
    an InputError naming the option, the solver, what it takes and the solver that takes it."""
    x_sd, y_sn, _ = _data(rng, 30, 10, n=3)
    da = make_responses(y_sn, [f"s{i}" for i in range(30)])
    calls = [lambda: cross_validated_predictions(x_sd, y_sn, "ridge", solver=solver,
                                                 **{option: OPTION_VALUES[option]})]
    if option in inspect.signature(METRICS.get("ridge")).parameters:
        calls.append(lambda: score("ridge", x_sd, da, solver=solver,
                                   **{option: OPTION_VALUES[option]}))
    for call in calls:
        with pytest.raises(InputError) as err:
            call()
        assert err.value.parameter == option
        assert repr(solver) in err.value.expected
        assert all(name in err.value.expected for name in _solver_options(solver))
        assert solver in err.value.received
        takers = [s for s in RIDGE_SOLVERS if option in _solver_options(s)]
        assert f"leave {option} unset" in err.value.fix and repr(takers[0]) in err.value.fix


def test_an_option_no_solver_takes_is_an_input_error(rng):
    x_sd, y_sn, _ = _data(rng, 30, 10, n=3)
    with pytest.raises(InputError, match="no ridge solver takes it") as err:
        cross_validated_predictions(x_sd, y_sn, "ridge", route="primal")
    assert err.value.parameter == "route"


@pytest.mark.parametrize(("kw", "parameter"), [
    ({"dtype": "float16"}, "dtype"), ({"dtype": torch.int64}, "dtype"), ({"dtype": True}, "dtype"),
    ({"dtype": "double precision"}, "dtype"), ({"target_chunk": 0}, "target_chunk"),
    ({"target_chunk": 2.5}, "target_chunk"), ({"target_chunk": "3"}, "target_chunk"),
    ({"target_chunk": True}, "target_chunk")])
def test_bad_dtype_or_target_chunk_through_the_metric(rng, kw, parameter):
    x_sd, y_sn, _ = _data(rng, 30, 10, n=3)
    with pytest.raises(InputError) as err:
        score("ridge", x_sd, make_responses(y_sn, [f"s{i}" for i in range(30)]), **kw)
    assert err.value.parameter == parameter
    assert err.value.expected and err.value.received and err.value.fix


@pytest.mark.parametrize(("kw", "parameter"), [
    ({"alphas": [1.0, 0.0]}, "alphas"), ({"alphas": [-1.0]}, "alphas"), ({"alphas": []}, "alphas"),
    ({"alphas": [np.inf]}, "alphas"), ({"inner_folds": 31}, "inner_folds"),
    ({"inner_folds": 1}, "inner_folds"), ({"target_chunk": 0}, "target_chunk"),
    ({"dtype": torch.float16}, "dtype")])
def test_bad_input_raises_input_error(rng, kw, parameter):
    x_sd, y_sn, x_td = _data(rng, 30, 10)
    kw = {"alphas": [1.0], **kw}
    with pytest.raises(InputError) as err:
        _fit(x_sd, y_sn, x_td, **kw)
    assert err.value.parameter == parameter
    assert err.value.expected and err.value.received and err.value.fix


def test_bad_input_through_the_metric_and_unknown_solver(rng):
    x_sd, y_sn, _ = _data(rng, 30, 10, n=3)
    with pytest.raises(InputError, match="alphas"):
        cross_validated_predictions(x_sd, y_sn, "ridge", alphas=[0.0])
    with pytest.raises(InputError, match="inner_folds"):
        cross_validated_predictions(x_sd, y_sn, "ridge", inner_folds=40, solver="himalaya")
    with pytest.raises(UnknownNameError, match="eigh"):
        cross_validated_predictions(x_sd, y_sn, "ridge", solver="eig")
    with pytest.raises(UnknownNameError):
        _fit(x_sd, y_sn, x_sd, [1.0], route="dual")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(rng):
    x_sd, y_sn, x_td = _data(rng, 50, 90)
    alphas = np.logspace(-2, 5, 8)
    cpu = _fit(x_sd, y_sn, x_td, alphas)
    dev = [torch.as_tensor(a, device="cuda") for a in (x_sd, y_sn, x_td)]
    gpu = solve_ridge_cv(*dev, alphas)
    assert gpu.pred_td.device.type == "cuda"
    torch.testing.assert_close(gpu.pred_td.cpu(), cpu.pred_td, rtol=0, atol=1e-8)
    assert torch.equal(gpu.alpha_n.cpu(), cpu.alpha_n)
