"""An official segment-anything checkpoint loads at another input size: the position embedding
is resized as timm resizes it and the relative-position tables as segment-anything's
``get_rel_pos`` does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed_nhwc

from cortexalign.models import load_model


def test_checkpoint_at_another_size(tmp_path):
    small = load_model("sam_vit_b", untrained=True, tiny=True, img_size=64, seed=1)
    sd = {f"image_encoder.{k.replace('.mlp.fc', '.mlp.lin')}": v
          for k, v in small.module.state_dict().items()}
    torch.save(sd, tmp_path / "sam_vit_b_01ec64.pth")
    big = load_model("sam_vit_b", weights=tmp_path / "sam_vit_b_01ec64.pth", tiny=True,
                     img_size=128)
    got = big.module.state_dict()
    src = small.module.state_dict()
    torch.testing.assert_close(got["pos_embed"], resample_abs_pos_embed_nhwc(src["pos_embed"],
                                                                             [8, 8]))
    rel = [k for k in src if k.endswith("rel_pos_h")]
    resized = [k for k in rel if got[k].shape != src[k].shape]
    assert resized  # the tiny config has a global block
    for k in rel:
        if got[k].shape != src[k].shape:  # global blocks: their table spans the token grid
            want = F.interpolate(src[k].T[None], size=got[k].shape[0], mode="linear")[0].T
            torch.testing.assert_close(got[k], want)
    x = torch.randn(1, 3, 128, 128)
    assert big.encode(x).shape[-2:] == (8, 8)
