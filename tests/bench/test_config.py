from __future__ import annotations

import pytest

from cortexalign.bench import ConfigError, load_config, quickstart_config_path
from cortexalign.bench._jobs import job_key, plan_model_jobs

BASE = {
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1"}],
    "neural": [{"source": "kriegeskorte92.human_IT"}],
    "metrics": [{"name": "rsa"}],
}


def test_quickstart_config_validates():
    cfg = load_config(quickstart_config_path())
    assert [m.display for m in cfg.models] == ["EfficientNet-Lite0", "EfficientNet-Lite0 (untrained)",
                                               "Gabor V1"]
    assert cfg.n_bootstrap == 1000


def test_unknown_nested_key_points_at_location_and_suggests():
    bad = dict(BASE, models=[{"name": "gabor_v1", "pooling_mode": "mean"}])
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "models[0].pooling_mode" in msg and "Did you mean 'pooling'" in msg


def test_missing_key_and_bad_value_are_named(tmp_path):
    with pytest.raises(ConfigError, match="metrics: required key is missing"):
        load_config({k: v for k, v in BASE.items() if k != "metrics"})
    with pytest.raises(ConfigError, match="n_bootstrap"):
        load_config(dict(BASE, n_bootstrap=-1))
    p = tmp_path / "broken.yaml"
    p.write_text("stimuli: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_duplicate_model_labels_are_refused():
    with pytest.raises(ConfigError, match="share the label"):
        load_config(dict(BASE, models=[{"name": "gabor_v1"}, {"name": "gabor_v1"}]))


def test_config_hash_is_stable_and_sensitive():
    a, b = load_config(BASE), load_config(dict(BASE))
    c = load_config(dict(BASE, n_bootstrap=10))
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_job_keys_change_only_with_what_determines_a_result():
    cfg = load_config(BASE)
    m, t, x = cfg.models[0], cfg.neural[0], cfg.metrics[0]
    k = job_key(cfg, m, "simple", t, x, "stimhash")
    assert k == job_key(cfg, m, "simple", t, x, "stimhash")
    assert k != job_key(cfg, m, "complex", t, x, "stimhash")
    assert k != job_key(cfg, m, "simple", t, x, "otherstim")
    relabelled = load_config(dict(BASE, models=[{"name": "gabor_v1", "label": "V1"}]))
    assert k == job_key(relabelled, relabelled.models[0], "simple", t, x, "stimhash")
    more_boot = load_config(dict(BASE, n_bootstrap=5))
    assert k != job_key(more_boot, more_boot.models[0], "simple", t, x, "stimhash")
    jobs = plan_model_jobs(cfg, m, ["simple", "complex"], "stimhash")
    assert [j.layer_index for j in jobs] == [0, 1] and len({j.key for j in jobs}) == 2
