"""Degenerate inputs refused before work, honest ceilings and intervals, and the Gaussian MI
guard (issue 20, cases 4, 6, 7 and 8). Each test failed before the change it names.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cortexalign.bench._config_load import load_config
from cortexalign.bench._run import run_experiment
from cortexalign.errors import InputError
from cortexalign.metrics import score
from cortexalign.neural import RDMSet, load_neural, make_responses
from cortexalign.rdm import MIN_STIMULI
from cortexalign.reports import best_layers
from cortexalign.results import ScoreRecord
from cortexalign.spiking.information import ledoit_wolf_cov, mi_gaussian
from cortexalign.stats import bootstrap_indices
from cortexalign.stimuli import load_stimuli


# -- case 4: too few stimuli, too many resamples -------------------------------------------------
@pytest.mark.parametrize("metric", ["rsa", "cka_linear"])
def test_three_stimuli_are_refused_with_the_minimum_and_why(metric):
    rng = np.random.default_rng(0)
    ids = ["a", "b", "c"]
    target = make_responses(rng.normal(size=(3, 20)), ids)
    with pytest.raises(InputError) as err:
        score(metric, rng.normal(size=(3, 10)), target, n_bootstrap=20)
    msg = str(err.value)
    assert "at least 4 stimuli" in msg and "received 3" in msg
    assert MIN_STIMULI["rsa" if metric == "rsa" else "cka"][1] in msg  # the reason is given


def _config(tmp_path, **changes) -> dict:
    cfg = {"name": "degenerate", "stimuli": {"source": "kriegeskorte92"},
           "models": [{"name": "gabor_v1", "pooling": "grid2", "layers": ["simple"],
                       "kwargs": {"image_size": 32, "image_deg": None, "frequencies": [0.1]}}],
           "neural": [{"source": "kriegeskorte92.monkey_IT"}],
           "metrics": [{"name": "rsa"}], "n_bootstrap": 0, "batch_size": 46}
    cfg.update(changes)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_run_on_three_stimuli_is_refused_before_anything_is_written(tmp_path):
    stim = load_stimuli("kriegeskorte92")
    three = stim.subset(stim.ids[:3], name="three")
    np.savez(tmp_path / "three.npz", images=np.stack([three.image(i) for i in range(3)]),
             stimulus_ids=np.array(three.ids))
    rdm = load_neural("kriegeskorte92.monkey_IT").rdms[0][:3, :3]
    np.savez(tmp_path / "rdm3.npz", rdms=rdm, stimulus_ids=np.array(three.ids))
    cfg = _config(tmp_path, stimuli={"source": str(tmp_path / "three.npz")},
                  neural=[{"source": str(tmp_path / "rdm3.npz")}])
    with pytest.raises(InputError, match="at least 4 stimuli") as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert "metrics[0] (rsa)" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_resample_counts_beyond_the_limit_are_refused_with_an_estimate(tmp_path):
    with pytest.raises(InputError) as err:  # was a raw 73.6 GB allocator error
        bootstrap_indices(92, 100_000_000)
    assert "73.87 GB" in str(err.value) and "at most 100,000" in str(err.value)  # indices + work
    cfg = _config(tmp_path, n_bootstrap=2_000_000)  # was 7+ minutes per job without a word
    with pytest.raises(InputError, match="n_bootstrap") as err:
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert "GB" in str(err.value) and "of CPU time" in str(err.value)
    assert not (tmp_path / "out").exists()


# -- case 6: object arrays, neural wording -------------------------------------------------------
def test_object_arrays_in_npz_files_are_named(tmp_path):
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    np.savez(tmp_path / "stim.npz", images=np.zeros((4, 8, 8, 3), np.uint8), stimulus_ids=ids)
    with pytest.raises(InputError, match=r"stim.npz\['stimulus_ids'\].*object array"):
        load_stimuli(str(tmp_path / "stim.npz"))
    np.savez(tmp_path / "resp.npz", responses=np.ones((4, 2)), stimulus_ids=ids)
    with pytest.raises(InputError, match=r"resp.npz\['stimulus_ids'\].*dtype=str"):
        load_neural(str(tmp_path / "resp.npz"))


def test_a_constant_neural_target_is_called_neural_data():
    ids = [f"s{i}" for i in range(10)]
    target = make_responses(np.ones((10, 5)), ids)
    with pytest.raises(InputError) as err:
        score("cka_linear", np.random.default_rng(0).normal(size=(10, 4)), target)
    msg = str(err.value)
    assert msg.startswith("target:") and "neural responses" in msg and "neuroid" in msg
    assert "feature" not in msg and "layer" not in msg


# -- case 7: honest ceilings and intervals -------------------------------------------------------
def test_one_rdm_says_no_ceiling_in_the_score_and_the_table():
    monkey = load_neural("kriegeskorte92.monkey_IT")
    x = np.random.default_rng(0).normal(size=(92, 8))
    s = score("rsa", x, monkey, n_bootstrap=10)
    assert np.isnan(s.ceiling_low) and s.extra["ceiling"] == "no ceiling (one RDM)"
    rec = ScoreRecord.from_score(s, model="m", model_id="m", layer="l", target="monkey IT",
                                 metric="rsa")
    frame = _frame([rec])
    best = best_layers(frame)
    assert best["ceiling"].tolist() == ["no ceiling (one RDM)"]
    assert best["interval"].tolist() == ["95% percentile bootstrap over stimuli (10 resamples)"]


def _frame(records):
    import json

    import pandas as pd

    return pd.DataFrame([{**{k: getattr(r, k) for k in ("model", "layer", "target", "metric",
                                                          "value", "ci_low", "ci_high",
                                                          "ceiling_low", "ceiling_high")},
                          "extra": json.dumps(r.extra)} for r in records])


def test_a_published_ceiling_replaces_the_computed_one_and_says_so():
    human = load_neural("kriegeskorte92.human_IT")
    x = np.random.default_rng(0).normal(size=(92, 8))
    computed = score("rsa", x, human)
    s = score("rsa", x, human, ceiling=(0.31, 0.42))
    assert (s.ceiling_low, s.ceiling_high) == (0.31, 0.42) and s.value == computed.value
    assert s.extra["ceiling"] == "published"
    assert s.extra["computed_ceiling"][:2] == [computed.ceiling_low, computed.ceiling_high]
    with pytest.raises(InputError, match="low <= high"):
        score("rsa", x, human, ceiling=(0.5, 0.4))


def test_config_ceiling_is_checked_and_reaches_the_target(tmp_path):
    cfg = load_config(_config(tmp_path, neural=[{"source": "kriegeskorte92.monkey_IT",
                                                 "ceiling": {"low": 0.3, "high": 0.35,
                                                             "source": "a paper"}}]))
    assert cfg.neural[0].ceiling.low == 0.3
    for bad in ({"low": 0.4, "high": 0.3}, {"low": float("nan"), "high": 0.3}):
        with pytest.raises(ValueError, match="ceiling"):
            load_config(_config(tmp_path, neural=[{"source": "x.nc", "ceiling": bad}]))
    with pytest.raises(ValueError, match="split_by"):
        load_config(_config(tmp_path, neural=[{"source": "x.nc", "split_by": ["area"],
                                               "ceiling": {"low": 0.1, "high": 0.2}}]))


def test_rdms_of_areas_without_subjects_give_no_silent_ceiling():
    monkey = load_neural("kriegeskorte92.monkey_IT")
    human = load_neural("kriegeskorte92.human_IT")
    areas = RDMSet(np.stack([monkey.rdms[0], human.mean()]), monkey.stimulus_ids, name="areas")
    x = np.random.default_rng(0).normal(size=(92, 8))
    with pytest.raises(InputError, match="'subject' descriptor"):
        score("rsa", x, areas)


def test_ridge_interval_takes_ci_level_and_says_it_resamples_neuroids():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 30)) + rng.normal(0, 2.0, (40, 30))
    target = make_responses(y, [f"s{i}" for i in range(40)])
    wide = score("ridge", x, target, n_bootstrap=200, alphas=[1.0])
    narrow = score("ridge", x, target, n_bootstrap=200, alphas=[1.0], ci_level=0.5)
    assert wide.extra["interval"] == "95% percentile bootstrap over neuroids (200 resamples)"
    assert narrow.extra["interval"].startswith("50% percentile bootstrap over neuroids")
    assert wide.ci_low < narrow.ci_low <= narrow.ci_high < wide.ci_high


# -- case 8: Gaussian MI with dimensions >= samples -------------------------------------------------
def test_gaussian_mi_refuses_more_dimensions_than_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 20)), rng.normal(size=(30, 20))  # independent: true MI 0
    with pytest.raises(InputError, match="40 dimensions for 30 samples"):
        mi_gaussian(a, b)
    shrunk = mi_gaussian(a, b, shrinkage="ledoit_wolf")
    assert 0.0 <= shrunk < 2.0  # the unguarded estimate was ~40 nats here


def test_ledoit_wolf_matches_scikit_learn():
    sklearn_cov = pytest.importorskip("sklearn.covariance")
    x = np.random.default_rng(1).normal(size=(25, 40))
    ours, d = ledoit_wolf_cov(x)
    ref, d_ref = sklearn_cov.ledoit_wolf(x)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    assert d == pytest.approx(d_ref, rel=1e-10)


def test_gaussian_mi_unchanged_when_samples_suffice():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5000, 1))
    b = 0.6 * a + 0.8 * rng.normal(size=(5000, 1))  # rho = 0.6: MI = -0.5 log(1 - 0.36)
    assert mi_gaussian(a, b) == pytest.approx(-0.5 * np.log(1 - 0.36), abs=0.02)


def test_the_ceiling_function_refuses_rdms_without_subjects_unless_told():
    from cortexalign.stats import rdm_noise_ceiling

    human = load_neural("kriegeskorte92.human_IT")
    bare = RDMSet(human.rdms, human.stimulus_ids, name="bare")
    with pytest.raises(InputError, match="by=None"):
        rdm_noise_ceiling(bare, device="cpu")
    low, high = rdm_noise_ceiling(bare, by=None, device="cpu")  # the user's word
    assert 0 < low < high
