"""Contract tests over every Segment Anything family entry (tiny random configs, CPU)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError
from cortexalign.models import MODELS, load_model
from cortexalign.models.sam import SAM_CONFIGS, SAM_PIXEL_MEAN, SAM_PIXEL_STD

NAMES = sorted(SAM_CONFIGS)
LAYER_NAME = re.compile(r"^(blocks\.\d+|stages\.\d+\.blocks\.\d+|neck|fuse_stage[23])$")



@pytest.fixture(scope="module")
def adapters():
    return {n: load_model(n, untrained=True, tiny=True, device="cpu") for n in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_entry_registered_with_tiny_config(name):
    entry = MODELS.entry(name)
    assert entry.meta["tiny"] == {"untrained": True, "tiny": True}
    assert entry.description


@pytest.mark.parametrize("name", NAMES)
def test_layers_are_spatial_maps_with_family_names(adapters, name):
    adapter = adapters[name]
    layers = adapter.layers()
    assert layers and all(LAYER_NAME.match(n) for n in layers), layers
    assert ("neck" in layers) == (SAM_CONFIGS[name].family != "sam2")
    x_bchw = torch.randn(2, 3, 64, 64)
    out = adapter.forward_layers(x_bchw, layers)
    for n, t in out.items():
        assert t.ndim == 4 and t.shape[0] == 2 and torch.isfinite(t).all(), (n, t.shape)
    emb = adapter.encode(x_bchw)
    grid = 2 if SAM_CONFIGS[name].family == "sam2" else 4  # stride 32 (Hiera trunk) or 16
    assert emb.shape[0] == 2 and emb.shape[2:] == (grid, grid)
    if "neck" in layers:
        torch.testing.assert_close(out["neck"], emb)


@pytest.mark.parametrize("name", ["sam_vit_b", "sam2_hiera_t", "efficient_sam_vit_s"])
def test_block_outputs_match_timm_forward_intermediates(adapters, name):
    """Channels-last block outputs come back as (b, c, h, w), the layout timm itself returns."""
    adapter = adapters[name]
    x_bchw = torch.randn(1, 3, 64, 64)
    last = len(adapter.module.blocks) - 1
    with torch.no_grad():
        want = adapter.module.forward_intermediates(x_bchw, intermediates_only=True)[-1]
    got = adapter.forward_layers(x_bchw, [f"blocks.{last}"])[f"blocks.{last}"]
    torch.testing.assert_close(got, want)


def test_mobile_sam_last_stage_keeps_resolution(adapters):
    out = adapters["mobile_sam"].forward_layers(torch.randn(1, 3, 64, 64),
                                                ["stages.2.blocks.1", "stages.3.blocks.0"])
    assert out["stages.2.blocks.1"].shape[2:] == out["stages.3.blocks.0"].shape[2:] == (4, 4)


def test_same_seed_same_weights_and_untrained_id():
    a = load_model("sam_vit_b", untrained=True, tiny=True, seed=3, device="cpu")
    b = load_model("sam_vit_b", untrained=True, tiny=True, seed=3, device="cpu")
    c = load_model("sam_vit_b", untrained=True, tiny=True, seed=4, device="cpu")
    assert a.weights_digest == b.weights_digest != c.weights_digest
    assert a.model_id == "sam_vit_b[tiny]@untrained-seed3"


def test_sam_preprocessing_resizes_longest_side_and_pads(adapters):
    pre = adapters["sam_vit_b"].preprocess
    assert pre.resize == "longest_side_pad" and pre.size == (64, 64)
    np.testing.assert_allclose(np.array(pre.mean) * 255, SAM_PIXEL_MEAN)
    np.testing.assert_allclose(np.array(pre.std) * 255, SAM_PIXEL_STD)
    img = np.full((32, 64, 3), 255, dtype=np.uint8)  # wide image: height scales to 32 of 64
    x_b3hw = pre([img])
    assert x_b3hw.shape == (1, 3, 64, 64)
    assert torch.all(x_b3hw[0, :, 32:] == 0)  # padding below, after normalisation
    want = (255 - np.array(SAM_PIXEL_MEAN)) / np.array(SAM_PIXEL_STD)
    torch.testing.assert_close(x_b3hw[0, :, :32, :].mean(dim=(1, 2)),
                               torch.tensor(want, dtype=torch.float32))


def test_full_config_uses_1024_input():
    assert {c.img_size for c in SAM_CONFIGS.values()} == {1024}
    assert SAM_CONFIGS["sam_vit_h"].kwargs["global_attn_indexes"] == (7, 15, 23, 31)


# -- bad input ------------------------------------------------------------------------------


def test_image_too_small_is_refused(adapters):
    pre = adapters["sam_vit_b"].preprocess
    for call in (pre, lambda imgs: pre(imgs, device="cpu"), pre.group):  # every path, the
        with pytest.raises(InputError, match="8 x 40"):                  # device one included
            call([np.zeros((8, 40, 3), dtype=np.uint8)])
        with pytest.raises(InputError, match="elongated"):
            call([np.zeros((20, 400, 3), dtype=np.uint8)])  # 20 px tall -> 3 px after scaling


def test_sam_preprocessing_on_a_device_equals_the_host_path(adapters):
    pre = adapters["sam_vit_b"].preprocess
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in ((48, 64), (64, 40), (48, 64))]
    torch.testing.assert_close(pre(imgs, device="cpu"), pre(imgs), atol=1e-4, rtol=1e-4)


def test_wrong_channel_count_is_refused(adapters):
    adapter = adapters["sam_vit_b"]
    with pytest.raises(InputError, match="channels"):
        adapter.preprocess([np.zeros((64, 64, 2), dtype=np.uint8)])
    with pytest.raises(InputError, match=r"\(b, 3, h, w\)"):
        adapter.forward_layers(torch.zeros(1, 4, 64, 64), ["neck"])
    with pytest.raises(InputError, match="padded square"):
        adapter.forward_layers(torch.zeros(1, 3, 32, 32), ["neck"])


def test_no_hub_weights_for_mobile_sam_says_what_to_do():
    with pytest.raises(InputError, match="weights=PATH"):
        load_model("mobile_sam", tiny=True, device="cpu")


def test_bad_architecture_option_is_refused():
    with pytest.raises(InputError, match="not_an_option"):
        load_model("sam_vit_b", untrained=True, tiny=True, not_an_option=1, device="cpu")
