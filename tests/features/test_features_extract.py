"""Batched extraction against a per-image reference, and its validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _features_standin import TinyAdapter

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import FeatureCache, Features, extract_features
from cortexalign.stimuli import StimulusSet

LAYERS = ["conv1", "conv2", "tokens", "head"]


def reference(adapter: TinyAdapter, stimuli, layer: str, pooling: str) -> np.ndarray:
    """One image at a time, pooled in numpy."""
    rows = []
    with torch.no_grad():
        for img in stimuli.images():
            a = adapter.module.forward_all(adapter.preprocess([img]))[layer][0].numpy()
            if pooling == "none":
                rows.append(a)
            elif pooling == "flatten":
                rows.append(a.ravel())
            elif a.ndim == 3:  # (c, h, w)
                rows.append(a.mean(axis=(1, 2)) if pooling == "mean" else a.max(axis=(1, 2)))
            elif a.ndim == 2:  # (t, d), one prefix token
                pick = {"mean": lambda z: z[1:].mean(0), "max": lambda z: z[1:].max(0),
                        "cls": lambda z: z[0]}[pooling]
                rows.append(pick(a))
            else:
                rows.append(a)
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["mean", "max", "flatten", "none"])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_matches_per_image_reference(adapter, stimuli, pooling, batch_size):
    feats = extract_features(adapter, stimuli, LAYERS, pooling=pooling, batch_size=batch_size,
                             progress=False)
    assert list(feats) == LAYERS
    for layer, f in feats.items():
        assert isinstance(f, Features) and f.values.dtype == np.float32
        assert f.stimulus_ids == stimuli.ids and f.layer == layer and f.pooling == pooling
        np.testing.assert_allclose(f.values, reference(adapter, stimuli, layer, pooling),
                                   rtol=1e-4, atol=1e-5)


def test_cls_pooling_on_token_layer(adapter, stimuli):
    f = extract_features(adapter, stimuli, "tokens", pooling="cls", progress=False)["tokens"]
    np.testing.assert_allclose(f.values, reference(adapter, stimuli, "tokens", "cls"), atol=1e-6)


def test_one_forward_per_batch_for_all_layers(adapter, stimuli):
    extract_features(adapter, stimuli, LAYERS, batch_size=3, progress=False)
    assert adapter.calls == 3  # 7 stimuli in batches of 3


def test_values_are_read_only(adapter, stimuli):
    f = extract_features(adapter, stimuli, "head", progress=False)["head"]
    with pytest.raises(ValueError):
        f.values[0, 0] = 1.0


def test_eval_mode_is_used_and_training_flag_restored(adapter, stimuli):
    adapter.module.train()
    a = extract_features(adapter, stimuli, "head", progress=False)["head"].values
    b = extract_features(adapter, stimuli, "head", progress=False)["head"].values
    np.testing.assert_array_equal(a, b)  # dropout was off
    assert adapter.module.training and adapter.module.drop.training


def test_float16_storage(adapter, stimuli):
    f = extract_features(adapter, stimuli, "head", dtype="float16", progress=False)["head"]
    assert f.values.dtype == np.float16
    np.testing.assert_allclose(f.values, reference(adapter, stimuli, "head", "mean"), atol=2e-2)


def test_bf16_autocast_is_close_to_fp32_and_keyed_apart(adapter, stimuli):
    f32 = extract_features(adapter, stimuli, "tokens", precision="fp32", progress=False)["tokens"]
    bf16 = extract_features(adapter, stimuli, "tokens", precision="bf16", progress=False)["tokens"]
    assert bf16.values.dtype == np.float32 and bf16.key != f32.key
    np.testing.assert_allclose(bf16.values, f32.values, atol=0.05)


def test_nan_names_model_layer_and_first_stimulus_and_caches_nothing(tmp_path):
    imgs = np.full((5, 10, 10, 3), 20, np.uint8)
    imgs[3] = 250  # bright -> poisoned by the stand-in
    imgs[4] = 250
    stim = StimulusSet.from_arrays(imgs, ids=[f"s{k}" for k in range(5)])
    adapter = TinyAdapter(nan_above=0.5, model_id="test:nanny")
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(InputError) as err:
        extract_features(adapter, stim, ["conv1", "tokens"], batch_size=2, cache=cache,
                         progress=False)
    msg = str(err.value)
    assert "'test:nanny'" in msg and "'tokens'" in msg and "'s3'" in msg
    assert cache.keys() == []


def test_unknown_layer_suggests_close_names(adapter, stimuli):
    with pytest.raises(UnknownNameError, match="conv1"):
        extract_features(adapter, stimuli, ["conv_1"], progress=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"pooling": "avg"}, "pooling"),
    ({"precision": "fp16"}, "precision"),
    ({"dtype": "float64"}, "dtype"),
    ({"batch_size": 0}, "batch_size"),
    ({"layers": []}, "layers"),
])
def test_bad_arguments_fail_at_the_boundary(adapter, stimuli, kwargs, match):
    args = {"layers": ["head"], **kwargs}
    with pytest.raises((InputError, UnknownNameError), match=match):
        extract_features(adapter, stimuli, progress=False, **args)
    assert adapter.calls == 0


def test_cls_on_conv_layer_says_use_mean(adapter, stimuli):
    with pytest.raises(InputError, match="pooling='mean'"):
        extract_features(adapter, stimuli, "conv2", pooling="cls", progress=False)


def test_rejects_non_adapter_and_non_stimulus_set(adapter, stimuli):
    with pytest.raises(InputError, match="adapter"):
        extract_features(object(), stimuli, "head", progress=False)
    with pytest.raises(InputError, match="StimulusSet"):
        extract_features(adapter, [np.zeros((4, 4, 3), np.uint8)], "head", progress=False)


def test_progress_bar_runs(adapter, stimuli, capsys):
    extract_features(adapter, stimuli, "head", progress=True)
    assert adapter.calls == 1
