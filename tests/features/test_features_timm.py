"""Extraction through real (tiny, random-initialised) timm models via cortexalign.models.

References come straight from timm's ``forward_intermediates``, one image at a time, pooled in
numpy, so they share nothing with the adapter or the extractor but the weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _features_standin import make_stimuli

from cortexalign import models
from cortexalign.features import FeatureCache, extract_features


@pytest.fixture(scope="module")
def vit():
    return models.load_model("timm:test_vit", untrained=True, device="cpu", img_size=32)


@pytest.fixture(scope="module")
def resnet():
    return models.load_model("timm:test_resnet", untrained=True, device="cpu",
                             pretrained_cfg_overlay={"input_size": (3, 32, 32)})


def _timm_reference(adapter, stimuli, index: int, prefix: bool) -> list[np.ndarray]:
    out = []
    with torch.no_grad():
        for img in stimuli.images():
            x = adapter.preprocess([img])
            kw = {"output_fmt": "NLC", "return_prefix_tokens": True} if prefix else {}
            (t,) = adapter.module.forward_intermediates(x, indices=[index],
                                                        intermediates_only=True, **kw)
            out.append(t)
    return out


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_vit_blocks_match_timm(vit, pooling):
    stim = make_stimuli(5, size=20)
    layers = ["blocks.1", "blocks.4"]
    feats = extract_features(vit, stim, layers, pooling=pooling, batch_size=2, progress=False)
    for layer in layers:
        ref = _timm_reference(vit, stim, int(layer.split(".")[1]), prefix=True)
        patch = np.stack([r[0][0].numpy() for r in ref])  # (s, t, d) patch tokens
        cls = np.stack([r[1][0, 0].numpy() for r in ref])
        want = {"mean": patch.mean(axis=1), "max": patch.max(axis=1), "cls": cls}[pooling]
        np.testing.assert_allclose(feats[layer].values, want, rtol=1e-4, atol=1e-5)


def test_resnet_stages_match_timm(resnet):
    stim = make_stimuli(4, size=20)
    feats = extract_features(resnet, stim, ["layer2", "layer4", "logits"], batch_size=3,
                             progress=False)
    ref = _timm_reference(resnet, stim, 2, prefix=False)  # stem act1 is index 0, layer2 is 2
    want = np.stack([r[0].numpy().mean(axis=(1, 2)) for r in ref])
    np.testing.assert_allclose(feats["layer2"].values, want, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        logits = resnet.module(resnet.preprocess(list(stim.images()))).numpy()
    np.testing.assert_allclose(feats["logits"].values, logits, rtol=1e-4, atol=1e-5)
    assert feats["layer4"].values.shape == (4, resnet.module.num_features)


def test_cache_skips_the_real_model(vit, tmp_path, monkeypatch):
    stim = make_stimuli(3, size=20)
    cache = FeatureCache(tmp_path)
    calls = []
    real = vit.forward_layers
    monkeypatch.setattr(vit, "forward_layers", lambda x, names: calls.append(1) or real(x, names))
    a = extract_features(vit, stim, ["blocks.0", "logits"], cache=cache, progress=False)
    n = len(calls)
    b = extract_features(vit, stim, ["blocks.0", "logits"], cache=cache, progress=False)
    assert n == 1 and len(calls) == 1 and all(f.from_cache for f in b.values())
    meta = cache.metadata(a["blocks.0"].key)
    assert meta["model_id"] == vit.model_id and meta["weights_digest"] == vit.weights_digest
    assert meta["preprocess"] == vit.preprocess.key() and meta["stimulus_ids"] == list(stim.ids)


def test_submodule_paths_are_accepted(resnet):
    stim = make_stimuli(2, size=20)
    f = extract_features(resnet, stim, "layer1.0.conv1", progress=False)["layer1.0.conv1"]
    assert f.values.shape[0] == 2 and np.isfinite(f.values).all()
