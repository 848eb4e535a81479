"""Contract of every registered metric: signal beats shuffled, bad input raises InputError."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import METRICS, Score, list_metrics, score
from cortexalign.metrics._api import check_options
from cortexalign.metrics._encoding import CEILING_TRANSFORMS
from cortexalign.metrics._maps import MAP_SCALINGS
from cortexalign.neural import RDMSet, make_responses, stimuli_on_grid
from cortexalign.neural._maps import WEIGHTINGS
from cortexalign.rdm import RDM_COMPARISONS, RDM_METHODS
from cortexalign.stimuli import StimulusSet

S, D = 30, 12


def _targets(kind: str, features: np.ndarray, rng) -> list:
    ids = [f"img{i:02d}" for i in range(S)]
    out = []
    if kind in ("responses", "any"):
        resp = features @ rng.normal(size=(D, 20)) + 0.3 * rng.normal(size=(S, 20))
        out.append(make_responses(resp, ids))
    if kind in ("rdm", "any"):
        rdms = []
        for _ in range(4):
            noisy = features + 0.5 * rng.normal(size=features.shape)
            rdms.append(1 - np.corrcoef(noisy))
        out.append(RDMSet(np.stack(rdms), ids, {"subject": np.array([1, 1, 2, 2])}))
    return out


VECTOR_METRICS = sorted(m for m in METRICS if METRICS.entry(m).meta.get("features") != "maps")
MAP_METRICS = sorted(m for m in METRICS if METRICS.entry(m).meta.get("features") == "maps")


@pytest.fixture(params=VECTOR_METRICS, ids=str)
def metric(request):
    return request.param


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metadata(name):
    metric = name
    meta = METRICS.entry(metric).meta
    assert meta["citation"] and meta["target"] in ("rdm", "responses", "any")
    assert METRICS.entry(metric).description


def test_signal_scores_higher_than_shuffled(metric, rng):
    features = rng.normal(size=(S, D))
    for target in _targets(METRICS.entry(metric).meta["target"], features, rng):
        good = score(metric, features, target, device="cpu")
        bad = score(metric, features[rng.permutation(S)], target, device="cpu")
        assert isinstance(good, Score) and good.n_stimuli == S
        assert good.value > bad.value + 0.1


def test_bootstrap_interval_is_finite_ordered_and_seeded(metric, rng):
    # not "brackets the value": with duplicated stimuli a biased statistic (e.g. biased CKA)
    # can have its whole percentile interval on one side of the point estimate
    features = rng.normal(size=(S, D))
    target = _targets(METRICS.entry(metric).meta["target"], features, rng)[0]
    a = score(metric, features, target, device="cpu", n_bootstrap=40, seed=3)
    b = score(metric, features, target, device="cpu", n_bootstrap=40, seed=3)
    assert np.isfinite([a.ci_low, a.ci_high]).all() and a.ci_low < a.ci_high
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert math.isnan(score(metric, features, target, device="cpu").ci_low)


@pytest.mark.parametrize("case", ["nan", "constant", "n_stimuli"])
def test_bad_features_raise_input_error(metric, case, rng):
    features = rng.normal(size=(S, D))
    target = _targets(METRICS.entry(metric).meta["target"], features, rng)[0]
    bad = {"nan": np.where(np.eye(S, D, dtype=bool), np.nan, features),
           "constant": np.ones((S, D)),
           "n_stimuli": features[:-1]}[case]
    with pytest.raises(InputError) as err:
        score(metric, bad, target, device="cpu")
    assert err.value.parameter == "features_sd" and err.value.fix


def test_unknown_metric_suggests_names():
    with pytest.raises(UnknownNameError, match="cka_linear"):
        score("cka_lineer", np.zeros((3, 3)), None)


def test_cka_refuses_rdm_targets_and_points_to_rsa(rng):
    features = rng.normal(size=(S, D))
    rdm_target = _targets("rdm", features, rng)[0]
    for name in ("cka_linear", "cka_linear_debiased", "cka_rbf"):
        with pytest.raises(InputError, match="'rsa'"):
            score(name, features, rdm_target, device="cpu")
        with pytest.raises(InputError, match="'rsa'"):  # called directly, not via score()
            METRICS.get(name)(features, rdm_target, device="cpu")


#: Options a metric refuses only for their value or combination (its own check_options).
REFUSED_OPTIONS = [("cka_linear", {"sigma_frac": 0.5}), ("cka_linear_debiased", {"gamma": 1}),
                   ("cka_rbf", {"sigma": 0.5}), ("cka_rbf", {"sigma_frac": -1.0}),
                   ("ridge", {"solver": "himalaya", "dtype": "float32"}),
                   ("ridge", {"solver": "himalaya", "target_chunk": 8}),
                   ("ridge", {"target_chunk": 0}), ("ridge", {"dtype": "float16"}),
                   ("rsa", {"rdm_method": "crossnobis"}),
                   ("rsa", {"ci_level": 1.5, "n_bootstrap": 3}),
                   ("cka_linear", {"ci_level": 0.0, "n_bootstrap": 3})]
#: Method names a metric does not know: UnknownNameError (did-you-mean) from its own check;
#: the last ones have two bad options, so the check must run in the metric's order
UNKNOWN_OPTIONS = [("rsa", {"compare": "spearmann"}), ("rsa", {"rdm_method": "correlaton"}),
                   ("rsa", {"neural_rdm_method": "crossnobs"}),
                   ("ridge", {"ceiling_transform": "brainscor"}),
                   ("pls", {"ceiling_transform": "sqrt"}),
                   ("map_rmse", {"scaling": "min_max"}), ("map_pearson", {"weighting": "zscor"}),
                   ("map_spearman", {"scaling": "rank", "weighting": "raw"}),
                   ("rsa", {"rdm_method": "cosin", "compare": "pearsn"}),
                   ("ridge", {"solver": "himalya", "ceiling_transform": "x"}),
                   ("map_rmse", {"scaling": "minmx", "weighting": "zscor"})]
TAKEN_OPTIONS = [("cka_linear", {"ci_level": 0.9}), ("cka_rbf", {"sigma_frac": 0.5}),
                 ("ridge", {"solver": "himalaya"}), ("ridge", {"dtype": "float32",
                                                               "target_chunk": 8}),
                 ("ridge", {"ceiling_transform": "brainscore"}), ("pls", {}),
                 ("pls", {"ceiling_transform": "brainscore", "n_components": 3}), ("rsa", {}),
                 ("rsa", {"rdm_method": "euclidean", "compare": "corr_cov",
                          "neural_rdm_method": "crossnobis", "ceiling_by": None}),
                 ("map_rmse", {"scaling": "zscore", "weighting": "positive"}),
                 ("map_pearson", {"subtract_mean_image": False, "n_splits": 2})]


def _direct_error(name: str, options: dict, error: type, rng) -> Exception:
    """What the metric itself (not score()) raises for ``options`` when it runs."""
    if METRICS.entry(name).meta.get("features") == "maps":
        stim, resp, planted = _map_case(rng, s=12)
        args, context = (planted, resp), {"stimuli": stim}
    else:
        features = rng.normal(size=(S, D))
        args, context = (features, _targets("responses", features, rng)[0]), {}
    with pytest.raises(error) as direct:
        METRICS.get(name)(*args, device="cpu", **context, **options)
    return direct.value


@pytest.mark.parametrize(("name", "options", "error"),
                         [(*case, InputError) for case in REFUSED_OPTIONS]
                         + [(*case, UnknownNameError) for case in UNKNOWN_OPTIONS])
def test_check_options_raises_the_metrics_own_error(name, options, error, rng):
    """check_options (the runner's check before any job) raises what the metric raises when it
    runs: the same error from the same code, without features or a target."""
    assert "check_options" in METRICS.entry(name).meta
    direct = _direct_error(name, options, error, rng)
    with pytest.raises(error) as checked:
        check_options(name, options)
    assert type(checked.value) is type(direct)
    assert (getattr(checked.value, "parameter", None), str(checked.value)) == (
        getattr(direct, "parameter", None), str(direct))


@pytest.mark.parametrize("name", [n for n in METRICS.names()
                                  if "ci_level" in inspect.signature(METRICS.get(n)).parameters])
@pytest.mark.parametrize("level", [1.5, 0.0, -0.1, "high"])
def test_a_bad_ci_level_is_refused_before_any_work_even_without_bootstrap(name, level):
    with pytest.raises(InputError) as err:
        check_options(name, {"ci_level": level, "n_bootstrap": 0})
    assert err.value.parameter == "ci_level"


_COUNT_LOWS = {"n_bootstrap": 0, "n_permutations": 0, "n_splits": 1, "n_folds": 2,
               "inner_folds": 2, "n_components": 1, "seed": 0}
_COUNT_CASES = [(n, opt, low) for n in METRICS.names() for opt, low in _COUNT_LOWS.items()
                if opt in inspect.signature(METRICS.get(n)).parameters]


@pytest.mark.parametrize(("name", "option", "low"), _COUNT_CASES)
def test_integer_options_are_refused_before_any_work_below_their_bound_or_not_integers(
        name, option, low):
    for bad in (low - 1, 2.5, True, "5", np.float64(3.0)):
        with pytest.raises(InputError) as err:
            check_options(name, {option: bad})
        assert err.value.parameter == option, bad
    for good in (low, np.int64(low + 3)):
        check_options(name, {option: good})


@pytest.mark.parametrize("alphas", [[], [1.0, -1.0], [0.0], [1.0, np.inf], "abc", [[]]])
def test_a_bad_penalty_grid_is_refused_before_any_work(alphas):
    with pytest.raises(InputError) as err:
        check_options("ridge", {"alphas": alphas})
    assert err.value.parameter == "alphas"
    check_options("ridge", {"alphas": np.logspace(-3, 7, 11)})


@pytest.mark.parametrize(("name", "options"), TAKEN_OPTIONS)
def test_check_options_passes_options_the_metric_takes(name, options):
    check_options(name, options)


def test_check_options_refuses_an_unknown_ridge_solver():
    with pytest.raises(UnknownNameError, match="'himalaya'"):
        check_options("ridge", {"solver": "himalya"})


@pytest.mark.parametrize(("name", "option", "table"), [
    ("rsa", "compare", RDM_COMPARISONS), ("rsa", "rdm_method", RDM_METHODS),
    ("rsa", "neural_rdm_method", RDM_METHODS), ("map_rmse", "scaling", MAP_SCALINGS),
    ("map_spearman", "weighting", WEIGHTINGS), ("pls", "ceiling_transform", CEILING_TRANSFORMS)])
def test_check_options_offers_the_tables_the_metric_dispatches_on(name, option, table):
    with pytest.raises(UnknownNameError) as err:
        check_options(name, {option: "no_such_name"})
    assert err.value.choices == sorted(table)


def test_list_metrics_rows():
    rows = list_metrics()
    assert {r["name"] for r in rows} >= {"rsa", "cka_linear", "cka_linear_debiased", "cka_rbf"}
    assert all(set(r) == {"name", "target", "citation", "description"} for r in rows)


# -- metrics that compare maps (s, gh, gw) with neuron maps built from the stimuli ----------------

G = 5


def _map_case(rng, s=30):
    images = rng.integers(0, 256, (s, G * 3, G * 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(np.repeat(images[..., None], 3, -1),
                                   ids=[f"s{i}" for i in range(s)])
    grid = stimuli_on_grid(stim, (G, G))
    pattern = rng.normal(size=(G, G))
    drive = ((grid - grid.mean(0)) * pattern).sum((1, 2))
    resp = make_responses(drive[:, None, None] + 0.05 * rng.normal(size=(s, 3, 4)), stim.ids)
    planted = pattern[None] + 0.1 * rng.normal(size=(s, G, G))
    return stim, resp, planted


@pytest.mark.parametrize("name", MAP_METRICS)
def test_map_metric_prefers_the_planted_map(name, rng):
    stim, resp, planted = _map_case(rng)
    good = score(name, planted, resp, stimuli=stim)
    bad = score(name, rng.normal(size=planted.shape), resp, stimuli=stim)
    sign = 1 if METRICS.entry(name).meta.get("higher_is_better", True) else -1
    assert sign * (good.value - bad.value) > 0.05
    a = score(name, planted, resp, stimuli=stim, n_bootstrap=40, seed=3)
    b = score(name, planted, resp, stimuli=stim, n_bootstrap=40, seed=3)
    assert np.isfinite([a.ci_low, a.ci_high]).all() and a.ci_low <= a.ci_high
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


@pytest.mark.parametrize("case", ["nan", "constant", "n_stimuli"])
@pytest.mark.parametrize("name", MAP_METRICS)
def test_bad_maps_raise_input_error(name, case, rng):
    stim, resp, planted = _map_case(rng, s=12)
    bad = {"nan": np.where(np.arange(planted.size).reshape(planted.shape) == 7, np.nan, planted),
           "constant": np.ones_like(planted),
           "n_stimuli": planted[:-1]}[case]
    with pytest.raises(InputError) as err:
        score(name, bad, resp, stimuli=stim)
    assert err.value.parameter == "features" and err.value.fix
