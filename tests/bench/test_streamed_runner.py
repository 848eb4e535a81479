"""The runner's streamed path (max_feature_memory_gb, issue 9): features extracted into the
cache, rsa scored from the RDM and cka_* from the Gram streamed from it — the same job keys and
scores as in memory."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _streamed_helpers import (  # on sys.path (pytest)
    record_streamed,
    run_in_memory_and_streamed,
    stored_scores,
    write_random_responses,
)

from cortexalign.bench import ConfigError, load_config
from cortexalign.bench._config import MetricSpec
from cortexalign.bench._run import run_experiment
from cortexalign.bench._scoring import STREAMED_METRICS, CachedLayer, score_job
from cortexalign.bench._validate import check_metric_folds
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import FeatureCache, plan_extraction
from cortexalign.metrics import rsa_permutation_p, score
from cortexalign.models import load_model
from cortexalign.neural import load_neural, make_responses
from cortexalign.results import ResultsStore
from cortexalign.stimuli import load_stimuli

GABOR = {"name": "gabor_v1", "pooling": "grid2", "layers": ["simple", "complex"],
         "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.12, 0.25]}}
METRICS = [{"name": "rsa"}, {"name": "rsa", "options": {"rdm_method": "cosine",
                                                        "compare": "pearson"}},
           {"name": "rsa", "options": {"rdm_method": "euclidean"}}, {"name": "cka_linear"},
           {"name": "cka_linear_debiased"}, {"name": "cka_rbf"}, {"name": "ridge"}]


@pytest.fixture(scope="module")
def responses_file(tmp_path_factory):
    return write_random_responses(tmp_path_factory.mktemp("neural"), n_neuroids=12)


def _config(responses: str, **extra) -> dict:
    return {"name": "streamed", "stimuli": {"source": "kriegeskorte92"}, "models": [GABOR],
            "neural": [{"source": responses}], "metrics": METRICS, "n_bootstrap": 4,
            "batch_size": 40, **extra}


def test_budget_must_be_positive(responses_file):
    for bad in (0, -1.5):
        with pytest.raises(ConfigError, match="max_feature_memory_gb must be a positive"):
            load_config(_config(responses_file, max_feature_memory_gb=bad))
    a = load_config(_config(responses_file))
    assert a.config_hash() == load_config(_config(responses_file, max_feature_memory_gb=2.0)
                                          ).config_hash()  # how it runs, not what it computes


@pytest.fixture
def streamed_calls(monkeypatch) -> list:
    """The layers each streamed extraction of the runner wrote (proof the path was taken)."""
    return record_streamed(monkeypatch)


def test_streamed_run_gives_the_in_memory_scores(tmp_path, responses_file, streamed_calls):
    adapter = load_model("gabor_v1", device="cpu", **GABOR["kwargs"])
    stimuli = load_stimuli("kriegeskorte92")
    layer_bytes = [plan_extraction(adapter, stimuli, [layer], "activations", {"pooling": "grid2"},
                                   memory_budget=0).bytes for layer in GABOR["layers"]]
    budget = max(layer_bytes) * 1.01  # each layer fits alone, the model's layers together do not
    assert sum(layer_bytes) > budget
    extra_m, extra_s = run_in_memory_and_streamed(_config(responses_file), budget, tmp_path,
                                                  streamed_calls, GABOR["layers"], 14, 1e-10)
    assert [sorted(e) for e in extra_s] == [sorted(e) for e in extra_m]
    # the streamed run wrote the features to its cache, one complete entry per layer
    assert len(FeatureCache(tmp_path / "stream" / "cache")) == 2


def test_permutation_p_and_rdm_targets_match(tmp_path, streamed_calls):
    cfg = {"name": "perm", "stimuli": {"source": "kriegeskorte92"}, "models": [GABOR],
           "neural": [{"source": "kriegeskorte92.monkey_IT"}],
           "metrics": [{"name": "rsa"}, {"name": "rsa", "options": {"compare": "kendall_tau_a"}}],
           "n_bootstrap": 3, "n_permutations": 9, "batch_size": 40}
    run_experiment(load_config(cfg), tmp_path / "mem", progress=False)
    streamed = run_experiment(load_config(dict(cfg, max_feature_memory_gb=1e-6)),
                              tmp_path / "stream", progress=False)
    assert streamed.ok and len(streamed_calls) == 1
    keys_m, values_m, _ = stored_scores(tmp_path / "mem")
    keys_s, values_s, _ = stored_scores(tmp_path / "stream")
    assert keys_m == keys_s
    np.testing.assert_allclose(values_s, values_m, rtol=0, atol=1e-10, equal_nan=True)


def test_a_metric_needing_a_layer_over_the_budget_fails_that_job_only(tmp_path, responses_file):
    cfg = _config(responses_file, max_feature_memory_gb=1e-6,
                  metrics=[{"name": "rsa"}, {"name": "ridge"}])
    summary = run_experiment(load_config(cfg), tmp_path / "out", progress=False)
    assert summary.n_done == 2 and len(summary.failures) == 2
    for failure in summary.failures:
        msg = failure["error"]
        assert "ridge" in failure["job"] and "max_feature_memory_gb = 1e-06 GB" in msg
        assert "layer 'simple'" in msg or "layer 'complex'" in msg
        assert "92 stimuli x" in msg and "grid2" in msg and "fewer" in msg


@pytest.mark.parametrize("metric,options", [("rsa", {}), ("rsa", {"rdm_method": "euclidean"}),
                                            ("cka_linear", {}), ("cka_rbf", {"sigma_frac": 0.5})])
def test_cached_layer_scores_like_the_features(tmp_path, metric, options):
    """A CachedLayer over an (s, 2, 20) cache entry: the streamed matrix scored by the metric's
    matrix entry point gives the Score of the flattened features (value and interval)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(23, 2, 20)) + 3.0
    cache = FeatureCache(tmp_path / "cache")
    cache.put("ab" * 32, x)
    layer = CachedLayer(cache, "ab" * 32, "layer", budget_bytes=1)
    streamed = STREAMED_METRICS[metric]
    matrix_ss = layer.matrix_for(metric, options)
    assert matrix_ss.shape == (23, 23)
    assert layer.matrix_for(metric, options) is matrix_ss  # held, not streamed again
    resp = make_responses(x[:, 0, :5] + rng.normal(size=(23, 5)), [f"s{i}" for i in range(23)])
    a = score(metric, x.reshape(23, -1), resp, n_bootstrap=5, seed=0, **options)
    b = streamed.score(matrix_ss, resp, n_bootstrap=5, seed=0, **options)
    for field in ("value", "ci_low", "ci_high"):
        assert abs(getattr(a, field) - getattr(b, field)) < 1e-12, field
    layer.release()
    assert layer.matrix_for(metric, options) is not matrix_ss


def test_streamed_permutation_p_is_the_features_p(tmp_path):
    x = np.random.default_rng(3).normal(size=(92, 30))
    target = load_neural("kriegeskorte92.monkey_IT")
    cache = FeatureCache(tmp_path / "cache")
    cache.put("cd" * 32, x)
    rdm_ss = CachedLayer(cache, "cd" * 32, "layer", budget_bytes=1).matrix_for("rsa", {})
    p_rdm = STREAMED_METRICS["rsa"].p_value(rdm_ss, target, n_permutations=19, seed=2)
    assert p_rdm == rsa_permutation_p(x, target, n_permutations=19, seed=2)


BAD_OPTIONS = [("rsa", {"rdm_methd": "cosine"}), ("rsa", {"compare": "pearson", "sead": 1}),
               ("ridge", {"solvr": "himalaya"}),
               # refused by the metric's own check (an unknown CKA option, an option the ridge
               # solver does not take): these used to fail their jobs at run time
               ("cka_linear", {"sigma_frac": 0.5}), ("cka_rbf", {"sigma": 0.5}),
               ("ridge", {"solver": "himalaya", "dtype": "float32"}),
               ("rsa", {"rdm_method": "crossnobis"}),
               # integer options by type and lower bound, for every metric (check_options)
               ("ridge", {"n_folds": 1}), ("pls", {"n_components": 0}),
               ("rsa", {"n_splits": 2.5}), ("ridge", {"alphas": [1.0, -1.0]})]


def _score_error(metric: str, options: dict) -> InputError:
    x = np.random.default_rng(0).normal(size=(12, 5))
    resp = make_responses(x[:, :3] + 1.0, [f"s{i}" for i in range(12)])
    with pytest.raises(InputError) as err:
        score(metric, x, resp, **options)
    return err.value


def _assert_names_the_entry(err: InputError, expected: InputError, entry: str) -> None:
    """``err`` is score()'s ``expected`` with its parameter under the config entry ``entry``."""
    option = "" if expected.parameter == "options" else f".{expected.parameter}"
    assert err.parameter == f"{entry}.options{option}"
    assert (err.expected, err.received, err.fix) == (expected.expected, expected.received,
                                                     expected.fix)


@pytest.mark.parametrize("metric,options", BAD_OPTIONS)
def test_an_unknown_metric_option_fails_the_run_like_score_and_writes_nothing(
        tmp_path, responses_file, streamed_calls, metric, options):
    """On the streamed path (and so the in-memory one) a bad option fails the run before any
    job, with score()'s InputError; a fresh --out stays absent, an existing store unchanged."""
    expected = _score_error(metric, options)
    cfg = load_config(_config(responses_file, max_feature_memory_gb=1e-6,
                              metrics=[{"name": "rsa"}, {"name": metric, "options": options}]))
    with pytest.raises(InputError) as err:
        run_experiment(cfg, tmp_path / "fresh", progress=False)
    _assert_names_the_entry(err.value, expected, f"metrics[1] ({metric})")
    assert not (tmp_path / "fresh").exists()
    # a results directory of the same config (--update): no run, job or score is added
    store = ResultsStore(tmp_path / "update" / "results.duckdb")
    store.start_run(cfg.to_yaml(), cfg.config_hash())
    before = {table: store.frame(table) for table in ("runs", "jobs", "scores")}
    with pytest.raises(InputError) as err:
        run_experiment(cfg, tmp_path / "update", progress=False, allow_config_change=True)
    _assert_names_the_entry(err.value, expected, f"metrics[1] ({metric})")
    after = ResultsStore(tmp_path / "update" / "results.duckdb", read_only=True)
    assert len(before["runs"]) == 1 and before["jobs"].empty and before["scores"].empty
    for table, frame in before.items():
        assert after.frame(table).equals(frame), table
    assert streamed_calls == [] and not (tmp_path / "update" / "cache").exists()


#: A map model (tiny untrained SAM's attention maps): never loaded, the run fails before.
MAP_MODEL = {"name": "sam_vit_b", "untrained": True, "kwargs": {"tiny": True, "img_size": 64},
             "features": "attention", "layers": ["blocks.1.attn"]}
#: (metric, options, the close name offered): unknown method names the metric itself refuses
UNKNOWN_OPTION_NAMES = [("rsa", {"compare": "spearmann"}, "spearman"),
                        ("rsa", {"rdm_method": "cosin"}, "cosine"),
                        ("pls", {"ceiling_transform": "brainscor"}, "brainscore"),
                        ("map_pearson", {"scaling": "zscor"}, "zscore"),
                        ("map_rmse", {"weighting": "positve"}, "positive")]


@pytest.mark.parametrize("metric,options,close", UNKNOWN_OPTION_NAMES)
def test_an_unknown_method_name_fails_the_run_before_anything_is_written(
        tmp_path, responses_file, streamed_calls, metric, options, close):
    """A misspelt rsa comparison or RDM method, pls ceiling transform or map-metric scaling /
    weighting fails the run before any job, in memory and streamed, with the metric's own
    UnknownNameError (did-you-mean) naming the config entry; it used to fail every job."""
    for budget in (None, 1e-6):
        cfg = load_config(_config(responses_file, max_feature_memory_gb=budget,
                                  models=[GABOR, MAP_MODEL],
                                  metrics=[{"name": "rsa"}, {"name": metric, "options": options}]))
        with pytest.raises(UnknownNameError, match=f"Did you mean '{close}'") as err:
            run_experiment(cfg, tmp_path / "fresh", progress=False)
        assert f"in metrics[1] ({metric}).options use one of:" in str(err.value)
        assert not (tmp_path / "fresh").exists()
    # a results directory of the same config (--update): no run, job or score is added
    store = ResultsStore(tmp_path / "update" / "results.duckdb")
    store.start_run(cfg.to_yaml(), cfg.config_hash())
    before = {table: store.frame(table) for table in ("runs", "jobs", "scores")}
    with pytest.raises(UnknownNameError):
        run_experiment(cfg, tmp_path / "update", progress=False, allow_config_change=True)
    after = ResultsStore(tmp_path / "update" / "results.duckdb", read_only=True)
    for table, frame in before.items():
        assert after.frame(table).equals(frame), table
    assert streamed_calls == [] and not (tmp_path / "update" / "cache").exists()


def test_options_the_run_sets_are_refused_before_any_job(tmp_path, responses_file):
    cfg = load_config(_config(responses_file, max_feature_memory_gb=1e-6,
                              metrics=[{"name": "rsa", "options": {"n_bootstrap": 9}}]))
    with pytest.raises(InputError, match="top level of the config") as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert err.value.parameter == "metrics[0] (rsa).options" and "n_bootstrap" in err.value.received
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("options", "option"), [({"n_folds": 93}, "n_folds"),
                                                  ({"n_folds": 2, "inner_folds": 47}, "inner_folds"),
                                                  ({"inner_folds": 74}, "inner_folds")])
def test_folds_the_stimuli_cannot_make_are_refused_before_any_job(tmp_path, responses_file,
                                                                   options, option):
    """92 stimuli: at most 92 outer folds, and inner folds within the smallest training split
    (46 of 2 folds, 73 of the default 5)."""
    cfg = load_config(_config(responses_file, metrics=[
        {"name": "rsa"}, {"name": "ridge", "options": options}]))
    with pytest.raises(InputError) as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert err.value.parameter == f"metrics[1] (ridge).options.{option}"
    assert not (tmp_path / "out").exists()
    ok = {**options, option: options[option] - 1}  # one less is allowed
    check_metric_folds(load_config(_config(responses_file, metrics=[
        {"name": "ridge", "options": ok}])), 92)


def test_an_unknown_ridge_solver_is_refused_before_any_job(tmp_path, responses_file):
    """In memory (no budget) too: the solver name fails the run, naming the entry, before the
    output directory exists."""
    cfg = load_config(_config(responses_file, metrics=[
        {"name": "rsa"}, {"name": "ridge", "options": {"solver": "himalya"}}]))
    with pytest.raises(UnknownNameError, match="Did you mean 'himalaya'") as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert "metrics[1] (ridge).options" in str(err.value) and "eigh" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("metric,options", BAD_OPTIONS)
def test_score_job_on_a_cached_layer_checks_options_before_streaming(tmp_path, metric, options):
    """score_job itself (what a worker runs) raises score()'s InputError, not a TypeError from
    a matrix entry point, and streams nothing."""
    cache = FeatureCache(tmp_path / "cache")
    cache.put("ef" * 32, np.random.default_rng(2).normal(size=(12, 5)))
    layer = CachedLayer(cache, "ef" * 32, "layer", budget_bytes=1)
    job = SimpleNamespace(metric=MetricSpec(name=metric, options=options))
    resp = make_responses(np.random.default_rng(3).normal(size=(12, 3)),
                          [f"s{i}" for i in range(12)])
    with pytest.raises(InputError) as err:
        score_job(job, None, layer, [SimpleNamespace(data=resp)], None, n_bootstrap=0, seed=0)
    _assert_names_the_entry(err.value, _score_error(metric, options), f"metrics ({metric})")
    assert layer._held == {}
