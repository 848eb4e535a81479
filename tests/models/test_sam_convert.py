"""Official checkpoints -> our encoders: built from the official packages with random weights,
saved in the official format, loaded through cortexalign, outputs compared (tolerance 1e-5)."""

from __future__ import annotations

import argparse
from functools import partial

import pytest
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models import load_model
from cortexalign.models.sam import CONVERTERS, SAM_CONFIGS

segment_anything = pytest.importorskip("segment_anything", reason="segment-anything not installed")
sam2_hieradet = pytest.importorskip("sam2.modeling.backbones.hieradet",
                                    reason="sam2 not installed")



def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (position and relative-position tables start at zero otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module.eval()


def official_tiny_sam(encoder_only: bool = False) -> nn.Module:
    """segment-anything's architecture at the tiny dims of our ``sam_vit_*`` test config."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    tiny = SAM_CONFIGS["sam_vit_b"].tiny
    encoder = ImageEncoderViT(
        img_size=tiny["img_size"], patch_size=16, embed_dim=tiny["embed_dim"], depth=tiny["depth"],
        num_heads=tiny["num_heads"], out_chans=tiny["neck_chans"], qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        global_attn_indexes=tiny["global_attn_indexes"], window_size=tiny["window_size"])
    if encoder_only:
        return _randomise(encoder)
    dim = tiny["neck_chans"]
    sam = Sam(image_encoder=encoder,
              prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(4, 4),
                                           input_image_size=(64, 64), mask_in_chans=4),
              mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
                  depth=1, embedding_dim=dim, mlp_dim=2 * dim, num_heads=2), transformer_dim=dim,
                  iou_head_depth=1, iou_head_hidden_dim=dim))
    return _randomise(sam)


def official_tiny_hiera() -> nn.Module:
    tiny = SAM_CONFIGS["sam2_hiera_t"].tiny
    trunk = sam2_hieradet.Hiera(
        embed_dim=tiny["embed_dim"], num_heads=tiny["num_heads"], stages=tiny["stages"],
        global_att_blocks=tiny["global_att_blocks"], window_spec=tiny["window_spec"],
        window_pos_embed_bkg_spatial_size=tiny["global_pos_size"])
    return _randomise(trunk, seed=1)


@pytest.mark.parametrize("name", ["sam_vit_b", "sam_vit_h"])
def test_segment_anything_checkpoint_matches_official_encoder(tmp_path, name):
    sam = official_tiny_sam()
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(sam.state_dict(), path)  # the official format: Sam.state_dict(), all parts
    adapter = load_model(name, weights=path, tiny=True, device="cpu")
    x_bchw = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = sam.image_encoder(x_bchw)
    got = adapter.encode(x_bchw)
    assert got.shape == want.shape == (2, 16, 4, 4)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # an encoder-only state_dict converts too
    torch.save(sam.image_encoder.state_dict(), tmp_path / "enc.pth")
    again = load_model(name, weights=tmp_path / "enc.pth", tiny=True, device="cpu")
    torch.testing.assert_close(again.encode(x_bchw), want, rtol=1e-5, atol=1e-5)


def test_sam2_checkpoint_matches_official_trunk(tmp_path):
    trunk = official_tiny_hiera()
    sd = {f"image_encoder.trunk.{k}": v for k, v in trunk.state_dict().items()}
    sd["image_encoder.neck.convs.0.conv.weight"] = torch.zeros(4, 4, 1, 1)  # dropped
    sd["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 4)  # dropped
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": sd}, path)  # the official format: {"model": state_dict}
    adapter = load_model("sam2_hiera_t", weights=path, tiny=True, device="cpu")
    x_bchw = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        stages_want = trunk(x_bchw)  # one (b, c, h, w) map per stage
    ends = [f"blocks.{i}" for i in (0, 1, 3, 4)]  # stage ends of stages (1, 1, 2, 1)
    got = adapter.forward_layers(x_bchw, ends)
    for name, want in zip(ends, stages_want, strict=True):
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(adapter.encode(x_bchw), stages_want[-1], rtol=1e-5, atol=1e-5)


def test_mobile_sam_layout_round_trip(tmp_path):
    """MobileSAM's TinyViT key layout (documented in _convert) maps onto every encoder key."""
    ours = load_model("mobile_sam", untrained=True, tiny=True, seed=5, device="cpu")
    sd = ours.module.state_dict()
    official = {}
    for k, v in sd.items():  # the inverse map, written out independently of the converter
        parts = k.split(".")
        if k.startswith("patch_embed."):
            seq = {"conv1": "0", "conv2": "2"}[parts[1]]
            kind = {"conv": "c", "bn": "bn"}[parts[2]]
            key = f"patch_embed.seq.{seq}.{kind}.{'.'.join(parts[3:])}"
        elif parts[2] == "downsample":
            key = f"layers.{int(parts[1]) - 1}.downsample.{'.'.join(parts[3:])}"
        elif k.startswith("stages."):
            key = "layers." + ".".join(parts[1:])
        elif k.startswith("head.norm."):
            key = "norm_head." + parts[-1]
        else:
            key = k
        key = key.replace(".conv.weight", ".c.weight") if "neck" not in key else key
        official[f"image_encoder.{key}"] = v
    official["image_encoder.head.weight"] = torch.zeros(1000, 32)
    official["image_encoder.layers.1.blocks.0.attn.attention_bias_idxs"] = torch.zeros(4, 4)
    official["mask_decoder.x"] = torch.zeros(1)
    assert any(".c.weight" in k for k in official)
    torch.save(official, tmp_path / "mobile_sam.pt")
    loaded = load_model("mobile_sam", weights=tmp_path / "mobile_sam.pt", tiny=True, device="cpu")
    x_bchw = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded.encode(x_bchw), ours.encode(x_bchw))


def test_efficient_sam_pos_embed_resized_like_efficient_sam(tmp_path):
    ours = load_model("efficient_sam_vit_t", untrained=True, tiny=True, device="cpu")
    sd = {f"image_encoder.{k}": v for k, v in ours.module.state_dict().items()}
    pos_1td = torch.randn(1, 1 + 14 * 14, 32)
    sd["image_encoder.pos_embed"] = pos_1td
    torch.save({"model": sd}, tmp_path / "efficient_sam_vitt.pt")
    loaded = load_model("efficient_sam_vit_t", weights=tmp_path / "efficient_sam_vitt.pt",
                        tiny=True, device="cpu")
    grid = pos_1td[:, 1:].reshape(1, 14, 14, 32).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic",
                                           align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(loaded.module.pos_embed.detach(), want)


def test_own_layout_passes_through(tmp_path):
    ours = load_model("edge_sam", untrained=True, tiny=True, seed=2, device="cpu")
    torch.save(ours.module.state_dict(), tmp_path / "edge.pth")
    loaded = load_model("edge_sam", weights=tmp_path / "edge.pth", tiny=True,
                        device="cpu")
    assert loaded.weights_digest == ours.weights_digest


def test_mismatched_keys_name_first_missing_and_unexpected(tmp_path):
    sam = official_tiny_sam()
    sd = sam.state_dict()
    sd.pop("image_encoder.blocks.0.attn.qkv.weight")
    sd["image_encoder.blocks.0.attn.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=r"blocks\.0\.attn\.qkv\.weight.*blocks\.0\.attn\.extra"):
        load_model("sam_vit_b", weights=path, tiny=True, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    torch.save({"model": {f"image_encoder.trunk.{k}": v for k, v in
                          official_tiny_hiera().state_dict().items()}}, tmp_path / "h.pt")
    with pytest.raises(InputError, match="missing keys"):
        load_model("sam_vit_b", weights=tmp_path / "h.pt", tiny=True, device="cpu")


def test_pickled_checkpoint_is_refused(tmp_path):
    torch.save({"model": argparse.Namespace(x=1)}, tmp_path / "pickled.pt")  # needs unpickling
    with pytest.raises(InputError, match="unpickling"):
        load_model("sam2_hiera_t", weights=tmp_path / "pickled.pt", tiny=True, device="cpu")


def test_every_family_has_a_converter():
    assert {c.family for c in SAM_CONFIGS.values()} <= set(CONVERTERS)
