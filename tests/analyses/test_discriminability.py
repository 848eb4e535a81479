"""Benchmark discriminability: rankings under paired resampling, against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cortexalign.analyses import (
    benchmark_discriminability,
    bootstrap_model_scores,
    layer_choice,
)
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import score
from cortexalign.neural import RDMSet, make_responses
from cortexalign.stats import discriminability


def test_rankings_by_hand():
    samples = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0], [3.0, 2.0, 2.0], [3.0, 1.5, 1.5]])
    d = discriminability(samples, np.array([3.0, 1.6, 1.5]), ["a", "b", "c"], alpha=0.7)
    assert d.p_above_mm[0, 1] == 1.0 and d.p_above_mm[1, 0] == 0.0
    # b vs c: above, below, tie, tie -> 1 + 0.5 + 0.5 of 4
    assert d.p_above_mm[1, 2] == pytest.approx(0.5)
    # a vs b: no resample on the far side of 0 -> 2 (1 + 0) / (4 + 1)
    assert d.p_values_mm[0, 1] == pytest.approx(0.4)
    assert d.p_values_mm[1, 2] == pytest.approx(1.0)  # min(1, 2 (1 + 3) / 5)
    np.testing.assert_allclose(d.rank_m, [1, 2, 3])
    assert d.rank_low_m[0] == d.rank_high_m[0] == 1
    # Benjamini-Hochberg over (0.4, 0.4, 1): 0.4 * 3 / 2 = 0.6
    assert d.q_values_mm[0, 1] == pytest.approx(0.6) and d.q_values_mm[1, 2] == 1.0
    assert d.separated_mm[0, 1] and not d.separated_mm[1, 2]
    assert d.n_distinguishable == 2  # a, then b (c is not separated from b)


def test_rankings_refuse_bad_input():
    with pytest.raises(InputError, match="samples_bm"):
        discriminability(np.ones((1, 3)), np.ones(3), ["a", "b", "c"])
    with pytest.raises(InputError, match="names"):
        discriminability(np.ones((5, 2)), np.ones(2), ["a", "a"])
    with pytest.raises(InputError, match="alpha"):
        discriminability(np.ones((5, 2)), np.ones(2), ["a", "b"], alpha=5)


def _family(n_stimuli: int, gap: float, n_models: int = 4, n_subjects: int = 4, seed: int = 0):
    """Subjects' responses share a latent signal; model i sees it with signal weight
    1 - i * gap in noise, so scores fall by a planted step down the family."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_stimuli, 8))
    rdms = []
    for _ in range(n_subjects):
        y = z @ rng.standard_normal((8, 30)) + 1.0 * rng.standard_normal((n_stimuli, 30))
        c = np.corrcoef(y)
        rdms.append(1 - c)
    target = RDMSet(np.stack(rdms), [f"s{i}" for i in range(n_stimuli)],
                    {"subject": np.arange(n_subjects)})
    models = {}
    for i in range(n_models):
        w = max(1.0 - i * gap, 0.0)
        layers = {}
        for j in range(2):
            x = z @ rng.standard_normal((8, 40))
            layers[f"l{j}"] = w * x / x.std() + rng.standard_normal((n_stimuli, 40))
        models[f"m{i}"] = layers
    return models, target


def test_engine_matches_the_rsa_metric_and_the_generic_layer_choice():
    models, target = _family(30, 0.2, n_models=2)
    for rule in ("best", "cv"):
        res = bootstrap_model_scores(models, target, rule=rule, n_bootstrap=5, n_folds=3)
        for j, name in enumerate(res.names):
            ref = layer_choice(models[name], target, "rsa", rule=rule, n_folds=3)
            assert res.scores_m[j] == pytest.approx(ref.value, abs=1e-10)
            assert res.layers[name] == ref.layers
    best = max(score("rsa", x, target).value for x in models["m0"].values())
    assert bootstrap_model_scores(models, target, n_bootstrap=3).scores_m[0] == \
        pytest.approx(best, abs=1e-10)


def _separation(n_stimuli, gap, seeds=(0, 1)):
    out = []
    for seed in seeds:
        models, target = _family(n_stimuli, gap, seed=seed)
        d = benchmark_discriminability(models, target, rules=("best",), n_bootstrap=200,
                                       seed=seed)["best"][1]
        out.append((d.fraction_separated, d.n_distinguishable))
    return np.mean(out, axis=0)


def test_discriminability_rises_with_the_planted_gap_and_the_stimulus_count():
    small_gap, big_gap = _separation(30, 0.08), _separation(30, 0.3)
    few, many = _separation(16, 0.15), _separation(48, 0.15)
    assert big_gap[0] > small_gap[0] and big_gap[1] >= small_gap[1]
    assert many[0] > few[0] and many[1] >= few[1]
    assert big_gap[1] >= 2


def test_equal_models_are_rarely_separated():
    """No planted difference: after FDR, a separated pair appears in few simulations."""
    hits = 0
    for seed in range(20):
        models, target = _family(24, 0.0, n_models=3, seed=100 + seed)
        d = benchmark_discriminability(models, target, rules=("cv",), n_bootstrap=100,
                                       n_folds=3, seed=seed)["cv"][1]
        hits += d.separated_mm.any()
    assert hits <= 4  # about alpha = 0.05 expected (BH under the complete null); 20 runs


def test_best_layer_is_optimistic_and_cross_validation_is_not():
    """Ten layers with no signal: the best one scores above 0 on the data that chose it; the
    cross-validated choice is centred on 0 (80 null models)."""
    rng = np.random.default_rng(5)
    n = 40
    target = make_responses(rng.standard_normal((n, 20)), [f"s{i}" for i in range(n)])
    best, cv = [], []
    for rep in range(40):
        models = {m: {f"l{j}": rng.standard_normal((n, 10)) for j in range(10)} for m in "ab"}
        best += list(bootstrap_model_scores(models, target, n_bootstrap=2, seed=rep).scores_m)
        cv += list(bootstrap_model_scores(models, target, rule="cv", n_folds=3, n_bootstrap=2,
                                          seed=rep).scores_m)
    assert np.mean(best) > 0.03  # about 1.5 standard errors of one layer's score
    assert abs(np.mean(cv)) < 0.02


def test_layer_choice_works_for_any_metric():
    rng = np.random.default_rng(2)
    n = 30
    z = rng.standard_normal((n, 5))
    target = make_responses(z @ rng.standard_normal((5, 12)), [f"s{i}" for i in range(n)])
    layers = {"signal": z @ rng.standard_normal((5, 16)), "noise": rng.standard_normal((n, 16))}
    lc = layer_choice(layers, target, "cka_linear", rule="cv", n_folds=3)
    assert lc.layers == ("signal",) * 3 and lc.value > 0.3


def test_bad_input_is_refused():
    models, target = _family(20, 0.2, n_models=2)
    with pytest.raises(UnknownNameError):
        bootstrap_model_scores(models, target, rule="oracle")
    with pytest.raises(InputError, match="models"):
        bootstrap_model_scores({"m0": models["m0"]}, target)
    with pytest.raises(InputError, match="n_folds"):
        bootstrap_model_scores(models, target, rule="cv", n_folds=19)
    with pytest.raises(InputError, match="features"):
        layer_choice({}, target)
