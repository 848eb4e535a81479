"""Differentiable objectives: gradcheck in float64, equal in value to the metrics; the soft rank
against an independent projection, scikit-learn's isotonic regression and scipy's ranks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from sklearn.isotonic import isotonic_regression

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import (
    cka,
    cka_objective,
    compute_rdm,
    ridge_objective,
    rsa_objective,
    score,
    soft_rank,
)
from cortexalign.neural import RDMSet, load_neural, make_responses
from cortexalign.rdm import isotonic_decreasing_blocks


def _data(s: int = 14, d: int = 6, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(s, d, dtype=torch.float64, generator=g)
    y = x[:, :n] @ torch.randn(n, n, dtype=torch.float64, generator=g) + 0.5 * torch.randn(
        s, n, dtype=torch.float64, generator=g)
    return x, y


def _rdmset(y: torch.Tensor, subjects: int = 3) -> RDMSet:
    g = np.random.default_rng(1)
    base = y.numpy()
    rdms = []
    for _ in range(subjects * 2):
        noisy = base + 0.3 * g.standard_normal(base.shape)
        d = ((noisy[:, None] - noisy[None]) ** 2).sum(-1)
        rdms.append(d)
    ids = [f"s{k}" for k in range(len(base))]
    return RDMSet(np.stack(rdms), ids, {"subject": np.repeat(np.arange(subjects), 2)})


# ----------------------------------------------------------------------------- soft rank

def _projection_reference(z: np.ndarray) -> np.ndarray:
    """Projection onto the permutahedron of (1..p) as a QP over convex weights of its vertices."""
    p = len(z)
    verts = np.array(list(itertools.permutations(range(1, p + 1))), dtype=np.float64)
    obj = lambda lam: ((verts.T @ lam - z) ** 2).sum()  # noqa: E731
    lam0 = np.full(len(verts), 1.0 / len(verts))
    res = scipy.optimize.minimize(obj, lam0, method="SLSQP", bounds=[(0, 1)] * len(verts),
                                  constraints={"type": "eq", "fun": lambda lam: lam.sum() - 1},
                                  options={"ftol": 1e-14, "maxiter": 500})
    return verts.T @ res.x


@pytest.mark.parametrize("z", [[0.3, 2.0, -1.0, 0.9], [0.0, 0.1, 0.2, 0.05], [5.0, -3.0, 1.0, 1.0]])
def test_soft_rank_is_the_projection_onto_the_permutahedron(z):
    got = soft_rank(torch.tensor(z, dtype=torch.float64), 1.0).numpy()
    np.testing.assert_allclose(got, _projection_reference(np.array(z)), atol=1e-5)


def test_pav_blocks_match_sklearn_isotonic_regression():
    y = np.random.default_rng(0).standard_normal(300).cumsum() * -0.1 + np.random.default_rng(
        1).standard_normal(300)
    ids = isotonic_decreasing_blocks(y)
    fit = (np.bincount(ids, y) / np.bincount(ids))[ids]
    np.testing.assert_allclose(fit, isotonic_regression(y, increasing=False), atol=1e-12)


def test_soft_rank_hard_limit_with_ties_and_its_other_limit():
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, -4.0, 3.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]],
                     dtype=torch.float64)
    hard = np.stack([scipy.stats.rankdata(r) for r in x.numpy()])
    np.testing.assert_allclose(soft_rank(x, 1e-9).numpy(), hard, atol=1e-12)
    # exact as soon as the strength is below every gap between sorted neighbours
    np.testing.assert_allclose(soft_rank(x[1], 0.099).numpy(), hard[1], atol=1e-12)
    assert not np.allclose(soft_rank(x[1], 0.2).numpy(), hard[1])
    wide = soft_rank(x, 1e9).numpy()
    np.testing.assert_allclose(wide, 3.5, atol=1e-6)
    np.testing.assert_allclose(soft_rank(x, 0.7).sum(1).numpy(), 21.0, atol=1e-12)


def test_soft_rank_gradcheck_and_bad_input():
    x = torch.randn(2, 15, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: soft_rank(a, 0.3), (x,))
    with pytest.raises(InputError, match="strength"):
        soft_rank(x, 0.0)
    with pytest.raises(InputError, match="x_bp"):
        soft_rank(torch.arange(4), 1.0)


# ----------------------------------------------------------------------------- RSA

@pytest.mark.parametrize("rdm_method", ["correlation", "euclidean", "cosine"])
def test_rsa_objective_equals_the_metric(rdm_method):
    x, y = _data(s=20)
    target = _rdmset(y)
    for compare in ("pearson", "spearman"):
        got = float(rsa_objective(x, target, rdm_method=rdm_method, compare=compare,
                                  strength=1e-12))
        want = score("rsa", x.numpy(), target, rdm_method=rdm_method, compare=compare).value
        assert got == pytest.approx(want, abs=1e-12)


def test_rsa_objective_on_human_it_and_the_soft_spearman_limit():
    human = load_neural("kriegeskorte92.human_IT")
    x = torch.randn(92, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    want = score("rsa", x.numpy(), human).value
    assert float(rsa_objective(x, human, compare="spearman", strength=1e-12)) == pytest.approx(
        want, abs=1e-12)
    soft = float(rsa_objective(x, human, compare="spearman", strength=1.0))
    assert soft != pytest.approx(want, abs=1e-9)
    assert float(rsa_objective(x, human, compare="spearman", strength=1e-4)) == pytest.approx(
        want, abs=1e-6)
    # a strength far above the spread pools everything: Pearson of dissimilarities vs the
    # target's ranks, averaged over subjects as rsa averages
    ranks = np.stack([scipy.stats.rankdata(v) for v in human.upper()])
    model = compute_rdm(x.numpy())[np.triu_indices(92, 1)]
    per_rdm = [np.corrcoef(model, r)[0, 1] for r in ranks]
    assert float(rsa_objective(x, human, compare="spearman", strength=1e3)) == pytest.approx(
        np.mean(per_rdm), abs=1e-10)
    assert float(rsa_objective(x, human, compare="pearson")) == pytest.approx(
        score("rsa", x.numpy(), human, compare="pearson").value, abs=1e-12)


@pytest.mark.parametrize("compare,rdm_method", [("pearson", "correlation"),
                                                ("pearson", "euclidean"),
                                                ("spearman", "correlation")])
def test_rsa_objective_gradcheck(compare, rdm_method):
    x, y = _data(s=10, d=4)
    target = _rdmset(y)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: rsa_objective(a, target, rdm_method=rdm_method, compare=compare, strength=0.5),
        (xg,))


def test_rsa_objective_responses_target_and_names():
    x, y = _data(s=12)
    resp = make_responses(y.numpy(), [f"s{k}" for k in range(12)])
    want = score("rsa", x.numpy(), resp, compare="pearson").value
    assert float(rsa_objective(x, resp)) == pytest.approx(want, abs=1e-12)
    with pytest.raises(UnknownNameError):
        rsa_objective(x, resp, compare="kendall_tau_a")
    with pytest.raises(InputError, match="features_sd"):
        rsa_objective(x.numpy(), resp)


# ----------------------------------------------------------------------------- CKA, ridge

@pytest.mark.parametrize("kind", ["linear", "linear_debiased"])
def test_cka_objective_equals_the_metric_and_passes_gradcheck(kind):
    x, y = _data(s=16)
    assert float(cka_objective(x, y, kind=kind)) == pytest.approx(
        cka(x.numpy(), y.numpy(), kind), abs=1e-13)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: cka_objective(a, y, kind=kind), (xg,))


def test_ridge_objective_equals_the_metric():
    x, y = _data(s=40, d=12, n=7)
    resp = make_responses(y.numpy(), [f"s{k}" for k in range(40)])
    for opts in ({}, {"n_folds": 4, "seed": 3, "alphas": [0.1, 1.0, 10.0, 100.0]}):
        got = float(ridge_objective(x, resp, **opts))
        assert got == pytest.approx(score("ridge", x.numpy(), resp, **opts).value, abs=1e-10)


def test_ridge_objective_gradcheck_and_a_bad_fold_count():
    x, y = _data(s=15, d=5, n=3)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: ridge_objective(a, y, n_folds=3, inner_folds=3, alphas=[0.1, 1.0, 10.0]),
        (xg,))
    with pytest.raises(InputError, match="n_folds"):
        ridge_objective(x, y, n_folds=1)
