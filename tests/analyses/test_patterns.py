"""Alignment pattern analysis against explicit loops and planted truth, with calibrated nulls."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from cortexalign.analyses import (
    alignment_patterns,
    brain_alignment_patterns,
    copy_region,
    region_rdms,
    simulate_regions,
)
from cortexalign.analyses._resample import resampled_comparisons, stimulus_resamples, upper_kp
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural import make_responses
from cortexalign.stats import BOOTSTRAP_COMPARISONS, pair_weights


@pytest.fixture(scope="module")
def sim():
    data = simulate_regions(n_stimuli=36, n_regions=7, n_subjects=4, noise=0.5, seed=0)
    return data, region_rdms(data, "area")


def _spearman_upper(a, b):
    iu = np.triu_indices(a.shape[0], 1)
    return spearmanr(a[iu], b[iu])[0]


def test_brain_matrix_and_ceiling_match_explicit_loops(sim):
    _, rdms = sim
    brain = brain_alignment_patterns(rdms)
    regs, subs = np.asarray(rdms.regions_k), np.asarray(rdms.subjects_k)
    k = range(len(regs))
    c = np.array([[_spearman_upper(rdms.rdms_kss[i], rdms.rdms_kss[j]) for j in k] for i in k])
    names = brain.regions
    for r, q in itertools.product(range(len(names)), repeat=2):
        vals = [c[i, j] for i in k for j in k if regs[i] == names[r] and regs[j] == names[q]
                and subs[i] != subs[j]]
        assert brain.matrix_rr[r, q] == pytest.approx(np.mean(vals), abs=1e-12)
    # leave-one-subject-out ceiling of region 2, by hand
    r, lows, highs = 2, [], []
    others = [q for q in range(len(names)) if q != r]
    for s in np.unique(subs):
        me = [i for i in k if subs[i] == s and regs[i] == names[r]][0]
        own = [np.mean([c[me, j] for j in k if subs[j] != s and regs[j] == names[q]])
               for q in others]
        rest = [np.mean([c[i, j] for i in k for j in k if subs[i] != subs[j] and s not in
                         (subs[i], subs[j]) and regs[i] == names[r] and regs[j] == names[q]])
                for q in others]
        lows.append(pearsonr(own, rest)[0])
        highs.append(pearsonr(own, brain.matrix_rr[r, others])[0])
    assert brain.ceiling_low_r[r] == pytest.approx(np.mean(lows), abs=1e-10)
    assert brain.ceiling_high_r[r] == pytest.approx(np.mean(highs), abs=1e-10)


def test_planted_structure_neighbours_align_more(sim):
    brain = brain_alignment_patterns(sim[1])
    a = brain.matrix_rr
    for r in range(len(a)):
        off = [(abs(r - q), a[r, q]) for q in range(len(a)) if q != r]
        near = np.mean([v for d, v in off if d == 1])
        far = np.mean([v for d, v in off if d >= 2])
        assert near > far + 0.05
    assert (brain.ceiling_low_r > 0.8).all()  # patterns are stable across subjects


@pytest.mark.parametrize("region", ["R0", "R3", "R6"])
def test_a_copy_of_r_matches_r_and_a_shuffled_copy_does_not(sim, region):
    data, rdms = sim
    feats = copy_region(data, region, noise=0.5, seed=3)
    shuffled = feats[np.random.default_rng(4).permutation(len(feats))]
    res = alignment_patterns({"copy": feats, "shuffled": shuffled}, rdms,
                             assign={region: "copy"}, n_permutations=99, n_bootstrap=60)
    s = res.scores[0]
    assert s.value > 0.8 and s.p_value <= 0.02 and s.ci_low > 0.3
    # a similarity near its bound of 1: the resamples' noise pulls them down, so the percentile
    # interval may end just below the estimate
    assert s.ci_high > 0.9
    bad = [alignment_patterns({"g": feats[np.random.default_rng(i).permutation(len(feats))]},
                              rdms, assign={region: "g"}, n_permutations=39, seed=i).scores[0]
           for i in range(10)]  # one shuffle is significant 5% of the time: look at ten
    assert np.mean([b.p_value <= 0.05 for b in bad]) <= 0.3
    assert s.value > np.median([b.value for b in bad]) and s.p_value < min(b.p_value for b in bad)


def test_best_layer_assignment_picks_the_copy(sim):
    data, rdms = sim
    feats = {r: copy_region(data, r, noise=0.3, seed=7) for r in ("R1", "R3")}
    res = alignment_patterns(feats, rdms, n_permutations=0)
    chosen = {s.region: s.layer for s in res.scores}
    assert chosen["R1"] == "R1" and chosen["R3"] == "R3"
    assert all(s.assigned_by == "best_score" for s in res.scores)


@pytest.mark.parametrize("null", ["stimuli", "regions"])
def test_false_positive_rate_is_calibrated(sim, null):
    """Models unrelated to the brain (a copy with its stimulus labels shuffled): the p-values are
    uniform, so the rejection rate at 0.1 over 200 simulations stays within binomial bounds."""
    data, rdms = sim
    base = copy_region(data, "R2", noise=0.5, seed=11)
    n_sim, n_perm = 200, 19
    p = np.empty(n_sim)
    for i in range(n_sim):
        g = base[np.random.default_rng(1000 + i).permutation(len(base))]
        p[i] = alignment_patterns({"g": g}, rdms, assign={"R2": "g"}, null=null,
                                  n_permutations=n_perm, seed=i).scores[0].p_value
    rate = np.mean(p <= 0.1)  # P(p <= 2/20) = 0.1 exactly under H0
    assert 0.04 <= rate <= 0.17, rate  # binomial(200, 0.1): mean 20, sd 4.2
    assert 0.35 <= np.mean(p <= 0.5) <= 0.65


def test_weighted_resamples_match_the_stats_engine(rng):
    s = 20
    rdms = np.stack([np.abs(np.subtract.outer(x, x)) for x in rng.standard_normal((4, s))])
    rdms[0] = np.round(rdms[0], 1)  # ties
    vec = upper_kp(rdms)
    counts = stimulus_resamples(s, 15, seed=2)
    idx = torch.as_tensor(np.repeat(np.arange(s)[None], 15, 0))  # counts of one: no resampling
    for method in ("spearman", "pearson", "cosine", "kendall_tau_a"):
        got = resampled_comparisons(vec, vec, method, counts)
        w = pair_weights(torch.as_tensor(np.stack([np.repeat(np.arange(s), c.astype(int))
                                                   for c in counts])), s)
        ref = np.stack([BOOTSTRAP_COMPARISONS[method](vec[k], vec, w, torch.as_tensor(counts))
                        .numpy() for k in range(4)], axis=1)
        np.testing.assert_allclose(got, ref, atol=1e-12)
        full = resampled_comparisons(vec, vec, method, np.ones((1, s)))[0]
        one = BOOTSTRAP_COMPARISONS[method](vec[1], vec, pair_weights(idx[:1], s),
                                            torch.ones(1, s, dtype=torch.float64))[0]
        np.testing.assert_allclose(full[1], one.numpy(), atol=1e-12)


def test_mouse_areas_by_cre_lines_each_mouse_one_region():
    """Allen layout: each mouse is imaged in one area x Cre line; regions are the combinations."""
    data = simulate_regions(n_stimuli=30, n_regions=4, n_subjects=3, n_neuroids=25, seed=5,
                            region_names=["VISp", "VISl", "VISal", "VISpm"])
    area = data["area"].values
    keep = []
    mice, cre = [], []
    for a_i, a in enumerate(["VISp", "VISl", "VISal", "VISpm"]):
        for sub_i, sub in enumerate(["sub0", "sub1", "sub2"]):
            cols = np.flatnonzero((area == a) & (data["subject"].values == sub))
            keep += cols.tolist()
            mice += [f"mouse{a_i}{sub_i}"] * len(cols)
            cre += ["Cux2" if sub_i % 2 == 0 else "Rorb"] * len(cols)
    mouse = make_responses(data.values[:, keep], data["stimulus"].values,
                           coords={"area": area[keep], "cre_line": cre, "subject": mice})
    rdms = region_rdms(mouse, ("area", "cre_line"))
    assert set(rdms.regions) == {f"{a}/{c}" for a in ["VISp", "VISl", "VISal", "VISpm"]
                                 for c in ["Cux2", "Rorb"]}
    assert len(set(rdms.subjects_k)) == len(rdms.subjects_k)  # one region per mouse
    brain = brain_alignment_patterns(rdms)
    assert np.isfinite(brain.matrix_rr[0, 1:]).all()
    feats = copy_region(data, "VISl", noise=0.3)
    s = alignment_patterns({"copy": feats}, rdms, assign={"VISl/Cux2": "copy"},
                           n_permutations=99).scores[0]
    assert s.value > 0.6 and s.p_value <= 0.05


def test_bad_input_is_refused(sim):
    data, rdms = sim
    feats = copy_region(data, "R1")
    with pytest.raises(InputError, match="regions"):
        brain_alignment_patterns(region_rdms(data.isel(neuroid=data["area"].isin(
            ["R0", "R1", "R2"])), "area"))
    with pytest.raises(UnknownNameError):
        alignment_patterns({"f": feats}, rdms, similarity="kendal")
    with pytest.raises(InputError, match="assign"):
        alignment_patterns({"f": feats}, rdms, assign={"R1": "nope"})
    with pytest.raises(InputError, match="features"):
        alignment_patterns({"f": feats[:-1]}, rdms)
    with pytest.raises(InputError, match="n_permutations"):
        alignment_patterns({"f": feats}, rdms, n_permutations=-1)


@pytest.mark.parametrize("compare", ["spearman", "pearson", "cosine"])
def test_permuted_pair_indices_equal_permuting_the_rdms(sim, compare, monkeypatch):
    """The fast null (entries of the model's upper triangle permuted, no re-ranking) gives the
    same p-values as recomputing every permuted RDM and its comparisons."""
    from cortexalign.analyses import _pattern_scores

    data, rdms = sim
    layers = {f"l{k}": copy_region(data, f"R{k}", noise=2.0, seed=k) for k in range(3)}
    fast = alignment_patterns(layers, rdms, compare=compare, n_permutations=30, seed=3)
    monkeypatch.setattr(_pattern_scores, "_unit_vectors", lambda *a: None)
    slow = alignment_patterns(layers, rdms, compare=compare, n_permutations=30, seed=3)
    assert [s.p_value for s in fast.scores] == [s.p_value for s in slow.scores]
