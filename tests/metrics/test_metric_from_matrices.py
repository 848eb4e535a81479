"""Metrics from stimulus x stimulus matrices: ``rsa_from_rdm`` (a model RDM), ``cka_from_gram``
/ ``cka_from_grams`` (linear Gram matrices) and ``streaming_gram``. Each equals its feature-space
counterpart (bit for bit for rsa, to 1e-10 for CKA) and an independent reference."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import FeatureCache
from cortexalign.metrics import (
    cka_from_gram,
    compute_rdm,
    rsa_from_rdm,
    rsa_permutation_p,
    rsa_permutation_p_from_rdm,
    score,
    streaming_gram,
    streaming_rdm,
)
from cortexalign.metrics._cka import CKA_GRAM_KINDS, CKA_KINDS, cka_from_grams, cka_tensor
from cortexalign.neural import load_neural, make_responses
from cortexalign.stats import bootstrap_indices

K92 = Path(str(resources.files("cortexalign").joinpath("data", "kriegeskorte92",
                                                        "kriegeskorte92.npz")))
CKA_NAMES = {"linear": "cka_linear", "linear_debiased": "cka_linear_debiased", "rbf": "cka_rbf"}
SCORE_FIELDS = ("value", "ci_low", "ci_high", "ceiling_low", "ceiling_high", "n_stimuli")


@pytest.fixture(scope="module")
def human_it():
    if not K92.exists():
        pytest.skip(f"the bundled 92-object data is absent ({K92})")
    return load_neural("kriegeskorte92.human_IT")


def _features(s: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(s, d)) + rng.normal(size=(1, d))  # non-zero means: centring matters


def _responses_with_reps(x: np.ndarray, seed: int = 1):
    rng = np.random.default_rng(seed)
    signal = x[:, :6] @ rng.normal(size=(6, 30))
    values = signal[..., None] + 0.8 * rng.normal(size=(*signal.shape, 4))
    return make_responses(values, [f"s{i}" for i in range(len(x))])


def _same_score(a, b) -> None:
    """Bit-identical Scores (NaN equal to NaN)."""
    for name in SCORE_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        assert va == vb or (np.isnan(va) and np.isnan(vb)), (name, va, vb)
    assert a.extra == b.extra


# -- rsa_from_rdm ----------------------------------------------------------------------------
@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall_tau_a"])
@pytest.mark.parametrize("rdm_method", ["correlation", "euclidean"])
def test_rsa_from_rdm_is_rsa_on_human_it(human_it, compare, rdm_method):
    x = _features(92, 20, seed=0)
    opts = dict(n_bootstrap=30, seed=3, compare=compare, rdm_method=rdm_method, device="cpu")
    a = score("rsa", x, human_it, **opts)
    b = rsa_from_rdm(compute_rdm(x, rdm_method, device="cpu"), human_it, **opts)
    _same_score(a, b)  # value, CI, ceilings and per_rdm, bit for bit
    assert len(b.extra["per_rdm"]) == human_it.rdms.shape[0] and b.extra["ceiling_by"] == "subject"
    c = rsa_from_rdm(streaming_rdm(x, rdm_method, block_rows=13, device="cpu"), human_it, **opts)
    for name in SCORE_FIELDS:
        assert getattr(c, name) == pytest.approx(getattr(a, name), abs=1e-10)


@pytest.mark.parametrize("neural", [{}, {"neural_rdm_method": "crossnobis"}])
def test_rsa_from_rdm_is_rsa_on_responses_with_repetitions(neural):
    x = _features(25, 12, seed=2)
    resp = _responses_with_reps(x)
    opts = dict(n_bootstrap=20, seed=1, rdm_method="euclidean", n_splits=4, device="cpu", **neural)
    a = score("rsa", x, resp, **opts)
    b = rsa_from_rdm(compute_rdm(x, "euclidean", device="cpu"), resp, **opts)
    _same_score(a, b)
    assert b.extra["ceiling"] == "split-half, Spearman-Brown" and np.isfinite(b.ceiling_low)
    # rdm_method is the default neural method: euclidean here, recorded in extra
    assert b.extra["rdm_method"] == "euclidean"
    assert b.extra["neural_rdm_method"] == neural.get("neural_rdm_method", "euclidean")


def test_rsa_from_rdm_keeps_a_tensor_on_its_device_and_reads_the_upper_triangle():
    x = _features(20, 8, seed=4)
    resp = make_responses(_features(20, 6, seed=5), [f"s{i}" for i in range(20)])
    rdm = compute_rdm(x, device="cpu")
    a = rsa_from_rdm(torch.from_numpy(rdm), resp)
    noisy = rdm + np.tril(1e-7 * np.random.default_rng(0).normal(size=rdm.shape), -1)
    _same_score(a, rsa_from_rdm(noisy, resp))  # rounding below the diagonal is ignored


def test_rsa_permutation_p_from_rdm_is_the_features_p(human_it):
    x = _features(92, 15, seed=6)
    for rdm_method in ("correlation", "cosine"):
        rdm = compute_rdm(x, rdm_method, device="cpu")
        p_x = rsa_permutation_p(x, human_it, n_permutations=39, seed=5, rdm_method=rdm_method)
        p_r = rsa_permutation_p_from_rdm(rdm, human_it, n_permutations=39, seed=5,
                                         rdm_method=rdm_method)
        assert p_x == p_r and 1 / 40 <= p_r <= 1


def _bad(match: str, parameter: str, fn, *args, **kwargs) -> None:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.parameter == parameter and err.expected and err.received and err.fix


def test_rsa_from_rdm_refuses_bad_rdms():
    x = _features(12, 5, seed=7)
    resp = make_responses(_features(12, 4, seed=8), [f"s{i}" for i in range(12)])
    rdm = compute_rdm(x, device="cpu")
    _bad("square", "model_rdm_ss", rsa_from_rdm, rdm[:, :11], resp)
    _bad("2-d", "model_rdm_ss", rsa_from_rdm, squareform(rdm), resp)
    nan = rdm.copy()
    nan[2, 3] = np.nan
    _bad("finite", "model_rdm_ss", rsa_from_rdm, nan, resp)
    asym = rdm.copy()
    asym[0, 5] += 0.1
    _bad("symmetric", "model_rdm_ss", rsa_from_rdm, asym, resp)
    _bad("zero diagonal", "model_rdm_ss", rsa_from_rdm, 1.0 - rdm, resp)  # a similarity matrix
    _bad("vary", "model_rdm_ss", rsa_from_rdm, np.ones((12, 12)) - np.eye(12), resp)
    _bad("at least 4", "model_rdm_ss", rsa_from_rdm, rdm[:3, :3], resp)  # issue 20: 3 refused
    _bad("12 stimuli", "model_rdm_ss", rsa_from_rdm, rdm[:11, :11], resp)
    with pytest.raises(UnknownNameError, match="spearman"):
        rsa_from_rdm(rdm, resp, compare="spearmann")
    with pytest.raises(UnknownNameError):
        rsa_from_rdm(rdm, resp, rdm_method="corr")


# -- CKA from Gram matrices ------------------------------------------------------------------
def _numpy_cka(x: np.ndarray, y: np.ndarray, kind: str, sigma_frac: float = 1.0) -> float:
    """The published formulas on explicit kernels (Kornblith et al. 2019; Song et al. 2012 eq. 5
    with explicit sums), scipy distances and numpy's median: independent of cortexalign."""
    if kind == "rbf":
        def kern(a):
            d2 = squareform(pdist(a, "sqeuclidean"))
            return np.exp(-d2 / (2 * sigma_frac**2 * np.median(d2)))
        k, l_ = kern(x), kern(y)
    else:
        xc, yc = x - x.mean(0), y - y.mean(0)
        k, l_ = xc @ xc.T, yc @ yc.T
    n, one = len(k), np.ones(len(k))
    h = np.eye(n) - 1.0 / n

    def hsic(a, b):
        if kind != "linear_debiased":
            return np.trace(a @ h @ b @ h)
        a, b = a - np.diag(np.diag(a)), b - np.diag(np.diag(b))
        return (np.trace(a @ b) + (one @ a @ one) * (one @ b @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (one @ a @ b @ one)) / (n * (n - 3))

    return float(hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_)))


def test_gram_kinds_are_the_feature_kinds():
    assert sorted(CKA_GRAM_KINDS) == sorted(CKA_KINDS)


@pytest.mark.parametrize("kind", sorted(CKA_GRAM_KINDS))
def test_cka_from_grams_equals_cka_tensor_and_the_reference(kind):
    x, y = _features(31, 17, seed=9), _features(31, 6, seed=10)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    k_raw, l_raw = xt @ xt.T, yt @ yt.T
    xc = xt - xt.mean(0)
    want = float(cka_tensor(xt, yt, kind))
    assert float(cka_from_grams(k_raw, l_raw, kind)) == pytest.approx(want, abs=1e-10)
    assert float(cka_from_grams(xc @ xc.T, l_raw, kind)) == pytest.approx(want, abs=1e-10)
    assert want == pytest.approx(_numpy_cka(x, y, kind), abs=1e-10)
    # bootstrap resamples repeat rows: K[idx][:, idx] is the Gram of x[idx]
    for idx in bootstrap_indices(31, 5, 0, "cpu"):
        assert len(set(idx.tolist())) < 31
        got = cka_from_grams(k_raw[idx][:, idx], l_raw[idx][:, idx], kind)
        assert float(got) == pytest.approx(float(cka_tensor(xt[idx], yt[idx], kind)), abs=1e-10)


def test_cka_from_grams_rbf_bandwidth():
    x, y = _features(20, 9, seed=11), _features(20, 4, seed=12)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    got = float(cka_from_grams(xt @ xt.T, yt @ yt.T, "rbf", sigma_frac=0.4))
    assert got == pytest.approx(_numpy_cka(x, y, "rbf", 0.4), abs=1e-10)
    with pytest.raises(UnknownNameError, match="linear"):
        cka_from_grams(xt @ xt.T, yt @ yt.T, "linaer")


@pytest.mark.parametrize("kind", sorted(CKA_NAMES))
def test_cka_from_gram_is_cka_metric(kind):
    x = _features(40, 25, seed=13)
    resp = _responses_with_reps(x, seed=14)
    options = {"sigma_frac": 0.7} if kind == "rbf" else {}
    a = score(CKA_NAMES[kind], x, resp, n_bootstrap=25, seed=2, device="cpu", **options)
    xc = x - x.mean(0)
    for gram in (xc @ xc.T, x @ x.T, streaming_gram(x, block_rows=9, device="cpu")):
        b = cka_from_gram(gram, resp, kind=kind, n_bootstrap=25, seed=2, device="cpu", **options)
        for name in ("value", "ci_low", "ci_high"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), abs=1e-10), name
        assert np.isnan(b.ceiling_low) and b.n_stimuli == 40 and b.extra == a.extra


def test_cka_from_gram_refuses_bad_input():
    x = _features(12, 5, seed=15)
    resp = make_responses(_features(12, 4, seed=16), [f"s{i}" for i in range(12)])
    xc = x - x.mean(0)
    gram = xc @ xc.T
    _bad("square", "gram_ss", cka_from_gram, gram[:, :11], resp)
    _bad("finite", "gram_ss", cka_from_gram, np.where(np.eye(12) > 0, np.inf, gram), resp)
    asym = gram.copy()
    asym[0, 3] += 1.0
    _bad("symmetric", "gram_ss", cka_from_gram, asym, resp)
    _bad("diagonal", "gram_ss", cka_from_gram, -gram, resp)
    _bad("vary", "gram_ss", cka_from_gram, np.full((12, 12), 4.0), resp)
    _bad("at least 4", "gram_ss", cka_from_gram, gram[:3, :3], resp, kind="linear_debiased")
    _bad("12 stimuli", "gram_ss", cka_from_gram, gram[:11, :11], resp)
    _bad("responses", "target", cka_from_gram, gram, load_neural("kriegeskorte92.monkey_IT"))
    _bad("sigma_frac", "options", cka_from_gram, gram, resp, kind="linear", sigma_frac=0.5)
    _bad("positive", "sigma_frac", cka_from_gram, gram, resp, kind="rbf", sigma_frac=0.0)
    with pytest.raises(UnknownNameError, match="linear"):
        cka_from_gram(gram, resp, kind="linaer")


# -- streaming_gram --------------------------------------------------------------------------
@pytest.mark.parametrize("block_rows", [1, 7, 16, 61, 100, None])  # 7 and 16 do not divide 61
def test_streaming_gram_equals_the_product(block_rows):
    x = _features(61, 23, seed=17)
    xc = x - x.mean(0)
    got = streaming_gram(x, block_rows=block_rows, device="cpu")
    np.testing.assert_allclose(got, xc @ xc.T, rtol=0, atol=1e-10)
    assert got.dtype == np.float64 and np.array_equal(got, got.T)
    raw = streaming_gram(x, center=False, block_rows=block_rows, device="cpu")
    np.testing.assert_allclose(raw, x @ x.T, rtol=0, atol=1e-10)
    t = streaming_gram(torch.from_numpy(x), block_rows=block_rows, return_tensor=True)
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(got))


def test_streaming_gram_from_a_cache_view(tmp_path):
    x = _features(45, 30, seed=18).astype(np.float32)
    cache = FeatureCache(tmp_path / "cache")
    cache.put("ef" * 32, x)
    view = cache.open("ef" * 32)
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    np.testing.assert_allclose(streaming_gram(view, block_rows=8, device="cpu"), xc @ xc.T,
                               rtol=0, atol=1e-10)


def test_streaming_gram_refuses_bad_sources():
    x = _features(10, 4, seed=19)
    with pytest.raises(InputError, match="vary"):
        streaming_gram(np.ones((10, 4)), device="cpu")
    with pytest.raises(InputError, match="vary"):
        streaming_gram(np.ones((10, 4)), center=False, block_rows=3, device="cpu")
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(InputError, match="row 7, column 2"):
        streaming_gram(bad, block_rows=3, device="cpu")
    with pytest.raises(InputError, match="2-d"):
        streaming_gram(x[None], device="cpu")
    with pytest.raises(InputError, match="block_rows"):
        streaming_gram(x, block_rows=0, device="cpu")
