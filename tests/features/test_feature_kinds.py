"""The feature-kind registry: every kind through the one extraction path, its options and layers,
and the spiking kind against a direct time-averaged computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import (
    FEATURE_KINDS,
    POOLINGS,
    FeatureCache,
    extract,
    feature_keys,
    kind_layers,
    kind_options,
    resolve_kind,
)
from cortexalign.models import load_model
from cortexalign.stimuli import StimulusSet

# every registered kind: the tiny model and layer request it is tested on (a kind registered
# without an entry here fails test_every_kind_is_covered)
CASES = {
    "activations": ("vit", ["blocks.0", "blocks.5"], {"pooling": "cls"}),
    "attention": ("vit", "all", {"reduction": "cls"}),
    "conv_map": ("vit", ["blocks.1", "blocks.4"], {"kind": "topk", "k": 3}),
    "spiking_time_averaged": ("snn", "all", {"pooling": "mean"}),
}


@pytest.fixture(scope="module")
def models():
    return {"vit": load_model("timm:test_vit", untrained=True, device="cpu", img_size=32),
            "snn": load_model("snn:spiliformer_tiny", untrained=True, img_size=16, device="cpu")}


@pytest.fixture(scope="module")
def stim():
    imgs = np.random.default_rng(3).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    return StimulusSet.from_arrays(imgs, ids=[f"s{i}" for i in range(5)], name="kinds")


def test_every_kind_is_covered():
    assert sorted(FEATURE_KINDS) == sorted(CASES)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_kind_runs_through_the_one_path(tmp_path, models, stim, kind):
    """Batch size, streaming and the cache change nothing: the same values and keys."""
    model_name, requested, options = CASES[kind]
    model = models[model_name]
    feat = FEATURE_KINDS.get(kind)
    names = kind_layers(model, kind, requested, options, stim)
    assert names
    one = extract(model, stim, names, kind, options, batch_size=1, progress=False)
    cache = FeatureCache(tmp_path / "cache")
    batched = extract(model, stim, names, kind, options, batch_size=3, cache=cache,
                      progress=False)
    streamed = extract(model, stim, names, kind, options, batch_size=3,
                       cache=FeatureCache(tmp_path / "streamed"), memory_budget=0,
                       progress=False)
    keys = feature_keys(model, stim, names, kind=kind, options=options)
    for n in names:
        values = one[n].values
        assert values.shape[0] == len(stim) and values.dtype == np.float32
        assert values.ndim == (3 if feat.maps else 2)
        np.testing.assert_allclose(batched[n].values, values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(streamed[n].values.read(), batched[n].values)
        assert one[n].key == batched[n].key == streamed[n].key == keys[n]
        assert streamed[n].streamed and not batched[n].streamed
        assert cache.metadata(keys[n])["feature_kind"] == kind
    again = extract(model, stim, names, kind, options, cache=cache, progress=False)
    assert all(f.from_cache for f in again.values())


def test_kinds_never_share_a_cache_key(models, stim):
    vit = models["vit"]
    keys = {kind: feature_keys(vit, stim, ["blocks.1"], kind=kind)["blocks.1"]
            for kind in ("activations", "conv_map")}
    keys["attention"] = feature_keys(vit, stim, ["blocks.1.attn"], kind="attention")[
        "blocks.1.attn"]
    keys["pooled attn block"] = feature_keys(vit, stim, ["blocks.1.attn"])["blocks.1.attn"]
    assert len(set(keys.values())) == len(keys)


def test_options_are_completed_and_checked():
    assert kind_options("attention") == {"reduction": "received", "chunk_size": None}
    assert kind_options("activations", {"pooling": "max"}) == {"pooling": "max"}
    with pytest.raises(InputError, match="feature_options") as err:
        kind_options("conv_map", {"kk": 3})
    assert "kind, k" in str(err.value)
    with pytest.raises(UnknownNameError, match="rollout"):
        kind_options("attention", {"reduction": "rolout"})
    with pytest.raises(UnknownNameError, match="pooling"):
        kind_options("activations", {"pooling": "avg"})
    with pytest.raises(UnknownNameError, match="attention"):
        FEATURE_KINDS.get("atention")
    assert set(kind_options("activations")) == {"pooling"} and "mean" in POOLINGS


def test_maps_are_fp32_whatever_is_asked(models, stim):
    with pytest.raises(InputError, match="precision"):
        extract(models["vit"], stim, ["blocks.0.attn"], "attention", precision="bf16",
                progress=False)
    with pytest.raises(InputError, match="spatial layers"):
        extract(models["vit"], stim, ["logits"], "conv_map", progress=False)


# -- spiking_time_averaged -----------------------------------------------------------------------

def test_activations_of_a_spiking_model_are_its_time_averaged_outputs(tmp_path, models, stim):
    """The spiking kind equals a direct computation: reset the membranes, run the network over
    its T time steps with hooks, average each layer's output over T, pool over tokens."""
    from cortexalign.spiking.features import extract_features as spiking_outputs
    from cortexalign.spiking.neurons import reset_states

    snn = models["snn"]
    assert resolve_kind("activations", snn) == "spiking_time_averaged"
    assert resolve_kind("activations", models["vit"]) == "activations"
    names = kind_layers(snn, "activations", "all", {"pooling": "mean"}, stim)
    cache = FeatureCache(tmp_path)
    got = extract(snn, stim, names, "spiking_time_averaged", batch_size=2, cache=cache,
                  progress=False)
    as_activations = extract(snn, stim, names, progress=False)  # kind "activations"
    module = snn.module.eval()
    x_bchw = snn.preprocess([stim.image(i) for i in range(len(stim))])
    reset_states(module)
    with torch.no_grad():
        ref = spiking_outputs(module, x_bchw, names, time_reduce="mean")
    reset_states(module)
    for n in names:
        ref_n = ref[n].double()
        want = ref_n.mean(dim=(2, 3)) if ref_n.ndim == 4 else ref_n.mean(dim=1)
        np.testing.assert_allclose(got[n].values, want.numpy(), rtol=1e-5, atol=1e-6)
        assert np.array_equal(as_activations[n].values, got[n].values)
        assert as_activations[n].key == got[n].key
    meta = cache.metadata(got[names[0]].key)
    assert meta["feature_kind"] == "spiking_time_averaged"
    assert meta["time_steps"] == snn.module.config.time_steps and meta["time_reduce"] == "mean"
    assert np.abs(got[names[-1]].values).sum() > 0  # calibrated: the network is not silent


def test_the_spiking_kind_needs_a_spiking_model(models, stim):
    with pytest.raises(InputError, match="spiking model"):
        extract(models["vit"], stim, ["blocks.0"], "spiking_time_averaged", progress=False)
    with pytest.raises(UnknownNameError, match="stage1"):
        extract(models["snn"], stim, ["stage1.blok0"], "spiking_time_averaged", progress=False)
