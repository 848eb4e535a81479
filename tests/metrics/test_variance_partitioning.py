"""Variance partitioning vs scikit-learn (StandardScaler + Ridge on the same KFold splits,
inclusion-exclusion by hand), synthetic ground truth, and the input checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

import cortexalign
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features._extract import Features
from cortexalign.metrics import VariancePartition, variance_partitioning
from cortexalign.metrics._partition import SET_SCALINGS
from cortexalign.neural import RDMSet, make_responses

# reference scalings, fitted on the training rows only (a new SET_SCALINGS entry needs one here)
REF_SCALINGS = {"zscore": lambda d: 1.0, "zscore_balanced": lambda d: 1.0 / np.sqrt(d)}


def _responses(y_sn):
    return make_responses(y_sn, [f"im{i}" for i in range(len(y_sn))])


def _sets(rng, s=40, dims=(6, 30, 4), n=5):
    """Sets of different widths and scales (the union A+B is wider than the training folds)."""
    xs = {name: rng.normal(size=(s, d)) * scale + shift
          for name, d, scale, shift in zip("ABC", dims, (1.0, 20.0, 0.1), (3.0, -1.0, 0.0),
                                            strict=False)}
    y = sum(x[:, :3] @ rng.normal(size=(3, n)) for x in xs.values()) + rng.normal(size=(s, n))
    return xs, y


def _ref_r2(xs, y, union, alpha_fn, n_folds, seed, scale):
    """Held-out R^2 of one union: StandardScaler per set on the training rows, sklearn Ridge."""
    pred = np.zeros_like(y)
    for fold, (tr, te) in enumerate(KFold(n_folds, shuffle=True, random_state=seed).split(y)):
        parts_tr, parts_te = [], []
        for name in union:
            sc = StandardScaler().fit(xs[name][tr])
            k = scale(xs[name].shape[1])
            parts_tr.append(sc.transform(xs[name][tr]) * k)
            parts_te.append(sc.transform(xs[name][te]) * k)
        x_tr, x_te = np.hstack(parts_tr), np.hstack(parts_te)
        for j in range(y.shape[1]):
            model = Ridge(alpha=alpha_fn(fold, j)).fit(x_tr, y[tr, j])
            pred[te, j] = model.predict(x_te)
    return r2_score(y, pred, multioutput="raw_values")


def _hand_components(r):
    """Inclusion-exclusion written out (de Heer et al. 2017) from {union key: R^2}."""
    if "C" not in r:
        return {"unique:A": r["A+B"] - r["B"], "unique:B": r["A+B"] - r["A"],
                "shared:A&B": r["A"] + r["B"] - r["A+B"]}
    full = r["A+B+C"]
    return {"unique:A": full - r["B+C"], "unique:B": full - r["A+C"], "unique:C": full - r["A+B"],
            "shared:A&B": r["A+C"] + r["B+C"] - r["C"] - full,
            "shared:A&C": r["A+B"] + r["B+C"] - r["B"] - full,
            "shared:B&C": r["A+B"] + r["A+C"] - r["A"] - full,
            "shared:A&B&C": r["A"] + r["B"] + r["C"] - r["A+B"] - r["A+C"] - r["B+C"] + full}


@pytest.mark.parametrize("scaling", sorted(SET_SCALINGS))
@pytest.mark.parametrize("n_sets", [2, 3])
def test_one_penalty_matches_sklearn_and_hand_inclusion_exclusion(rng, scaling, n_sets):
    xs, y = _sets(rng)
    xs = dict(list(xs.items())[:n_sets])
    vp = variance_partitioning(xs, _responses(y), n_folds=4, seed=3, alphas=[2.5],
                               inner_folds=3, scaling=scaling)
    unions = ["A", "B", "A+B"] if n_sets == 2 else ["A", "B", "C", "A+B", "A+C", "B+C", "A+B+C"]
    assert list(vp.r2) == unions
    ref = {u: _ref_r2(xs, y, u.split("+"), lambda f, j: 2.5, 4, 3, REF_SCALINGS[scaling])
           for u in unions}
    for u in unions:
        np.testing.assert_allclose(vp.r2[u], ref[u], atol=1e-8, err_msg=u)
    hand = _hand_components(ref)
    assert list(vp.components) == list(hand)
    for key, value in hand.items():
        np.testing.assert_allclose(vp.components[key], value, atol=1e-8, err_msg=key)


def test_per_neuroid_penalties_match_sklearn_with_the_chosen_penalties(rng):
    xs, y = _sets(rng, s=48, dims=(5, 8), n=4)
    y = y + rng.normal(size=y.shape) * np.array([0.1, 3.0, 10.0, 50.0])  # different best alphas
    alphas = np.logspace(-2, 4, 7)
    vp = variance_partitioning(xs, _responses(y), n_folds=4, seed=1, alphas=alphas, inner_folds=3)
    assert len(np.unique(vp.alphas["A+B"])) > 1  # the penalties do differ
    for u, chosen in vp.alphas.items():
        assert chosen.shape == (4, 4)
        ref = _ref_r2(xs, y, u.split("+"), lambda f, j, c=chosen: c[f, j], 4, 1,
                      REF_SCALINGS["zscore"])
        np.testing.assert_allclose(vp.r2[u], ref, atol=1e-8, err_msg=u)
    # the choice itself: inner 3-fold CV (seed 1 + fold) on the z-scored union, sklearn Ridge
    for fold, (tr, _) in enumerate(KFold(4, shuffle=True, random_state=1).split(y)):
        x_tr = np.hstack([StandardScaler().fit_transform(xs[k][tr]) for k in "AB"])
        inner = list(KFold(3, shuffle=True, random_state=1 + fold).split(x_tr))
        for j in range(y.shape[1]):
            cv = [np.mean([-np.mean((Ridge(alpha=a).fit(x_tr[i], y[tr][i, j]).predict(x_tr[v])
                                     - y[tr][v, j]) ** 2) for i, v in inner]) for a in alphas]
            assert vp.alphas["A+B"][fold, j] == pytest.approx(alphas[int(np.argmax(cv))])


def test_responses_from_one_set_only_have_no_unique_or_shared_part_in_the_other(rng):
    s, n = 200, 6
    a, b = rng.normal(size=(s, 10)), rng.normal(size=(s, 8))
    y = a @ rng.normal(size=(10, n)) + 0.3 * rng.normal(size=(s, n))
    vp = variance_partitioning({"A": a, "B": b}, _responses(y), alphas=np.logspace(-2, 5, 8))
    med = vp.median_components
    assert med["unique:A"] > 0.5
    assert abs(med["unique:B"]) < 0.05
    assert abs(med["shared:A&B"]) < 0.05


def test_a_latent_in_both_sets_gives_shared_variance(rng):
    s, n, k = 200, 6, 3
    z = rng.normal(size=(s, k))
    a = np.hstack([z @ rng.normal(size=(k, 5)), rng.normal(size=(s, 5))])
    b = np.hstack([z @ rng.normal(size=(k, 4)), rng.normal(size=(s, 6))])
    y = z @ rng.normal(size=(k, n)) + 0.3 * rng.normal(size=(s, n))
    vp = variance_partitioning({"A": a, "B": b}, _responses(y), alphas=np.logspace(-2, 5, 8))
    med = vp.median_components
    assert med["shared:A&B"] > 0.5
    assert med["shared:A&B"] > 5 * max(abs(med["unique:A"]), abs(med["unique:B"]))


def test_three_sets_components_sum_to_the_full_union_and_frame(rng):
    xs, y = _sets(rng, s=36, dims=(4, 6, 3), n=3)
    target = _responses(y[:, :, None] + 0.1 * rng.normal(size=(36, 3, 2)))  # repetitions averaged
    vp = variance_partitioning(xs, target, n_folds=3, alphas=np.logspace(-1, 3, 5), inner_folds=3)
    assert isinstance(vp, VariancePartition) and vp.set_names == ("A", "B", "C")
    assert len(vp.components) == 7
    np.testing.assert_allclose(sum(vp.components.values()), vp.r2["A+B+C"], atol=1e-12)
    frame = vp.to_frame()
    assert list(frame.columns) == ["neuroid", "kind", "name", "value"]
    assert len(frame) == 3 * (7 + 7)
    comp = frame[frame.kind == "component"].groupby("name")["value"].median()
    for key, value in vp.median_components.items():
        assert comp[key] == pytest.approx(value)
    assert set(frame.neuroid) == set(target["neuroid"].values.tolist())
    assert len(vp.plot().axes[0].patches) == 7


def test_exported_from_the_package():
    assert cortexalign.variance_partitioning is variance_partitioning


def test_features_objects_must_follow_the_target_order(rng):
    xs, y = _sets(rng, s=12, dims=(3, 3), n=2)
    target = _responses(y)
    ids = tuple(target["stimulus"].values.tolist())
    feats = {k: Features(v, ids, "m", "l", "avg", "key") for k, v in xs.items()}
    ok = variance_partitioning(feats, target, n_folds=3, alphas=[1.0], inner_folds=2)
    assert set(ok.r2) == {"A", "B", "A+B"}
    feats["B"] = Features(xs["B"][::-1].copy(), ids[::-1], "m", "l", "avg", "key")
    with pytest.raises(InputError) as err:
        variance_partitioning(feats, target, n_folds=3, alphas=[1.0], inner_folds=2)
    assert err.value.parameter == "features['B']"


def _bad_cases(rng):
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 4))
    y = _responses(rng.normal(size=(20, 2)))
    nan = a.copy()
    nan[2, 1] = np.nan
    rdm_ss = np.abs(a[:, :1] - a[:, :1].T)
    rdms = RDMSet(rdm_ss[None], tuple(f"im{i}" for i in range(20)))
    return {
        "one set": ({"A": a}, y, {}, "features"),
        "four sets": ({"A": a, "B": b, "C": a, "D": b}, y, {}, "features"),
        "not a dict": ([a, b], y, {}, "features"),
        "bad name": ({"A+B": a, "B": b}, y, {}, "features"),
        "rows differ": ({"A": a, "B": b[:19]}, y, {}, "features['B']"),
        "rows vs target": ({"A": a[:19], "B": b[:19]}, y, {}, "features"),
        "NaN": ({"A": nan, "B": b}, y, {}, "features['A']"),
        "3-d set": ({"A": a[:, :, None], "B": b}, y, {}, "features['A']"),
        "constant set": ({"A": np.ones((20, 3)), "B": b}, y, {}, "features['A']"),
        "RDM target": ({"A": a, "B": b}, rdms, {}, "target"),
        "n_folds": ({"A": a, "B": b}, y, {"n_folds": 21}, "n_folds"),
        "alphas": ({"A": a, "B": b}, y, {"alphas": [-1.0]}, "alphas"),
    }


BAD_CASES = ["one set", "four sets", "not a dict", "bad name", "rows differ", "rows vs target",
             "NaN", "3-d set", "constant set", "RDM target", "n_folds", "alphas"]


def test_every_bad_case_is_run(rng):
    assert sorted(_bad_cases(rng)) == sorted(BAD_CASES)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_name_the_parameter(rng, case):
    features, target, options, parameter = _bad_cases(rng)[case]
    with pytest.raises(InputError) as err:
        variance_partitioning(features, target, **options)
    assert err.value.parameter == parameter


def test_unknown_scaling_lists_the_choices(rng):
    with pytest.raises(UnknownNameError, match="zscore"):
        variance_partitioning({"A": rng.normal(size=(10, 2)), "B": rng.normal(size=(10, 2))},
                              _responses(rng.normal(size=(10, 2))), scaling="zscor")
