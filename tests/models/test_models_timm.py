"""timm adapter: forward_intermediates equals hooked module outputs, state left untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.models import ModelAdapter, Preprocess, capture_outputs, load_model

# (name, kwargs, input side) - tiny random-initialised configs
FAMILIES = [
    ("timm:vit_tiny_patch16_224", {"img_size": 32, "depth": 3, "num_classes": 10}, 32),
    ("timm:vit_small_patch14_reg4_dinov2", {"img_size": 28, "depth": 2, "num_classes": 10}, 28),
    ("timm:resnet10t", {"num_classes": 10}, 32),
    ("timm:convnext_atto", {"num_classes": 10}, 32),
    ("timm:efficientnet_lite0", {"num_classes": 10}, 32),
    ("timm:samvit_base_patch16", {"img_size": 64, "depth": 2, "global_attn_indexes": (1,)}, 64),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family(request):
    name, kwargs, side = request.param
    return load_model(name, untrained=True, device="cpu", **kwargs), side


def _hooked(adapter: ModelAdapter, x: torch.Tensor, paths: list[str]) -> dict[str, torch.Tensor]:
    with torch.inference_mode(), capture_outputs(adapter.module, paths) as got:
        adapter.module(x)
    return dict(got)


def _as_returned(hook_out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Hook outputs in the adapter's layout: SAM blocks are NHWC, the adapter returns NCHW."""
    if hook_out.shape != like.shape and hook_out.ndim == 4:
        return hook_out.permute(0, 3, 1, 2)
    return hook_out


def test_forward_intermediates_equal_hooked_block_outputs(family):
    adapter, side = family
    x = torch.randn(2, 3, side, side)
    feature_layers = adapter.layers()[:-1]
    out = adapter.forward_layers(x, feature_layers)
    ref = _hooked(adapter, x, feature_layers)
    assert list(out) == feature_layers
    for name in feature_layers:
        torch.testing.assert_close(out[name], _as_returned(ref[name], out[name]),
                                   rtol=1e-5, atol=1e-5)


def test_token_layers_have_prefix_tokens_first(family):
    adapter, side = family
    x = torch.randn(2, 3, side, side)
    first = adapter.forward_layers(x, [adapter.layers()[0]])[adapter.layers()[0]]
    if adapter.num_prefix_tokens == 0:
        return
    module = adapter.module
    n_patches = module.patch_embed.num_patches
    assert first.shape == (2, adapter.num_prefix_tokens + n_patches, module.embed_dim)


def test_logits_equal_full_forward_and_single_layers_agree(family):
    adapter, side = family
    x = torch.randn(2, 3, side, side)
    head = adapter.layers()[-1]
    assert head in ("logits", "head")
    with torch.inference_mode():
        full = adapter.module(x)
    both = adapter.forward_layers(x, [adapter.layers()[0], head])
    torch.testing.assert_close(both[head], full, rtol=1e-5, atol=1e-5)
    alone = adapter.forward_layers(x, [adapter.layers()[0]])  # early-stopping path
    torch.testing.assert_close(alone[adapter.layers()[0]], both[adapter.layers()[0]])


def test_state_and_hooks_untouched(family):
    adapter, side = family
    module = adapter.module
    before = copy.deepcopy(module.state_dict())
    module.train()
    try:
        out_train_flag = adapter.forward_layers(torch.randn(2, 3, side, side), adapter.layers())
    finally:
        flags = [m.training for m in module.modules()]
        module.eval()
    assert all(flags), "forward_layers must restore the caller's train mode"
    for m in module.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats not updated either
    assert all(torch.isfinite(v).all() for v in out_train_flag.values())


def test_unknown_layer_suggests_close_names(family):
    adapter, side = family
    good = adapter.layers()[0]
    with pytest.raises(UnknownNameError) as err:
        adapter.forward_layers(torch.randn(1, 3, side, side), [good + "x"])
    assert good in err.value.matches


def test_submodule_paths_are_extractable_with_hooks():
    adapter = load_model("timm:vit_tiny_patch16_224", untrained=True, device="cpu", img_size=32,
                         depth=2, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = adapter.forward_layers(x, ["blocks.1.attn", "blocks.1"])
    ref = _hooked(adapter, x, ["blocks.1.attn", "blocks.1"])
    torch.testing.assert_close(out["blocks.1.attn"], ref["blocks.1.attn"])
    torch.testing.assert_close(out["blocks.1"], ref["blocks.1"])


def test_untrained_is_seeded_and_named():
    a = load_model("timm:resnet10t", untrained=True, seed=3)
    b = load_model("timm:resnet10t", pretrained=False, seed=3)
    c = load_model("timm:resnet10t", untrained=True, seed=4)
    assert a.model_id == b.model_id == "timm:resnet10t@untrained-seed3"
    assert a.weights_digest == b.weights_digest != c.weights_digest
    state = torch.random.get_rng_state()
    load_model("timm:resnet10t", untrained=True, seed=5)
    assert torch.equal(state, torch.random.get_rng_state()), "the caller's RNG must be untouched"


def test_unknown_timm_model_and_bad_kwargs():
    with pytest.raises(UnknownNameError) as err:
        load_model("timm:resnet1Ot", untrained=True)
    assert "resnet10t" in err.value.matches
    with pytest.raises(UnknownNameError):
        load_model("timmm:resnet10t")
    with pytest.raises(InputError, match="kwargs"):
        load_model("timm:resnet10t", untrained=True, not_an_option=1)


def test_mismatched_forward_intermediates_fall_back_to_hooks():
    """If forward_intermediates disagrees with the feature_info modules, hooks take over."""
    adapter = load_model("timm:resnet10t", untrained=True, num_classes=10, device="cpu")
    real = adapter.module.forward_intermediates
    adapter.module.forward_intermediates = lambda x, **kw: real(x, **kw)[::-1]
    x = torch.randn(2, 3, 32, 32)
    layers = ["layer1", "layer2"]
    with pytest.warns(UserWarning, match="forward hooks instead"):
        out = adapter.forward_layers(x, layers)
    ref = _hooked(adapter, x, layers)
    for name in layers:
        torch.testing.assert_close(out[name], ref[name])


class _TupleOut(nn.Module):
    def forward(self, x):
        return x, x


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pair = _TupleOut()

    def forward(self, x):
        return self.pair(self.conv(x))[0]


def test_hooks_removed_when_the_forward_raises():
    adapter = ModelAdapter("net", "net@test", _Net(), Preprocess((8, 8), (0.5,) * 3, (0.5,) * 3),
                           torch.device("cpu"))
    assert adapter.layers() == ["conv", "pair"]
    with pytest.raises(InputError, match="tensor"):
        adapter.forward_layers(torch.randn(1, 3, 8, 8), ["conv", "pair"])
    assert all(not m._forward_hooks for m in adapter.module.modules())
    assert adapter.forward_layers(torch.randn(1, 3, 8, 8), ["conv"])["conv"].shape == (1, 4, 6, 6)


@pytest.mark.parametrize("x", [torch.randn(3, 8, 8), torch.randn(1, 1, 8, 8),
                               torch.zeros(1, 3, 8, 8, dtype=torch.int64), "image"])
def test_bad_input_raises(x):
    adapter = ModelAdapter("net", "net@test", _Net(), Preprocess((8, 8), (0.5,) * 3, (0.5,) * 3),
                           torch.device("cpu"))
    with pytest.raises(InputError, match="x_bchw"):
        adapter.forward_layers(x, ["conv"])
    with pytest.raises(InputError, match="layers"):
        adapter.forward_layers(torch.randn(1, 3, 8, 8), [])


def test_verified_layers_switch_to_hooks_with_identical_outputs(family):
    """After the first call has compared forward_intermediates with the hooked modules, layers
    whose outputs are the same tensors (same layout) are read through hooks; others (SAM's NHWC
    blocks returned as NCHW) stay on forward_intermediates. The values never change."""
    adapter, side = family
    x = torch.randn(2, 3, side, side)
    layers = adapter.layers()[:-1]
    calls = []
    real = adapter.module.forward_intermediates
    adapter.module.forward_intermediates = lambda *a, **kw: calls.append(1) or real(*a, **kw)
    try:
        fresh = copy.copy(adapter)
        fresh._hook_equal = {}
        first = fresh.forward_layers(x, layers)
        second = fresh.forward_layers(x, layers)
    finally:
        del adapter.module.forward_intermediates
    same_layout = all(fresh._hook_equal[n] for n in layers)
    assert len(calls) == (1 if same_layout else 2)
    layout_kept = {n: _as_returned(_hooked(fresh, x, [n])[n], first[n]).shape for n in layers}
    for n in layers:
        assert second[n].shape == first[n].shape == layout_kept[n]
        torch.testing.assert_close(second[n], first[n], rtol=0, atol=0)
