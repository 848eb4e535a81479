"""Contract test over every registered model: a new entry is tested the day it is registered.

Each entry's ``tiny`` metadata gives ``load_model`` kwargs for a small CPU config (prefixed
families add ``"name"``, a concrete example).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.errors import UnknownNameError
from cortexalign.models import MODELS, ModelAdapter, list_models, load_model

ENTRIES = MODELS.prefix_entries() + MODELS.entries()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_registered_model_follows_the_contract(entry):
    assert "tiny" in entry.meta, f"{entry.name!r} is registered without a tiny test config"
    tiny = dict(entry.meta["tiny"])
    name = tiny.pop("name", entry.name)
    adapter = load_model(name, device="cpu", **tiny)
    assert isinstance(adapter, ModelAdapter)
    assert adapter.model_id.startswith(name) and len(adapter.weights_digest) == 64
    assert not adapter.module.training
    layers = adapter.layers()
    assert layers and len(set(layers)) == len(layers)

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(37, 45, 3), dtype=np.uint8),
              rng.integers(0, 256, size=(50, 30), dtype=np.uint8)]
    x_bchw = adapter.preprocess(images)
    assert x_bchw.shape == (2, 3, *adapter.preprocess.size) and x_bchw.dtype == torch.float32
    out = adapter.forward_layers(x_bchw, layers)
    assert list(out) == layers
    for layer, acts in out.items():
        assert acts.shape[0] == 2 and acts.ndim in (2, 3, 4), (layer, tuple(acts.shape))
        assert torch.isfinite(acts).all(), layer
        if acts.ndim == 3:
            assert acts.shape[1] > adapter.num_prefix_tokens
    for module in adapter.module.modules():
        assert not module._forward_hooks
    with pytest.raises(UnknownNameError):
        adapter.forward_layers(x_bchw, ["no_such_layer"])


def test_list_models_rows():
    rows = list_models()
    names = [r["name"] for r in rows]
    assert {"timm:<name>", "efficientnet_lite0", "gabor_v1"} <= set(names)
    assert all(list(r) == ["name", "description", "layers", "weights"] for r in rows)
    assert all(r["description"] and r["layers"] and r["weights"] for r in rows)


def test_unknown_model_suggests():
    with pytest.raises(UnknownNameError) as err:
        load_model("gabor_v2")
    assert "gabor_v1" in err.value.matches
