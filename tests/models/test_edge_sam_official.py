"""EdgeSAM's converter against the official image encoder architecture.

The reference below is written from EdgeSAM's ``edge_sam/modeling/rep_vit.py``,
``edge_sam/modeling/common.py`` and ``edge_sam/build_sam.py`` (chongzhou96/EdgeSAM, read at
commit b53372c): ``RepViT(arch="m1", img_size=1024, fuse=True, upsample_mode="bicubic")``. Its
block table (kernel, expansion, channels, SE, HS, stride) is the official ``m1_cfgs``; stages end
where the width changes; the stem is two conv+BN at stride 2 with a GELU between; stride-1
blocks are a RepVGG-style depthwise conv (3x3 conv+BN, 1x1 conv+BN, identity) with optional
squeeze-excite, stride-2 blocks a depthwise conv+BN at stride 2, optional SE, and a 1x1 conv+BN;
every block ends with a residual 1x1-GELU-1x1 channel mixer; the squeeze-excite is timm's
``SqueezeExcite(c, 0.25)`` (written out here: mean, 1x1 conv, ReLU, 1x1 conv, sigmoid, with
``make_divisible(c / 4, 8)`` hidden channels); stage 2 (1x1 conv) and stage 3 (1x1 conv, x2
bicubic upsampling, ``align_corners=False``) are summed and go through SAM's neck (LayerNorm2d
eps 1e-6). Parameter names follow that file, so ``{"image_encoder." + k: v}`` of its state dict,
plus SAM's prompt encoder and mask decoder, is the layout of ``edge_sam.pth``
(``scripts/convert_weights.py`` saves the full model's state dict, flat). Random weights and
BatchNorm statistics; the outputs must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models import load_model

# official m1_cfgs: kernel, expansion, channels, SE, HS, stride
M1_CFGS = [
    [3, 2, 48, 1, 0, 1], [3, 2, 48, 0, 0, 1], [3, 2, 48, 0, 0, 1],
    [3, 2, 96, 0, 0, 2], [3, 2, 96, 1, 0, 1], [3, 2, 96, 0, 0, 1], [3, 2, 96, 0, 0, 1],
    [3, 2, 192, 0, 1, 2], [3, 2, 192, 1, 1, 1], [3, 2, 192, 0, 1, 1], [3, 2, 192, 1, 1, 1],
    [3, 2, 192, 0, 1, 1], [3, 2, 192, 1, 1, 1], [3, 2, 192, 0, 1, 1], [3, 2, 192, 1, 1, 1],
    [3, 2, 192, 0, 1, 1], [3, 2, 192, 1, 1, 1], [3, 2, 192, 0, 1, 1], [3, 2, 192, 1, 1, 1],
    [3, 2, 192, 0, 1, 1], [3, 2, 192, 1, 1, 1], [3, 2, 192, 0, 1, 1], [3, 2, 192, 0, 1, 1],
    [3, 2, 384, 0, 1, 2], [3, 2, 384, 1, 1, 1], [3, 2, 384, 0, 1, 1],
]
# the same pattern at the tiny config's widths (8, 16, 24, 32) and depths (2, 2, 3, 2)
TINY_CFGS = [
    [3, 2, 8, 1, 0, 1], [3, 2, 8, 0, 0, 1],
    [3, 2, 16, 0, 0, 2], [3, 2, 16, 0, 0, 1],
    [3, 2, 24, 0, 1, 2], [3, 2, 24, 1, 1, 1], [3, 2, 24, 0, 1, 1],
    [3, 2, 32, 0, 1, 2], [3, 2, 32, 0, 1, 1],
]


class ConvBN(nn.Sequential):
    def __init__(self, a, b, ks=1, stride=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, 1, groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class SE(nn.Module):  # timm SqueezeExcite(c, 0.25): rd = make_divisible(c * 0.25, 8, round_limit=0)
    def __init__(self, c):
        super().__init__()
        rd = max(8, int(c * 0.25 + 4) // 8 * 8)
        self.fc1, self.fc2 = nn.Conv2d(c, rd, 1), nn.Conv2d(rd, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Residual(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x + self.m(x)


class RepVGGDW(nn.Module):
    def __init__(self, ed):
        super().__init__()
        self.conv, self.conv1 = ConvBN(ed, ed, 3, 1, 1, groups=ed), ConvBN(ed, ed, 1, 1, 0, groups=ed)

    def forward(self, x):
        return self.conv(x) + self.conv1(x) + x


class RepViTBlock(nn.Module):
    def __init__(self, inp, hidden, oup, k, s, use_se):
        super().__init__()
        if s == 2:
            self.token_mixer = nn.Sequential(ConvBN(inp, inp, k, s, (k - 1) // 2, groups=inp),
                                             SE(inp) if use_se else nn.Identity(),
                                             ConvBN(inp, oup, 1, 1, 0))
            self.channel_mixer = Residual(nn.Sequential(ConvBN(oup, 2 * oup), nn.GELU(),
                                                        ConvBN(2 * oup, oup)))
        else:
            assert inp == oup
            self.token_mixer = nn.Sequential(RepVGGDW(inp), SE(inp) if use_se else nn.Identity())
            self.channel_mixer = Residual(nn.Sequential(ConvBN(inp, hidden), nn.GELU(),
                                                        ConvBN(hidden, oup)))

    def forward(self, x):
        return self.channel_mixer(self.token_mixer(x))


class LayerNorm2d(nn.Module):
    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c)), eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - u) / torch.sqrt(s + self.eps) + self.bias[:, None, None]


class Upsample2x(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


class OpSequential(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x):
        for op in self.op_list:
            x = op(x)
        return x


class OfficialRepViT(nn.Module):
    """EdgeSAM's ``RepViT`` with ``fuse=True`` (names as in the official file)."""

    def __init__(self, cfgs, out=256):
        super().__init__()
        c0 = cfgs[0][2]
        layers = [nn.Sequential(ConvBN(3, c0 // 2, 3, 2, 1), nn.GELU(), ConvBN(c0 // 2, c0, 3, 2, 1))]
        self.stage_idx, prev, inp = [], c0, c0
        for idx, (k, t, c, se, _, s) in enumerate(cfgs):
            if c != prev:
                self.stage_idx.append(idx - 1)
                prev = c
            layers.append(RepViTBlock(inp, inp * t, c, k, s, se))
            inp = c
        self.stage_idx.append(len(cfgs) - 1)
        self.features = nn.ModuleList(layers)
        self.fuse_stage2 = nn.Conv2d(cfgs[self.stage_idx[2]][2], out, 1, bias=False)
        self.fuse_stage3 = OpSequential([nn.Conv2d(cfgs[self.stage_idx[3]][2], out, 1, bias=False),
                                         Upsample2x()])
        self.neck = nn.Sequential(nn.Conv2d(out, out, 1, bias=False), LayerNorm2d(out),
                                  nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

    def forward(self, x):
        stages = {}
        x = self.features[0](x)
        for idx, f in enumerate(self.features[1:]):
            x = f(x)
            if idx in self.stage_idx:
                stages[f"stage{len(stages)}"] = x
        self.stages_ = stages
        return self.neck(self.fuse_stage2(stages["stage2"]) + self.fuse_stage3(stages["stage3"]))


def _official(cfgs, out=256, seed=0) -> OfficialRepViT:
    torch.manual_seed(seed)
    ref = OfficialRepViT(cfgs, out).eval()
    with torch.no_grad():  # non-trivial norms and BatchNorm statistics
        for name, t in ref.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.normal_(0, 0.1)
            elif t.ndim == 1 and t.is_floating_point():  # BN / LayerNorm scales
                t.normal_(1, 0.1)
    return ref


def _sam_heads() -> dict[str, torch.Tensor]:
    """SAM's prompt encoder and mask decoder as EdgeSAM's ``_build_sam`` sizes them."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    torch.manual_seed(1)
    pe = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                       mask_in_chans=16)
    md = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
        depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256,
        iou_head_depth=3, iou_head_hidden_dim=256)
    return {**{f"prompt_encoder.{k}": v for k, v in pe.state_dict().items()},
            **{f"mask_decoder.{k}": v for k, v in md.state_dict().items()}}


def _checkpoint(ref: nn.Module, path, heads: dict | None = None):
    sd = {f"image_encoder.{k}": v for k, v in ref.state_dict().items()}
    torch.save({**sd, **(heads or {})}, path)
    return path


@pytest.fixture(scope="module")
def m1_checkpoint(tmp_path_factory):
    ref = _official(M1_CFGS)
    return ref, _checkpoint(ref, tmp_path_factory.mktemp("edge") / "edge_sam.pth", _sam_heads())


@pytest.mark.parametrize("name", ["edge_sam", "edge_sam_3x"])
def test_official_m1_checkpoint_gives_the_official_embedding(m1_checkpoint, name):
    ref, path = m1_checkpoint
    ours = load_model(name, weights=path, img_size=128, device="cpu")
    assert ours.model_id == f"{name}[img_size=128]@file:edge_sam.pth"
    x_bchw = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = ref(x_bchw)
    got = ours.encode(x_bchw)
    assert got.shape == (2, 256, 8, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the study's conv maps are the official stage outputs and fusion
    maps = ours.forward_layers(x_bchw, ["stages.2.blocks.15", "stages.3.blocks.2", "neck"])
    torch.testing.assert_close(maps["stages.2.blocks.15"], ref.stages_["stage2"], rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(maps["stages.3.blocks.2"], ref.stages_["stage3"], rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(maps["neck"], want, rtol=1e-5, atol=1e-5)


def test_full_m1_has_the_official_parameter_names_and_layers():
    ref = OfficialRepViT(M1_CFGS)
    ours = load_model("edge_sam", untrained=True, device="cpu")
    own = {k: tuple(v.shape) for k, v in ours.module.state_dict().items()}
    assert own == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    layers = ours.layers()
    assert [n for n in layers if n.startswith("stages.")] == (
        [f"stages.0.blocks.{j}" for j in range(3)] + [f"stages.1.blocks.{j}" for j in range(4)]
        + [f"stages.2.blocks.{j}" for j in range(16)] + [f"stages.3.blocks.{j}" for j in range(3)])
    assert layers[-3:] == ["fuse_stage2", "fuse_stage3", "neck"]


def test_tiny_config_follows_the_official_pattern(tmp_path):
    ref = _official(TINY_CFGS, out=16)
    path = _checkpoint(ref, tmp_path / "edge_sam.pth")
    ours = load_model("edge_sam", weights=path, tiny=True, device="cpu")
    x_bchw = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = ref(x_bchw)
    torch.testing.assert_close(ours.encode(x_bchw), want, rtol=1e-5, atol=1e-5)


def test_predictor_loads_encoder_and_heads_from_the_checkpoint(m1_checkpoint):
    from cortexalign.segmentation import load_sam_predictor

    ref, path = m1_checkpoint
    predictor = load_sam_predictor("edge_sam", weights=path, img_size=128, device="cpu")
    sam = predictor.predictor.model
    heads = _sam_heads()
    torch.testing.assert_close(sam.mask_decoder.iou_token.weight,
                               heads["mask_decoder.iou_token.weight"])
    image_hwc = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    predictor.set_image(image_hwc)
    with torch.no_grad():  # EdgeSAM's predictor: longest side to 128, normalise, pad
        resized_hwc = predictor.predictor.transform.apply_image(image_hwc)
        want = ref(sam.preprocess(torch.as_tensor(resized_hwc).permute(2, 0, 1)[None].float()))
    torch.testing.assert_close(predictor.predictor.features, want, rtol=1e-5, atol=1e-5)
    mask_hw = predictor.predict(box=np.array([10, 10, 60, 50]))
    assert mask_hw.shape == (96, 128) and mask_hw.dtype == bool


def test_missing_encoder_key_is_refused_by_name(tmp_path):
    ref = _official(TINY_CFGS, out=16)
    sd = {f"image_encoder.{k}": v for k, v in ref.state_dict().items()}
    sd.pop("image_encoder.features.2.token_mixer.0.conv1.bn.running_var")
    torch.save(sd, tmp_path / "edge_sam.pth")
    with pytest.raises(InputError, match=r"features\.2\.token_mixer\.0\.conv1\.bn\.running_var"):
        load_model("edge_sam", weights=tmp_path / "edge_sam.pth", tiny=True, device="cpu")


def test_img_size_must_be_a_multiple_of_32():
    with pytest.raises(InputError, match="img_size.*multiple of 32"):
        load_model("edge_sam", untrained=True, tiny=True, img_size=80, device="cpu")


def test_fetched_checkpoint_is_the_default_and_the_catalogue_has_the_readme_urls(
        m1_checkpoint, tmp_path, monkeypatch):
    import shutil

    from cortexalign.fetch import WEIGHT_FILES, checkpoint_entry

    readme = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"
    for name, file in (("edge_sam", "edge_sam.pth"), ("edge_sam_3x", "edge_sam_3x.pth")):
        remote = WEIGHT_FILES[checkpoint_entry(name)]
        assert (remote.url, remote.path) == (readme + file, file)
    ref, path = m1_checkpoint
    monkeypatch.setenv("CORTEXALIGN_HOME", str(tmp_path))
    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")
    (tmp_path / "edge-sam").mkdir()
    shutil.copy(path, tmp_path / "edge-sam" / "edge_sam.pth")
    ours = load_model("edge_sam", img_size=128, device="cpu")
    assert ours.model_id == "edge_sam[img_size=128]@fetched:edge_sam.pth"
    x_bchw = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x_bchw), ref(x_bchw), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="cortexalign fetch edge-sam-3x"):
        load_model("edge_sam_3x", device="cpu")  # not fetched: the fix names the entry
