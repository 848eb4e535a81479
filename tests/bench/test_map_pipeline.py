"""The parts of the attention-vs-mouse-cortex pipeline, each against an independent reference."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from allen_planted import CUX2, SST, _ophys_file
from scipy.stats import spearmanr

from cortexalign.bench import load_config
from cortexalign.bench._jobs import JOB_VERSION, job_key
from cortexalign.bench._stats import add_fdr, paired_model_comparison
from cortexalign.bench._targets import split_targets
from cortexalign.errors import InputError
from cortexalign.features import FeatureCache, extract, extract_kinds, feature_keys, kind_layers
from cortexalign.metrics import METRICS, rsa_permutation_p, score
from cortexalign.models import MODELS, load_model
from cortexalign.models.attention import attention_maps, conv_maps
from cortexalign.neural import NEURAL, load_neural, make_responses, neuron_maps, stimuli_on_grid
from cortexalign.neural.allen import load_ophys_natural_scenes
from cortexalign.results import ScoreRecord
from cortexalign.stats import adjust_p_values, paired_comparison
from cortexalign.stimuli import StimulusSet, load_stimuli

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_validates_and_names_exist():
    cfg = load_config(ROOT / "configs" / "attention_vs_mouse_cortex.yaml")
    assert all(m.name in MODELS for m in cfg.models)
    assert all(m.name in METRICS for m in cfg.metrics)
    assert all(n.source in NEURAL for n in cfg.neural)
    assert {m.features for m in cfg.models} == {"attention", "conv_map"}
    assert cfg.n_permutations > 0
    assert ["area", "cre_line", "cortical_layer"] in [n.split_by for n in cfg.neural]


def test_old_style_job_keys_do_not_change():
    cfg = load_config({"stimuli": {"source": "kriegeskorte92"}, "models": [{"name": "gabor_v1"}],
                       "neural": [{"source": "kriegeskorte92.human_IT"}],
                       "metrics": [{"name": "rsa"}]})
    m, t, x = cfg.models[0], cfg.neural[0], cfg.metrics[0]
    old = {"v": JOB_VERSION, "model": m.model_dump(mode="json", exclude={
        "label", "layers", "features", "feature_options", "preprocess"}), "layer": "simple",
        "stimuli": "h",
        "target": t.source, "metric": x.model_dump(mode="json"), "n_bootstrap": 1000, "seed": 0}
    ref = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:24]
    assert job_key(cfg, m, "simple", t, x, "h") == ref
    split = t.model_copy(update={"split_by": ["area"]})
    attn = m.model_copy(update={"features": "attention"})
    assert len({ref, job_key(cfg, m, "simple", split, x, "h"),
                job_key(cfg, attn, "simple", t, x, "h")}) == 3


def _responses(rng, n=7, s=10, reps=3):
    coords = {"area": np.array(["VISal", "VISp", "VISp", "VISam", "VISp", "VISal", "VISp"][:n]),
              "cre_line": np.array(["Sst-IRES-Cre", "Cux2-CreERT2", "Sst-IRES-Cre", "Cux2-CreERT2",
                                    "Cux2-CreERT2", "Sst-IRES-Cre", "Cux2-CreERT2"][:n])}
    return make_responses(rng.normal(size=(s, n, reps)), [f"s{i}" for i in range(s)], None,
                          coords)


def test_split_targets_groups_labels_and_order(rng):
    da = _responses(rng)
    with pytest.warns(UserWarning, match="fewer than 2"):
        got = split_targets(da, ["area", "cre_line"], "allen", min_neuroids=2)
    # areas in the hierarchy's order (VISp, VISl, VISal, VISpm, VISrl, VISam), Cre by gene
    assert [t.label for t in got] == ["allen/VISp/Cux2", "allen/VISal/Sst"]
    for t in got:  # each group holds exactly its neuroids (explicit check)
        a, c = t.group["area"], t.group["cre_line"]
        want = [i for i in range(7) if da.area.values[i] == a
                and da.cre_line.values[i].startswith(c)]
        np.testing.assert_array_equal(t.data.values, da.values[:, want])
        assert t.extra()["n_neuroids"] == len(want) and t.extra()["target_source"] == "allen"
    with pytest.raises(InputError, match="depth"):
        split_targets(da, ["depth"], "allen")
    with pytest.raises(InputError, match="min_neuroids"), pytest.warns(UserWarning):
        split_targets(da, ["area"], "allen", min_neuroids=50)


def test_allen_datasets_from_a_cache_folder(tmp_path, rng):
    root = tmp_path / "cache" / "ophys_experiment_data"
    root.mkdir(parents=True)
    frames = rng.permutation(np.r_[np.repeat(np.arange(3), 2), -1])
    template = rng.integers(0, 256, (3, 20, 24), dtype=np.uint8)
    for k, meta in enumerate([CUX2, SST]):
        _ophys_file(root / f"{k}.nwb", frames, rng.normal(size=(2, len(frames))),
                    np.arange(2) + 10 * k, np.zeros(2), template, meta)
    for folder in (root, tmp_path / "gratings_only"):  # a session-A file is skipped
        folder.mkdir(exist_ok=True)
        _ophys_file(folder / "gratings.nwb", frames, rng.normal(size=(2, len(frames))),
                    np.arange(2) + 90, np.zeros(2), template, CUX2, with_ns=False)
    got = load_neural("allen.ophys_natural_scenes", path=str(tmp_path / "cache"))
    ref = load_ophys_natural_scenes([root / "0.nwb", root / "1.nwb"])
    xr.testing.assert_identical(got, ref)
    stim = load_stimuli("allen.natural_scenes", path=str(tmp_path / "cache"))
    assert stim.ids == ("ns000", "ns001", "ns002")
    np.testing.assert_array_equal(stim.image(1)[..., 0], template[1])
    with pytest.raises(InputError, match="none with natural scenes"):
        load_neural("allen.ophys_natural_scenes", path=str(tmp_path / "gratings_only"))


def _map_case(rng, s=12, n=4, g=5):
    images = rng.integers(0, 256, (s, g * 3, g * 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(np.repeat(images[..., None], 3, -1),
                                   ids=[f"s{i}" for i in range(s)])
    resp = make_responses(rng.normal(size=(s, n, 4)), stim.ids, None, {})
    maps = rng.random((s, g, g))
    return stim, resp, maps


@pytest.mark.parametrize("measure", ["rmse", "pearson", "spearman"])
def test_map_metrics_equal_an_explicit_loop(rng, measure):
    stim, resp, maps = _map_case(rng)
    got = score(f"map_{measure}", maps, resp, stimuli=stim, scaling="minmax")
    nmaps = neuron_maps(resp, stim, maps.shape[1:])
    vals = []
    for a in maps:
        for b in nmaps:
            a1, b1 = a.ravel(), b.ravel()
            if measure == "pearson":
                vals.append(np.corrcoef(a1, b1)[0, 1])
            elif measure == "spearman":
                vals.append(spearmanr(a1, b1).statistic)
            else:
                mm = [(v - v.min()) / (v.max() - v.min()) for v in (a1, b1)]
                vals.append(np.sqrt(np.mean((mm[0] - mm[1]) ** 2)))
    assert got.value == pytest.approx(np.median(vals), abs=1e-10)
    assert len(got.extra["per_neuroid"]) == resp.sizes["neuroid"]
    assert not math.isnan(got.ceiling_low)  # repetitions present: split-half ceiling


def test_map_permutation_p_is_calibrated_under_the_null():
    rng = np.random.default_rng(1)
    ps = []
    for _ in range(150):
        stim, resp, maps = _map_case(rng, s=8, n=2, g=3)
        ps.append(score("map_pearson", maps, resp, stimuli=stim, n_permutations=19,
                        n_splits=1, seed=int(rng.integers(1e9))).p_value)
    ps = np.array(ps)
    assert ((ps > 0) & (ps <= 1)).all()
    assert 0.01 <= (ps <= 0.05).mean() <= 0.11  # exactly 1/20 in expectation


def test_map_metric_finds_a_planted_map(rng):
    stim, _, _ = _map_case(rng, s=30, g=5)
    img = stimuli_on_grid(stim, (5, 5))
    pattern = rng.normal(size=(5, 5))
    maps = np.repeat(pattern[None], 30, 0) + 0.1 * rng.normal(size=(30, 5, 5))
    drive = ((img - img.mean(0)) * pattern).sum((1, 2))
    resp = make_responses(drive[:, None, None] + 0.01 * rng.normal(size=(30, 3, 4)), stim.ids,
                          None, {})
    got = score("map_pearson", maps, resp, stimuli=stim, n_permutations=99)
    assert got.value > 0.3 and got.p_value == pytest.approx(1 / 100)


def test_rsa_permutation_p_planted_and_null(rng):
    x = rng.normal(size=(12, 5))
    planted = make_responses(x @ rng.normal(size=(5, 6)), [f"s{i}" for i in range(12)], None, {})
    assert rsa_permutation_p(x, planted, n_permutations=199) == pytest.approx(1 / 200)
    ps = np.array([rsa_permutation_p(rng.normal(size=(8, 3)), make_responses(
        rng.normal(size=(8, 4)), [f"s{i}" for i in range(8)], None, {}), n_permutations=19,
        seed=k) for k in range(120)])
    assert ((ps > 0) & (ps <= 1)).all() and 0.0 <= (ps <= 0.05).mean() <= 0.12


def test_maps_equal_direct_extraction_and_hit_the_cache(tmp_path, rng):
    model = load_model("sam_vit_b", tiny=True, untrained=True)
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(imgs, ids=["a", "b", "c"])
    cache = FeatureCache(tmp_path / "cache")
    layers = kind_layers(model, "attention", "all", {}, stim)
    assert layers == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn", "blocks.3.attn"]
    got = extract(model, stim, layers, "attention", {}, batch_size=2, cache=cache,
                  progress=False)
    assert [f.from_cache for f in got.values()] == [False] * 4 and list(got) == layers
    ref = attention_maps(model.module.eval(), model.preprocess(list(imgs)))
    for n in layers:
        np.testing.assert_allclose(got[n].values, ref[n].numpy(), atol=1e-6)
    assert len(cache) == 4
    feats = extract(model, stim, layers, "attention", cache=cache, progress=False)
    assert [f.from_cache for f in feats.values()] == [True] * 4 and list(feats) == layers
    for n, f in feats.items():
        assert np.array_equal(f.values, got[n].values) and f.stimulus_ids == stim.ids
        assert (f.pooling, f.layer, f.model_id) == ("attn:received", n, model.model_id)
    assert [f.key for f in feats.values()] == list(feature_keys(
        model, stim, layers, kind="attention").values())
    conv = extract(model, stim, ["neck"], "conv_map", {}, cache=cache, progress=False)
    acts = model.forward_layers(model.preprocess(list(imgs)), ["neck"])["neck"]
    np.testing.assert_allclose(conv["neck"].values, conv_maps(acts).numpy(), atol=1e-6)
    assert len(cache) == 5  # a different cache key from the attention maps
    mixed = extract(model, stim, ["neck", "blocks.1"], "conv_map", {}, cache=cache,
                    progress=False)
    assert [f.from_cache for f in mixed.values()] == [True, False] and len(cache) == 6
    assert np.array_equal(mixed["neck"].values, conv["neck"].values)
    assert mixed["blocks.1"].pooling == "conv:mean_abs"
    with pytest.raises(InputError, match="feature_options"):
        extract(model, stim, layers, "attention", {"reductoin": "cls"})


def test_map_kinds_share_one_forward_and_equal_each_kind_alone(tmp_path, rng):
    """Attention and conv maps of one model from the same passes (``extract_kinds``): the same
    maps and cache entries as each kind alone, also when the conv layer comes before the last
    attention block (the forward must not stop early) and with rollout's cross-block state."""
    model = load_model("sam_vit_b", tiny=True, untrained=True)
    imgs = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(imgs, ids=["a", "b", "c"])
    blocks = ["blocks.1.attn", "blocks.3.attn"]
    for attn_opts in ({}, {"reduction": "rollout"}):
        cache = FeatureCache(tmp_path / f"cache{len(attn_opts)}")
        both = extract_kinds(model, stim, {"attention": (blocks, attn_opts),
                                           "conv_map": (["blocks.0"], {})},
                             batch_size=2, cache=cache, progress=False)
        assert len(cache) == 3
        alone_a = extract(model, stim, blocks, "attention", attn_opts, batch_size=2,
                          progress=False)
        alone_c = extract(model, stim, ["blocks.0"], "conv_map", {}, batch_size=2,
                          progress=False)
        for kind, alone in (("attention", alone_a), ("conv_map", alone_c)):
            for n, f in alone.items():
                got = both[kind][n]
                np.testing.assert_array_equal(got.values, f.values)
                assert (got.key, got.pooling, got.from_cache) == (f.key, f.pooling, False)
        hits = extract(model, stim, blocks, "attention", attn_opts, cache=cache,
                       progress=False)
        assert all(f.from_cache for f in hits.values())
        again = extract_kinds(model, stim, {"attention": (blocks, attn_opts),
                                            "conv_map": (["blocks.0"], {})}, cache=cache,
                              progress=False)
        assert all(f.from_cache for fs in again.values() for f in fs.values())


def _rec(p, target="t", model="m", layer="l", per=None):
    return ScoreRecord(model=model, model_id=model, layer=layer, target=target, metric="ridge",
                       value=0.0 if per is None else float(np.mean(per)), p_value=p,
                       extra={} if per is None else {"r": list(per)})


def test_add_fdr_is_benjamini_hochberg_over_the_job():
    p = [0.01, 0.04, 0.03, None, 0.2]
    got = add_fdr([_rec(v) for v in p])
    q = adjust_p_values([np.nan if v is None else v for v in p])
    for r, want in zip(got, q, strict=True):
        assert (r.extra["p_fdr"] is None) if np.isnan(want) else r.extra["p_fdr"] == want


def test_paired_model_comparison_matches_stats(rng):
    a, b = rng.normal(0.3, 0.1, 20), rng.normal(0.2, 0.1, 20)
    rows = [_rec(None, "t1", "A", "l1", a), _rec(None, "t1", "A", "l2", a - 1),
            _rec(None, "t1", "B", "l1", b)]
    frame = pd.DataFrame([{**r.__dict__, "extra": json.dumps(r.extra)} for r in rows])
    got = paired_model_comparison(frame, "A", "B", "ridge", n_perm=999)
    ref = paired_comparison(a, b, n_perm=999)
    assert got.loc[0, "layer_a"] == "l1"  # best layer of A
    assert got.loc[0, "mean_diff"] == pytest.approx(ref.observed)
    assert got.loc[0, "p_value"] == ref.p_value == got.loc[0, "p_fdr"]


def test_grid_fdr_is_benjamini_hochberg_within_each_family(rng):
    from scipy.stats import false_discovery_control

    from cortexalign.bench import grid_fdr

    p = rng.uniform(0, 0.2, size=8)
    frame = pd.DataFrame({
        "model": ["m"] * 8, "layer": [f"l{i % 4}" for i in range(8)],
        "target": ["allen/VISp"] * 4 + ["allen/VISl"] * 4,
        "metric": ["rsa"] * 4 + ["map_pearson"] * 4, "p_value": p,
        "extra": [json.dumps({"target_source": "allen"})] * 8})
    got = grid_fdr(frame, by=("metric",))
    for metric in ("rsa", "map_pearson"):
        sel = (frame["metric"] == metric).to_numpy()
        np.testing.assert_allclose(got.loc[sel, "p_adjusted"], false_discovery_control(p[sel]))
    assert (got["p_adjusted"] >= got["p_value"]).all()
    with pytest.raises(InputError, match="by"):
        grid_fdr(frame, by=("area",))
