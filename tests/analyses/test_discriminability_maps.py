"""Discriminability of the map measures (``map_*``): planted neuron maps, the metric's own value."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from cortexalign.analyses import benchmark_discriminability, bootstrap_model_scores
from cortexalign.metrics import resampled_map_scores, score
from cortexalign.neural import make_responses
from cortexalign.stimuli import StimulusSet


def _planted(n_stim: int = 40, noise: tuple[float, ...] = (0.5, 3.0), seed: int = 0,
             n_layers: int = 1):
    """White-noise 8 x 8 images; neuron k responds to the image's projection on a planted
    receptive field (one of two), so its neuron map is that field. Model i's map of each
    stimulus is a planted field plus pixel noise of sd ``noise[i]`` (lower: better)."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n_stim, 8, 8)).astype(np.uint8)
    stimuli = StimulusSet.from_arrays(imgs, name=f"noise{seed}")
    x = imgs.reshape(n_stim, -1) / 255.0
    x = x - x.mean(0)
    fields = rng.standard_normal((2, 64))
    which = np.arange(12) % 2
    y = x @ fields[which].T + 0.3 * rng.standard_normal((n_stim, 12))
    target = make_responses(y, list(stimuli.ids))
    models = {}
    for i, sd in enumerate(noise):
        models[f"m{i}"] = {
            f"l{j}": (fields[rng.integers(0, 2, n_stim)]
                      + sd * rng.standard_normal((n_stim, 64))).reshape(n_stim, 8, 8)
            for j in range(n_layers)}
    return models, target, stimuli


@pytest.mark.parametrize("metric", ["map_pearson", "map_spearman", "map_rmse"])
def test_full_data_value_is_the_metrics_own(metric):
    models, target, stimuli = _planted(24, n_layers=2)
    res = bootstrap_model_scores(models, target, metric=metric, n_bootstrap=3, seed=2,
                                 metric_options={"stimuli": stimuli})
    sign = -1.0 if metric == "map_rmse" else 1.0  # rmse is ranked as -RMSE
    for j, name in enumerate(res.names):
        ref = max(sign * score(metric, x, target, stimuli=stimuli).value
                  for x in models[name].values())
        assert res.scores_m[j] == pytest.approx(ref, abs=1e-10)
    assert res.samples_bm.shape == (3, 2) and np.isfinite(res.samples_bm).all()


def test_a_resample_is_the_metric_on_the_drawn_stimuli():
    """Counts (2, 0, 1, ...) give the metric on the stimuli repeated, via renamed copies."""
    models, target, stimuli = _planted(16)
    maps = models["m0"]["l0"]
    counts = np.random.default_rng(3).integers(0, 3, (1, 16))
    idx = np.repeat(np.arange(16), counts[0])
    ids = [f"c{k}" for k in range(len(idx))]
    sub = StimulusSet(name="drawn", ids=tuple(ids),
                      loader=lambda k: stimuli.image(int(idx[k])))
    y = make_responses(target.values[idx], ids)
    ref = score("map_pearson", maps[idx], y, stimuli=sub).value
    got = resampled_map_scores(maps, target, stimuli, counts, measure="pearson")
    assert got[0] == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("rule", ["best", "cv"])
def test_the_better_maps_rank_above(rule):
    models, target, stimuli = _planted(60, noise=(0.3, 5.0), n_layers=2)
    d = benchmark_discriminability(models, target, rules=(rule,), metric="map_pearson",
                                   metric_options={"stimuli": stimuli}, n_bootstrap=200,
                                   n_folds=4, seed=0)[rule][1]
    i, j = d.names.index("m0"), d.names.index("m1")
    assert d.p_above_mm[i, j] > 0.95 and d.separated_mm[i, j]
    assert d.rank_m[i] == 1


def test_equal_maps_are_separated_at_most_at_alpha():
    """Two models drawn alike: a false separation is a test at alpha = 0.05; the count over
    simulations stays below the binomial 99.9% quantile."""
    n_sims, hits = 30, 0
    for seed in range(n_sims):
        models, target, stimuli = _planted(30, noise=(1.5, 1.5), seed=300 + seed)
        d = benchmark_discriminability(models, target, rules=("best",), metric="map_pearson",
                                       metric_options={"stimuli": stimuli}, n_bootstrap=200,
                                       seed=seed)["best"][1]
        hits += bool(d.separated_mm.any())
    assert hits <= binom.ppf(0.999, n_sims, 0.05)


def test_per_model_pad_square_and_missing_stimuli():
    models, target, stimuli = _planted(16)
    res = bootstrap_model_scores(models, target, metric="map_pearson", n_bootstrap=2,
                                 metric_options={"stimuli": stimuli,
                                                 "pad_square": {"m0": True, "m1": False}})
    assert np.isfinite(res.scores_m).all()
    from cortexalign.errors import InputError

    with pytest.raises(InputError, match="stimuli"):
        bootstrap_model_scores(models, target, metric="map_pearson", n_bootstrap=2)


def test_layer_choice_of_map_measures_cuts_the_stimuli_and_follows_the_direction():
    from cortexalign.analyses import layer_choice

    models, target, stimuli = _planted(30, noise=(0.3, 5.0))
    layers = {"good": models["m0"]["l0"], "bad": models["m1"]["l0"]}
    for metric in ("map_pearson", "map_rmse"):  # rmse: lower is better
        best = layer_choice(layers, target, metric, rule="best", stimuli=stimuli)
        assert best.layers == ("good",)
        cv = layer_choice(layers, target, metric, rule="cv", n_folds=3, stimuli=stimuli)
        assert cv.layers == ("good",) * 3 and np.isfinite(cv.value)
