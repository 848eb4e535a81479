"""The permutation nulls computed the fast way equal the direct computation.

Map metrics: the model maps are scaled once and permutations run in chunks; the reference is one
permutation at a time through ``MAP_MEASURES``. RSA with Spearman: the model RDM is ranked once
and relabelled ranks are compared by Pearson; the reference ranks every relabelled RDM.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.metrics._map_metric import map_permutation_null
from cortexalign.metrics._maps import MAP_MEASURES
from cortexalign.metrics._rsa_permutation import rank_matrix
from cortexalign.neural._maps import WEIGHTINGS
from cortexalign.rdm import average_ranks, compare_vectors, upper_tri


@pytest.mark.parametrize("measure", sorted(MAP_MEASURES))
@pytest.mark.parametrize("n_perm", [1, 7, 50])
@pytest.mark.parametrize("scaling", ["minmax", "zscore"])
def test_map_null_equals_one_permutation_at_a_time(measure, n_perm, scaling):
    rng = np.random.default_rng(0)
    maps = rng.random((20, 6, 5))
    r_sn, img_sp = rng.normal(size=(20, 9)), rng.normal(size=(20, 30))
    got = map_permutation_null(maps, r_sn, img_sp, measure=measure, scaling=scaling,
                               weighting="zscore", n_permutations=n_perm, seed=4)
    w_ns, ref_rng = WEIGHTINGS["zscore"](r_sn.T), np.random.default_rng(4)
    want = [np.median(MAP_MEASURES[measure](maps.reshape(20, -1),
                                            w_ns @ img_sp[ref_rng.permutation(20)], scaling))
            for _ in range(n_perm)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("measure", sorted(MAP_MEASURES))
def test_map_null_is_the_same_in_small_chunks(measure, monkeypatch):
    from cortexalign.metrics import _map_metric

    rng = np.random.default_rng(1)
    maps = rng.random((20, 6, 5))
    r_sn, img_sp = rng.normal(size=(20, 9)), rng.normal(size=(20, 30))
    args = dict(measure=measure, scaling="minmax", weighting="zscore", n_permutations=23, seed=2)
    whole = map_permutation_null(maps, r_sn, img_sp, **args)
    monkeypatch.setattr(_map_metric, "NULL_CHUNK_VALUES", 9 * 30 * 2)  # two per chunk
    np.testing.assert_allclose(map_permutation_null(maps, r_sn, img_sp, **args), whole,
                               rtol=0, atol=1e-12)


def test_ranked_rdm_relabelled_gives_the_spearman_of_the_relabelled_rdm():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(15, 4, generator=gen, dtype=torch.float64)
    rdm = torch.cdist(x, x)
    rdm[0, 1] = rdm[1, 0] = rdm[2, 3]  # a tie, to exercise average ranks
    target = torch.rand(3, 105, generator=gen, dtype=torch.float64)
    ranks, target_r = rank_matrix(rdm), average_ranks(target)
    for _ in range(5):
        p = torch.randperm(15, generator=gen)
        want = compare_vectors(upper_tri(rdm[p][:, p])[None], target, "spearman")
        got = compare_vectors(upper_tri(ranks[p][:, p])[None], target_r, "pearson")
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("compare", ["pearson", "cosine"])
def test_relabelled_unit_vectors_give_the_relabelled_comparison(compare):
    """The RSA null's shortcut: a relabelled RDM's unit vector is the relabelled unit vector, so
    one (P, pairs) matrix, kept per model RDM, serves every target."""
    from cortexalign.metrics._rsa_permutation import _null_units, _relabelled, _unit

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(14, 5, generator=gen, dtype=torch.float64)
    rdm = torch.cdist(x, x)
    target = torch.rand(2, 91, generator=gen, dtype=torch.float64)
    units = torch.cat(list(_null_units(rdm, compare, seed=3, n_permutations=40, chunk=16)))
    assert units.shape == (40, 91)
    want = torch.cat([compare_vectors(upper_tri(r), target, compare)
                      for r in _relabelled(rdm, 3, 40, 16)])
    torch.testing.assert_close(units @ _unit(target, compare).T, want, rtol=0, atol=1e-12)
    kept = _null_units(rdm, compare, seed=3, n_permutations=40, chunk=16)
    assert kept is _null_units(rdm, compare, seed=3, n_permutations=40, chunk=16)  # kept
