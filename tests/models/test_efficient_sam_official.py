"""EfficientSAM's converter against the official encoder architecture.

The reference below is written from EfficientSAM's ``efficient_sam/efficient_sam_encoder.py``
(yformer/EfficientSAM, read at commit 0a99594): a plain ViT (pre-norm blocks, LayerNorm eps 1e-6,
fused qkv with bias, GELU MLP), patch embedding by a strided conv, an absolute position embedding
trained at 224 px with a CLS slot that is resized bicubically (``align_corners=False``) to the
token grid at every call, and a neck of conv1x1 - LayerNorm2d - conv3x3 - LayerNorm2d, both convs
without bias. Parameter names follow that file, so its state dict is an official checkpoint's
``image_encoder.*`` layout. Random weights; the outputs must agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cortexalign.models import load_model


class _Norm2d(nn.Module):  # LayerNorm over channels of an NCHW map
    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c)), eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = ((x - mu) ** 2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mu) / torch.sqrt(var + self.eps) + self.bias[:, None, None]


class _Attn(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, d))


class _Mlp(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d, eps=1e-6), _Attn(d, heads)
        self.norm2, self.mlp = nn.LayerNorm(d, eps=1e-6), _Mlp(d, int(d * ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, d: int):
        super().__init__()
        self.proj = nn.Conv2d(3, d, patch, stride=patch)

    def forward(self, x):
        return self.proj(x)


class OfficialEncoder(nn.Module):
    """EfficientSAM's ``ImageEncoderViT`` (names as in the official file)."""

    def __init__(self, img_size=64, patch=16, d=32, depth=2, heads=2, ratio=4.0, neck=16):
        super().__init__()
        self.patch_embed = _PatchEmbed(patch, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, (224 // patch) ** 2 + 1, d))
        self.blocks = nn.ModuleList(_Block(d, heads, ratio) for _ in range(depth))
        self.neck = nn.Sequential(nn.Conv2d(d, neck, 1, bias=False), _Norm2d(neck),
                                  nn.Conv2d(neck, neck, 3, padding=1, bias=False), _Norm2d(neck))

    def forward(self, x):
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (b, g, g, d)
        g, side = x.shape[1], int(math.isqrt(self.pos_embed.shape[1] - 1))
        pos = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        x = x + F.interpolate(pos, size=(g, g), mode="bicubic", align_corners=False).permute(
            0, 2, 3, 1)
        x = x.reshape(x.shape[0], g * g, -1)
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.reshape(x.shape[0], g, g, -1).permute(0, 3, 1, 2))


def test_official_layout_gives_the_official_outputs(tmp_path):
    torch.manual_seed(0)
    ref = OfficialEncoder().eval()
    with torch.no_grad():  # non-trivial norms and position embedding
        for name, p in ref.named_parameters():
            p.add_(0.1 * torch.randn_like(p)) if ("norm" in name or name.startswith("neck")) \
                else None
        ref.pos_embed.normal_()
    ckpt = {"model": {f"image_encoder.{k}": v for k, v in ref.state_dict().items()}}
    ckpt["model"]["mask_decoder.iou_token.weight"] = torch.zeros(1, 16)  # the rest of the model
    torch.save(ckpt, tmp_path / "efficient_sam_vitt.pt")
    ours = load_model("efficient_sam_vit_t", weights=tmp_path / "efficient_sam_vitt.pt",
                      tiny=True, device="cpu")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(x)
    torch.testing.assert_close(ours.encode(x), want, rtol=1e-5, atol=1e-5)
