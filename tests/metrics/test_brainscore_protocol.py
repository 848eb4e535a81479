"""protocol='brainscore' reproduces Brain-Score's numbers, and the measures added beside it
(rsa_cv, cka_cv, neuron_to_neuron, reverse_ridge) match independent references.

References: an independent rebuild of Brain-Score's protocol written in this file with plain
scikit-learn and SciPy (loops, scipy.stats.pearsonr / spearmanr), and the numbers
benchmarks/brainscore_reference.py prints (pinned below; brainscore-vision itself does not
install beside our pins: it requires numpy<2 and scikit-learn<1.6).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

import cortexalign as ca
from cortexalign.errors import InputError, UnknownNameError

#: benchmarks/brainscore_reference.py on its fixed arrays
PINNED = {"pls": (0.4663709623, 0.0162142759), "ridge": (0.4670911649, 0.0161291213),
          "ceiling": 0.7951450192, "rsa": 0.2360714546}


def fixed_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((92, 200))
    w = rng.standard_normal((20, 100)) / math.sqrt(20)
    reps = (x[:, :20] @ w)[:, :, None] + 1.5 * rng.standard_normal((92, 100, 10))
    objects = np.repeat([f"object{i}" for i in range(4)], 23)
    return x, reps, objects


@pytest.fixture(scope="module")
def data():
    x, reps, objects = fixed_arrays()
    resp = ca.make_responses(reps, [f"s{i}" for i in range(92)]).assign_coords(
        object_name=("stimulus", objects))
    return x, reps, objects, resp


def _reference_regression(x, reps, objects, make):
    y, per_split = reps.mean(2), []
    for tr, te in StratifiedShuffleSplit(10, train_size=0.9, random_state=1).split(x, objects):
        pred = make().fit(x[tr], y[tr]).predict(x[te])
        per_split.append(np.median([scipy.stats.pearsonr(pred[:, j], y[te, j])[0]
                                    for j in range(y.shape[1])]))
    return np.mean(per_split), np.std(per_split) / math.sqrt(10)


def _reference_ceiling(reps):
    out = []
    for a, b in ShuffleSplit(10, train_size=0.5, random_state=1).split(np.zeros(reps.shape[2])):
        r = np.array([scipy.stats.pearsonr(reps[:, j, a].mean(1), reps[:, j, b].mean(1))[0]
                      for j in range(reps.shape[1])])
        out.append(np.median(2 * r / (1 + r)))
    return np.mean(out)


@pytest.mark.parametrize("metric,make", [
    ("pls", lambda: PLSRegression(n_components=25, scale=False)),
    ("ridge", lambda: Ridge(alpha=1.0))])
def test_regression_protocol_equals_the_rebuild_and_the_pinned_numbers(data, metric, make):
    x, reps, objects, resp = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PLS convergence warnings on noise components
        s = ca.score(metric, x, resp, protocol="brainscore")
        center, error = _reference_regression(x, reps, objects, make)
    ceiling = _reference_ceiling(reps)
    assert s.value == pytest.approx(center, abs=1e-9)
    assert s.extra["error"] == pytest.approx(error, abs=1e-9)
    assert s.ceiling_low == pytest.approx(ceiling, abs=1e-9)
    assert s.extra["ceiled"] == pytest.approx((center / ceiling) ** 2, abs=1e-9)
    assert s.value == pytest.approx(PINNED[metric][0], abs=1e-6)
    assert s.extra["error"] == pytest.approx(PINNED[metric][1], abs=1e-6)
    assert s.ceiling_low == pytest.approx(PINNED["ceiling"], abs=1e-6)
    assert s.extra["raw"].shape == (10, 100)  # per split x per neuroid, kept
    np.testing.assert_allclose(np.median(s.extra["raw"], 1), s.extra["per_split"])


def test_protocols_differ_where_they_should(data):
    x, _, _, resp = data
    ours = ca.score("ridge", x, resp)
    bs = ca.score("ridge", x, resp, protocol="brainscore")
    assert ours.extra.get("protocol", "cortexalign") == "cortexalign"
    assert bs.extra["protocol"] == "brainscore"
    assert abs(ours.value - bs.value) > 1e-3


def test_rsa_and_cka_protocol_values_equal_brainscore_definitions(data):
    x, reps, _, resp = data
    y = reps.mean(2)
    iu = np.triu_indices(92, 1)
    ref = scipy.stats.spearmanr((1 - np.corrcoef(x))[iu], (1 - np.corrcoef(y))[iu])[0]
    s = ca.score("rsa", x, resp, protocol="brainscore")
    assert s.value == pytest.approx(ref, abs=1e-12) == pytest.approx(PINNED["rsa"], abs=1e-6)
    h = np.eye(92) - 1 / 92
    kx, ky = h @ x @ x.T @ h, h @ y @ y.T @ h
    ref_cka = np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))
    assert ca.score("cka_linear", x, resp, protocol="brainscore").value == pytest.approx(
        ref_cka, abs=1e-12)
    assert ca.score("cka_linear", x, resp).value == pytest.approx(ref_cka, abs=1e-10)


def test_inter_subject_rsa_ceiling_is_brainscores_rsaceiling(data):
    x, reps, _, resp = data
    subjects = np.repeat(["a", "b", "c", "d"], 25)
    resp_s = resp.assign_coords(subject=("neuroid", subjects))
    s = ca.score("rsa", x, resp_s, protocol="brainscore")
    y = reps.mean(2)
    rdms = {k: 1 - np.corrcoef(y[:, subjects == k]) for k in "abcd"}
    iu = np.triu_indices(92, 1)
    ref = np.mean([scipy.stats.spearmanr(
        rdms[k][iu], np.mean([rdms[o] for o in "abcd" if o != k], 0)[iu])[0] for k in "abcd"])
    assert s.ceiling_low == pytest.approx(ref, abs=1e-12)
    assert "RSACeiling" in s.extra["ceiling_kind"]


def test_cross_validated_rsa_and_cka_average_the_test_splits(data):
    x, reps, objects, resp = data
    y = reps.mean(2)
    splits = list(StratifiedShuffleSplit(10, test_size=0.9, random_state=1).split(x, objects))

    def rsa(a, b):
        iu = np.triu_indices(len(a), 1)
        return scipy.stats.spearmanr((1 - np.corrcoef(a))[iu], (1 - np.corrcoef(b))[iu])[0]

    ref = [rsa(x[te], y[te]) for _, te in splits]
    s = ca.score("rsa_cv", x, resp)
    assert s.value == pytest.approx(np.mean(ref), abs=1e-12)
    assert s.extra["error"] == pytest.approx(np.std(ref) / math.sqrt(10), abs=1e-12)
    c = ca.score("cka_cv", x, resp)
    refc = [ca.cka(x[te], y[te]) for _, te in splits]
    assert c.value == pytest.approx(np.mean(refc), abs=1e-10)


def test_neuron_to_neuron_picks_the_planted_unit():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((80, 50))
    unit = rng.integers(0, 50, 12)
    y = x[:, unit] + 0.3 * rng.standard_normal((80, 12))
    resp = ca.make_responses(y, [f"s{i}" for i in range(80)])
    s = ca.score("neuron_to_neuron", x, resp)
    assert (s.extra["fold_params"] == unit[None, :]).all()  # every fold finds the planted unit
    # the held-out r of the chosen unit is that unit's r with the neuroid: a closed form
    assert s.value == pytest.approx(np.median([np.corrcoef(x[:, u], y[:, j])[0, 1]
                                               for j, u in enumerate(unit)]), abs=0.02)
    bs = ca.score("neuron_to_neuron", x, resp, protocol="brainscore", stratify_by=None)
    assert bs.value > 0.9


def test_reverse_predictivity_is_asymmetric():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((90, 30))
    resp = ca.make_responses(y, [f"s{i}" for i in range(90)])
    rich = np.hstack([y @ rng.standard_normal((30, 40)), rng.standard_normal((90, 40))])
    explained = y @ rng.standard_normal((30, 40))
    # forward: both models contain the neural signal; reverse: only one is explained by it
    assert ca.score("reverse_ridge", explained, resp).value > 0.9
    assert ca.score("reverse_ridge", rich, resp).value < ca.score(
        "reverse_ridge", explained, resp).value - 0.3


def test_bad_protocol_and_options_are_refused(data):
    x, _, _, resp = data
    with pytest.raises(UnknownNameError, match="Did you mean 'brainscore'"):
        ca.score("ridge", x, resp, protocol="brain-score")
    with pytest.raises(InputError, match="n_folds"):
        ca.score("ridge", x, resp, protocol="brainscore", n_folds=3)
    with pytest.raises(InputError, match="stratify_by"):
        ca.score("pls", x, resp, protocol="brainscore", stratify_by="category")
    rdms = ca.RDMSet(np.stack([ca.compute_rdm(x[:, :10]), ca.compute_rdm(x[:, 10:20])]),
                     [f"s{i}" for i in range(92)], descriptors={"subject": ["a", "b"]})
    with pytest.raises(InputError, match="responses"):
        ca.score("rsa", x, rdms, protocol="brainscore")
