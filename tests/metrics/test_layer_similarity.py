"""layer_similarity: every entry equals the pairwise cka / RDM comparison, debiased CKA equals the
published U-statistic written out here, RSA equals rsatoolbox, and the promised properties hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import (
    LAYER_SIMILARITIES,
    cka,
    compare_rdms,
    compute_rdm,
    layer_similarity,
    plot_layer_similarity,
)
from cortexalign.metrics import _layer_similarity as ls

S = 24  # widths below straddle it: some layers are wider than s, some narrower
CKA_KIND = {"cka_linear": "linear", "cka_linear_debiased": "linear_debiased", "cka_rbf": "rbf"}


def _feats(seed: int, widths: tuple[int, ...], prefix: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(S, 6))  # a shared signal, so CKA values are not all near 0
    return {f"{prefix}{i}.{d}": np.hstack([base @ rng.normal(size=(6, d)) * 0.5,
                                           rng.normal(size=(S, d))]) + rng.normal()
            for i, d in enumerate(widths)}


FEATS_A = _feats(0, (3, 10, 40, 90), "a")
FEATS_B = _feats(1, (5, 24, 70), "b")


@pytest.mark.parametrize("metric", list(CKA_KIND))
@pytest.mark.parametrize("against", ["self", "other"])
def test_cka_entries_equal_pairwise_cka(metric, against):
    feats_b = None if against == "self" else FEATS_B
    options = {"sigma_frac": 0.7} if metric == "cka_rbf" else {}
    da = layer_similarity(FEATS_A, feats_b, metric, device="cpu", **options)
    other = FEATS_A if feats_b is None else feats_b
    ref = np.array([[cka(x, y, CKA_KIND[metric], device="cpu", **options)
                     for y in other.values()] for x in FEATS_A.values()])
    np.testing.assert_allclose(da.values, ref, rtol=0, atol=1e-8)
    assert da.dims == ("layer_a", "layer_b")
    assert list(da.layer_a.values) == list(FEATS_A) and list(da.layer_b.values) == list(other)
    assert da.attrs["metric"] == metric and da.attrs["n_stimuli"] == S
    assert json.loads(da.attrs["options"]) == options


@pytest.mark.parametrize("engine", [ls._pairs_by_grams, ls._pairs_by_features])
def test_both_linear_engines_chunked_equal_an_explicit_loop(engine, monkeypatch):
    # a tiny chunk so every engine runs several row / column chunks
    monkeypatch.setattr(ls, "_CHUNK_ELEMENTS", 100)
    xs_a = [ls._center(torch.as_tensor(x)) for x in FEATS_A.values()]
    xs_b = [ls._center(torch.as_tensor(x)) for x in FEATS_B.values()]
    for b in (xs_b, xs_a):
        got, self_a, self_b = engine(xs_a, b)
        ref = np.array([[np.sum((x.numpy().T @ y.numpy()) ** 2) for y in b] for x in xs_a])
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
        if self_a is not None:  # the grams engine's self terms ||X X^T||^2
            for xs, norms in ((xs_a, self_a), (b, self_b)):
                ref = [np.sum((x.numpy() @ x.numpy().T) ** 2) for x in xs]
                np.testing.assert_allclose(norms.numpy(), ref, rtol=1e-12)


def _hsic_u_song(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012) JMLR 13:1393, eq. 5, written from the paper: K~, L~ with zero
    diagonals, HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))."""
    n = k.shape[0]
    kt, lt = k.copy(), l_.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    return float((np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
                  - 2.0 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3)))


def test_debiased_equals_the_published_u_statistic():
    da = layer_similarity(FEATS_A, FEATS_B, "cka_linear_debiased", device="cpu")
    for i, x in enumerate(FEATS_A.values()):
        for j, y in enumerate(FEATS_B.values()):
            k, l_ = x @ x.T, y @ y.T  # raw (uncentred) linear kernels: the estimator is unbiased
            ref = _hsic_u_song(k, l_) / np.sqrt(_hsic_u_song(k, k) * _hsic_u_song(l_, l_))
            assert abs(da.values[i, j] - ref) < 1e-8


@pytest.mark.parametrize("compare", ["spearman", "pearson", "cosine", "kendall_tau_a", "rho_a",
                                     "corr_cov"])
def test_rsa_entries_equal_compare_rdms(compare):
    da = layer_similarity(FEATS_A, FEATS_B, "rsa", device="cpu", rdm_method="euclidean",
                          compare=compare)
    ref = np.array([[compare_rdms(compute_rdm(x, "euclidean", device="cpu"),
                                  compute_rdm(y, "euclidean", device="cpu"), compare,
                                  device="cpu")[0, 0]
                     for y in FEATS_B.values()] for x in FEATS_A.values()])
    np.testing.assert_allclose(da.values, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize(("compare", "rsa_name"), [("spearman", "spearman"), ("pearson", "corr"),
                                                   ("cosine", "cosine"), ("rho_a", "rho-a")])
def test_rsa_equals_rsatoolbox(compare, rsa_name):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm
    from rsatoolbox.rdm import compare as rsa_compare

    da = layer_similarity(FEATS_A, FEATS_B, "rsa", device="cpu", compare=compare)
    rdms = {name: calc_rdm(Dataset(x), method="correlation")
            for name, x in {**FEATS_A, **FEATS_B}.items()}
    ref = np.array([[float(rsa_compare(rdms[a], rdms[b], method=rsa_name)[0, 0])
                     for b in FEATS_B] for a in FEATS_A])
    np.testing.assert_allclose(da.values, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("metric", list(LAYER_SIMILARITIES))
def test_self_comparison_is_symmetric_with_unit_cka_diagonal(metric):
    da = layer_similarity(FEATS_A, None, metric, device="cpu")
    np.testing.assert_array_equal(da.values, da.values.T)
    assert list(da.layer_a.values) == list(da.layer_b.values)
    np.testing.assert_allclose(np.diag(da.values), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["cka_linear", "cka_linear_debiased"])
def test_linear_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(metric):
    rng = np.random.default_rng(3)
    x = FEATS_B["b1.24"]
    q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
    moved = {**FEATS_B, "b1.24": 3.7 * x @ q}
    before = layer_similarity(FEATS_A, FEATS_B, metric, device="cpu")
    after = layer_similarity(FEATS_A, moved, metric, device="cpu")
    np.testing.assert_allclose(after.values, before.values, rtol=0, atol=1e-10)


def test_identical_layers_score_one_and_inputs_are_accepted_in_any_form():
    x = FEATS_A["a2.40"]
    da = layer_similarity({"np": x}, {"torch": torch.as_tensor(x, dtype=torch.float32),
                                      "list": x.tolist()}, device="cpu")
    np.testing.assert_allclose(da.values, 1.0, atol=1e-6)


@pytest.mark.parametrize(("feats_a", "feats_b", "metric", "options", "parameter"), [
    ({}, None, "cka_linear", {}, "feats_a"),
    ([np.ones((4, 2))], None, "cka_linear", {}, "feats_a"),
    ({1: np.eye(4)}, None, "cka_linear", {}, "feats_a"),
    ({"a": np.eye(5)}, {"b": np.eye(6)}, "cka_linear", {}, "feats_b['b']"),
    ({"a": np.eye(5), "b": np.eye(6)}, None, "cka_linear", {}, "feats_a['b']"),
    ({"a": np.full((5, 3), np.nan)}, None, "cka_linear", {}, "feats_a['a']"),
    ({"a": np.ones((5, 3))}, None, "cka_linear", {}, "feats_a['a']"),
    ({"a": np.ones((5, 3, 2))}, None, "cka_linear", {}, "feats_a['a']"),
    ({"a": np.eye(3)}, None, "cka_linear_debiased", {}, "feats_a['a']"),
    (FEATS_A, None, "cka_linear", {"sigma_frac": 1.0}, "options"),
    (FEATS_A, None, "cka_rbf", {"sigma_frac": 0.0}, "sigma_frac"),
    (FEATS_A, None, "rsa", {"method": "x"}, "options"),
    (FEATS_A, None, "rsa", {"rdm_method": "crossnobis"}, "rdm_method"),
])
def test_bad_inputs_raise_input_error_naming_the_parameter(feats_a, feats_b, metric, options,
                                                           parameter):
    with pytest.raises(InputError) as info:
        layer_similarity(feats_a, feats_b, metric, device="cpu", **options)
    assert info.value.parameter == parameter
    assert info.value.fix


@pytest.mark.parametrize(("metric", "options"), [("cka", {}), ("rsa", {"compare": "pearsn"}),
                                                 ("rsa", {"rdm_method": "eucl"})])
def test_unknown_names_raise_with_suggestions(metric, options):
    with pytest.raises(UnknownNameError) as info:
        layer_similarity(FEATS_A, None, metric, device="cpu", **options)
    assert info.value.choices


def test_plot_draws_a_labelled_heatmap():
    da = layer_similarity(FEATS_A, FEATS_B, "cka_linear", device="cpu")
    ax = plot_layer_similarity(da)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(FEATS_B)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(FEATS_A)
    colorbar_ax = ax.figure.axes[-1]
    assert colorbar_ax.get_ylabel() == "linear CKA"  # the measure as a reader names it
    assert ax.get_xlabel().startswith("layers of ")
    rsa = plot_layer_similarity(layer_similarity(FEATS_A, FEATS_B, "rsa", device="cpu"))
    assert rsa.figure.axes[-1].get_ylabel() == \
        "RSA: Spearman \u03c1 of correlation-distance RDMs"
    np.testing.assert_array_equal(ax.images[0].get_array(), da.values)
    with pytest.raises(InputError):
        plot_layer_similarity(xr.DataArray(np.eye(2), dims=("x", "y")))
