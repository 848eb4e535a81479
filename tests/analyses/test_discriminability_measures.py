"""Discriminability of CKA, encoding and generic measures: planted truth and the metrics' own values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from cortexalign.analyses import benchmark_discriminability, bootstrap_model_scores, layer_choice
from cortexalign.bench import DiscriminabilitySpec
from cortexalign.errors import InputError
from cortexalign.metrics import score
from cortexalign.neural import make_responses

RIDGE = {"alphas": [0.1, 10.0, 1000.0], "inner_folds": 3, "n_folds": 3}


def _family(n: int, gap: float, n_models: int = 3, n_layers: int = 2, seed: int = 0,
            reps: int = 0):
    """Responses Z W + noise; model i's layers see Z with weight 1 - i * gap in unit noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 6))
    y = z @ rng.standard_normal((6, 15))
    y = (y[:, :, None] + 1.5 * rng.standard_normal((n, 15, reps)) if reps
         else y + 1.0 * rng.standard_normal((n, 15)))
    target = make_responses(y, [f"s{i}" for i in range(n)])
    models = {}
    for i in range(n_models):
        w = max(1.0 - i * gap, 0.0)
        models[f"m{i}"] = {f"l{j}": w * z @ rng.standard_normal((6, 12)) / 2.5
                           + rng.standard_normal((n, 12)) for j in range(n_layers)}
    return models, target


@pytest.mark.parametrize(("metric", "options"), [
    ("cka_linear", {}), ("cka_linear_debiased", {}), ("cka_rbf", {"sigma_frac": 0.7}),
    ("ridge", RIDGE), ("ridge", {**RIDGE, "normalize": True}), ("pls", {"n_components": 3}),
    ("neuron_to_neuron", {}), ("rsa_cv", {})])
def test_full_data_value_is_the_metrics_own(metric, options):
    models, target = _family(30, 0.3, n_models=2, reps=4 if options.get("normalize") else 0)
    res = bootstrap_model_scores(models, target, metric=metric, metric_options=options,
                                 n_bootstrap=3, seed=4)
    for j, name in enumerate(res.names):
        ref = max(score(metric, x, target, seed=4, **options).value
                  for x in models[name].values())
        assert res.scores_m[j] == pytest.approx(ref, abs=1e-10)
    assert res.samples_bm.shape == (3, 2) and np.isfinite(res.samples_bm).all()


@pytest.mark.parametrize("metric", ["cka_linear", "cka_linear_debiased", "cka_rbf"])
def test_cka_cross_validated_choice_equals_the_metric_on_folds(metric):
    """A fold's counts (1 inside, 0 outside) are the metric on that fold's stimuli."""
    models, target = _family(30, 0.3, n_models=2, n_layers=3)
    res = bootstrap_model_scores(models, target, metric=metric, rule="cv", n_folds=3,
                                 n_bootstrap=2, seed=1)
    for j, name in enumerate(res.names):
        ref = layer_choice(models[name], target, metric, rule="cv", n_folds=3, seed=1)
        assert res.scores_m[j] == pytest.approx(ref.value, abs=1e-10)
        assert res.layers[name] == ref.layers


def _separated(metric, options, n, gap, seeds=(0, 1)) -> float:
    out = []
    for seed in seeds:
        models, target = _family(n, gap, seed=seed, n_layers=1)
        d = benchmark_discriminability(models, target, rules=("best",), metric=metric,
                                       metric_options=options, n_bootstrap=200,
                                       seed=seed)["best"][1]
        out.append(d.fraction_separated)
    return float(np.mean(out))


@pytest.mark.parametrize(("metric", "options"), [("cka_linear", {}), ("ridge", RIDGE)])
def test_discriminability_rises_with_the_gap_and_the_stimulus_count(metric, options):
    assert _separated(metric, options, 40, 0.35) > _separated(metric, options, 40, 0.05)
    assert _separated(metric, options, 80, 0.2) > _separated(metric, options, 20, 0.2)
    assert _separated(metric, options, 80, 0.35) >= 2 / 3  # 3 models, clear steps


@pytest.mark.parametrize(("metric", "options", "n_sims"), [("cka_linear", {}, 40),
                                                          ("ridge", RIDGE, 20)])
def test_equal_models_are_separated_at_most_at_alpha(metric, options, n_sims):
    """Two models drawn alike: one pair, so a false separation is a test at alpha = 0.05; the
    count over simulations stays below the binomial 99.9% quantile."""
    hits = 0
    for seed in range(n_sims):
        models, target = _family(30, 0.0, n_models=2, n_layers=1, seed=500 + seed)
        d = benchmark_discriminability(models, target, rules=("best",), metric=metric,
                                       metric_options=options, n_bootstrap=200,
                                       seed=seed)["best"][1]
        hits += bool(d.separated_mm.any())
    assert hits <= binom.ppf(0.999, n_sims, 0.05)


def test_generic_path_is_few_resamples_and_refuses_when_too_slow():
    models, target = _family(24, 0.3, n_models=2, n_layers=1)
    res = bootstrap_model_scores(models, target, metric="rsa_cv", n_bootstrap=500,
                                 generic_n_bootstrap=4)
    assert res.samples_bm.shape == (4, 2)
    with pytest.raises(InputError, match="max_seconds"):
        bootstrap_model_scores(models, target, metric="rsa_cv", n_bootstrap=500,
                               generic_n_bootstrap=400, max_seconds=1e-6)


def test_spec_takes_the_generic_options():
    spec = DiscriminabilitySpec.model_validate({"generic_n_bootstrap": 10, "max_seconds": 30})
    assert spec.generic_n_bootstrap == 10
    with pytest.raises(ValueError):
        DiscriminabilitySpec.model_validate({"generic_n_bootstrap": 1})
