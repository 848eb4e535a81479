"""The full SAM path (our encoder inside segment-anything's SamPredictor) on a tiny random SAM."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from cortexalign.models import load_model
from cortexalign.models.sam import SAM_CONFIGS
from cortexalign.segmentation import (
    PREDICTORS,
    SAM_BUILDERS,
    SamMaskPredictor,
    SegmentationSample,
    build_sam,
    evaluate_segmentation,
    sam_predictor,
)

segment_anything = pytest.importorskip("segment_anything", reason="segment-anything not installed")



def official_tiny_sam() -> nn.Module:
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    t = SAM_CONFIGS["sam_vit_b"].tiny
    dim = t["neck_chans"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=64, patch_size=16, embed_dim=t["embed_dim"], depth=t["depth"],
            num_heads=t["num_heads"], out_chans=dim, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            global_attn_indexes=t["global_attn_indexes"], window_size=t["window_size"]),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(4, 4),
                                     input_image_size=(64, 64), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=1, embedding_dim=dim, mlp_dim=2 * dim, num_heads=2), transformer_dim=dim,
            iou_head_depth=1, iou_head_hidden_dim=dim))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sam.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return sam.eval()


def _sample() -> SegmentationSample:
    img = np.zeros((48, 80, 3), np.uint8)
    mask = np.zeros((48, 80), bool)
    mask[10:30, 20:60] = True
    img[mask] = 200
    return SegmentationSample("a", img, mask[None], (1,))


#: one registry entry per family of SAM_BUILDERS
FAMILY_ENTRIES = {"sam": "sam_vit_b", "mobile_sam": "mobile_sam",
                  "efficient_sam": "efficient_sam_vit_t", "edge_sam": "edge_sam",
                  "sam2": "sam2_hiera_t"}


def test_every_family_has_a_builder_and_a_predictor():
    assert set(FAMILY_ENTRIES) == set(SAM_BUILDERS) == set(PREDICTORS)
    assert {c.family for c in SAM_CONFIGS.values()} == set(SAM_BUILDERS)


@pytest.mark.parametrize("family", sorted(FAMILY_ENTRIES))
@pytest.mark.parametrize("prompt", ["point", "box"])
def test_sam_predictor_runs_end_to_end(family, prompt):
    adapter = load_model(FAMILY_ENTRIES[family], untrained=True, tiny=True, device="cpu")
    predictor = sam_predictor(adapter)
    assert isinstance(predictor, PREDICTORS[family])
    sample = _sample()
    predictor.set_image(sample.image_hwc)
    kwargs = {"point": np.array([40.0, 20.0])} if prompt == "point" else {
        "box": np.array([20.0, 10.0, 60.0, 30.0])}
    mask = predictor.predict(**kwargs)
    assert mask.shape == (48, 80) and mask.dtype == bool
    result = evaluate_segmentation([sample], predictor, prompt)
    assert result.n_instances == 1 and 0.0 <= result.miou <= 1.0


@pytest.mark.parametrize("prompt", [dict(point=np.array([40.0, 20.0])),
                                    dict(box=np.array([20.0, 10.0, 60.0, 30.0]))])
def test_converted_sam_predicts_like_the_official_model(tmp_path, prompt):
    """Same weights, same prompt: our encoder + the checkpoint's decoder == official Sam."""
    from segment_anything import SamPredictor

    official = official_tiny_sam()
    torch.save(official.state_dict(), tmp_path / "sam_tiny.pth")
    adapter = load_model("sam_vit_b", weights=tmp_path / "sam_tiny.pth", tiny=True, device="cpu")
    ours = SamMaskPredictor(build_sam(adapter, checkpoint=tmp_path / "sam_tiny.pth"))
    ref = SamPredictor(official)
    img = _sample().image_hwc
    ours.set_image(img)
    ref.set_image(img)
    logits_khw, iou_k = ours.predict_logits(**prompt)
    kwargs = dict(point_coords=prompt["point"][None], point_labels=np.array([1]),
                  multimask_output=True) if "point" in prompt else dict(
        box=prompt["box"], multimask_output=False)
    want_khw, want_iou_k, _ = ref.predict(return_logits=True, **kwargs)
    # the tiny random SAM's logits vary little (std ~1e-3), so the tolerance is mostly relative
    assert logits_khw.shape == want_khw.shape and want_khw.std() > 1e-4
    np.testing.assert_allclose(logits_khw, want_khw, rtol=1e-4, atol=1e-6)  # mask logits
    np.testing.assert_allclose(iou_k, want_iou_k, rtol=1e-4, atol=1e-6)  # IoU scores
