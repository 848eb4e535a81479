"""The ``rsa`` metric on the bundled 92-object human IT RDMs and on responses with repetitions."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import rsatoolbox

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import compute_rdm, score
from cortexalign.neural import load_neural, make_responses
from cortexalign.stats import split_half_ceiling

RSA_NAMES = {"spearman": "spearman", "kendall_tau_a": "tau-a", "pearson": "corr", "cosine": "cosine",
             "rho_a": "rho-a", "cosine_cov": "cosine_cov", "corr_cov": "corr_cov"}


@pytest.fixture(scope="module")
def human_it():
    return load_neural("kriegeskorte92.human_IT")


@pytest.fixture(scope="module")
def features_k92():
    # features whose RDM resembles the human IT data: the group-mean RDM's leading dimensions
    rdm = load_neural("kriegeskorte92.human_IT").mean()
    vals, vecs = np.linalg.eigh(-0.5 * (rdm - rdm.mean(0) - rdm.mean(1)[:, None] + rdm.mean()))
    rng = np.random.default_rng(1)
    return vecs[:, -20:] * np.sqrt(np.abs(vals[-20:])) + 0.02 * rng.normal(size=(92, 20))


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_value_and_ceiling_match_rsatoolbox_by_subject(compare, human_it, features_k92):
    sc = score("rsa", features_k92, human_it, compare=compare, device="cpu")
    model = rsatoolbox.rdm.RDMs(compute_rdm(features_k92, "correlation", device="cpu")[None])
    data = rsatoolbox.rdm.RDMs(human_it.rdms,
                               rdm_descriptors={"subject": human_it.descriptors["subject"]})
    per_rdm = rsatoolbox.rdm.compare(model, data, RSA_NAMES[compare])[0]
    subjects = human_it.descriptors["subject"]
    expected = np.mean([per_rdm[subjects == g].mean() for g in np.unique(subjects)])
    assert sc.value == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(sc.extra["per_rdm"], per_rdm, atol=1e-6)
    low, high = rsatoolbox.inference.boot_noise_ceiling(data, RSA_NAMES[compare], "subject")
    assert (sc.ceiling_low, sc.ceiling_high) == pytest.approx((low, high), abs=1e-6)
    assert sc.extra["ceiling_by"] == "subject" and sc.n_stimuli == 92
    assert sc.normalized == pytest.approx(sc.value / sc.ceiling_low)


def test_per_rdm_grouping_matches_rsatoolbox_index(human_it, features_k92):
    sc = score("rsa", features_k92, human_it, ceiling_by=None, device="cpu")
    data = rsatoolbox.rdm.RDMs(human_it.rdms)
    low, high = rsatoolbox.inference.boot_noise_ceiling(data, "spearman", "index")
    assert (sc.ceiling_low, sc.ceiling_high) == pytest.approx((low, high), abs=1e-6)
    assert sc.value == pytest.approx(np.mean(sc.extra["per_rdm"]))


def test_bootstrap_interval_on_kriegeskorte92(human_it, features_k92):
    a = score("rsa", features_k92, human_it, n_bootstrap=200, seed=0, device="cpu")
    assert a.ci_low < a.value < a.ci_high
    assert a.ci_high - a.ci_low < 0.5


def test_single_rdm_target_has_no_ceiling(features_k92):
    monkey = load_neural("kriegeskorte92.monkey_IT")
    sc = score("rsa", features_k92, monkey, device="cpu")
    assert math.isnan(sc.ceiling_low) and math.isnan(sc.ceiling_high)


def _responses(rng, reps=True):
    signal = rng.normal(size=(25, 40))
    values = signal[..., None] + 0.8 * rng.normal(size=(25, 40, 6)) if reps else signal
    return signal, make_responses(values, [f"s{i}" for i in range(25)])


def test_responses_target_with_repetitions(rng):
    signal, resp = _responses(rng)
    feats = signal @ rng.normal(size=(40, 15))
    sc = score("rsa", feats, resp, compare="pearson", device="cpu", seed=4)
    iu = np.triu_indices(25, 1)
    neural = compute_rdm(resp.values.mean(axis=2), "correlation", device="cpu")[iu]
    model = compute_rdm(feats, "correlation", device="cpu")[iu]
    assert sc.value == pytest.approx(np.corrcoef(model, neural)[0, 1], abs=1e-12)
    import torch

    expected = split_half_ceiling(torch.as_tensor(resp.values), "correlation", "pearson", 10, 4)
    assert sc.ceiling_low == sc.ceiling_high == pytest.approx(expected[1])
    assert sc.extra["split_half_r"] == pytest.approx(expected[0])


def test_crossnobis_neural_rdm(rng):
    signal, resp = _responses(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc = score("rsa", signal, resp, neural_rdm_method="crossnobis", rdm_method="euclidean",
                   device="cpu")
    assert sc.value > 0.5 and np.isfinite(sc.ceiling_low)
    _, flat = _responses(rng, reps=False)
    with pytest.raises(InputError, match="repetition"):
        score("rsa", signal, flat, neural_rdm_method="crossnobis", device="cpu")
    assert math.isnan(score("rsa", signal, flat, device="cpu").ceiling_low)


def test_bad_options(rng, human_it):
    feats = rng.normal(size=(92, 5))
    with pytest.raises(UnknownNameError, match="spearman"):
        score("rsa", feats, human_it, compare="spearmann", device="cpu")
    with pytest.raises(UnknownNameError, match="correlation"):
        score("rsa", feats, human_it, rdm_method="corr", device="cpu")
    with pytest.raises(InputError, match="crossnobis"):
        score("rsa", feats, human_it, rdm_method="crossnobis", device="cpu")
    with pytest.raises(InputError, match="ceiling_by"):
        score("rsa", feats, human_it, comapre="pearson", device="cpu")
    with pytest.raises(InputError, match="RDMSet or a responses"):
        score("rsa", feats, feats, device="cpu")
    with pytest.raises(UnknownNameError, match="'subject'"):  # a misspelt descriptor: not 'each RDM'
        score("rsa", feats, human_it, ceiling_by="subjet", device="cpu")


def test_rdms_without_subjects_are_not_taken_as_subjects_unless_asked(rng, human_it):
    """Issue 20 case 7: several RDMs without a 'subject' descriptor used to be taken each as a
    subject, silently (a "ceiling" between areas). Now the default refuses them, naming the fix;
    ceiling_by=None (the user's word) treats each RDM alone and says so."""
    feats = rng.normal(size=(92, 5))
    bare = dataclasses.replace(human_it, descriptors={})
    with pytest.raises(InputError, match="'subject' descriptor on the 8 RDMs") as err:
        score("rsa", feats, bare, device="cpu")
    assert "ceiling_by=None" in str(err.value)
    alone = score("rsa", feats, bare, ceiling_by=None, device="cpu")
    assert alone.extra["ceiling_by"] == "rdm" and np.isfinite(alone.ceiling_low)
    assert "each RDM a subject" in alone.extra["ceiling"]
    by_subject = score("rsa", feats, human_it, device="cpu")  # the bundled data has subjects
    assert by_subject.extra["ceiling_by"] == "subject"
    assert by_subject.extra["rdm_groups"] == ["1", "1", "2", "2", "3", "3", "4", "4"]
