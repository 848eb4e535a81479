"""The full SAM 2 path: our Hiera trunk + sam2's neck and heads from an official-format checkpoint,
against sam2's own SAM2ImagePredictor on a tiny SAM2Base built from sam2's modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models import load_model
from cortexalign.models.sam import SAM_CONFIGS
from cortexalign.segmentation import (
    SAM2_IMAGE_OPTIONS,
    Sam2MaskPredictor,
    SegmentationSample,
    build_sam,
    evaluate_segmentation,
    load_sam_predictor,
)

sam2 = pytest.importorskip("sam2", reason="sam2 not installed")

D_MODEL = 32  # tiny neck and heads (SAM2Base fixes 8 heads, 2 layers, mlp 2048 around it)
POSTPROCESSING = dict(dynamic_multimask_via_stability=True, dynamic_multimask_stability_delta=0.05,
                      dynamic_multimask_stability_thresh=0.98)  # sam2.build_sam's default overrides


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module.eval()


def official_tiny_sam2() -> nn.Module:
    """sam2's SAM2Base with every part of configs/sam2.1/sam2.1_hiera_t.yaml, at tiny dims."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base

    t, mem = SAM_CONFIGS["sam2_hiera_t"].tiny, 16
    trunk = Hiera(embed_dim=t["embed_dim"], num_heads=t["num_heads"], stages=t["stages"],
                  global_att_blocks=t["global_att_blocks"], window_spec=t["window_spec"],
                  window_pos_embed_bkg_spatial_size=t["global_pos_size"])
    neck = FpnNeck(PositionEmbeddingSine(num_pos_feats=D_MODEL, normalize=True, scale=None,
                                         temperature=10000),
                   d_model=D_MODEL, backbone_channel_list=trunk.channel_list,
                   fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
    rope = dict(rope_theta=10000.0, feat_sizes=[4, 4], embedding_dim=D_MODEL, num_heads=1,
                downsample_rate=1, dropout=0.1)
    memory_attention = MemoryAttention(d_model=D_MODEL, pos_enc_at_input=True, num_layers=1,
                                       layer=MemoryAttentionLayer(
        activation="relu", dim_feedforward=64, dropout=0.1, pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False, d_model=D_MODEL,
        self_attention=RoPEAttention(**rope),
        cross_attention=RoPEAttention(rope_k_repeat=True, kv_in_dim=mem, **rope)))
    memory_encoder = MemoryEncoder(
        out_dim=mem, in_dim=D_MODEL,
        position_encoding=PositionEmbeddingSine(num_pos_feats=mem, normalize=True, scale=None,
                                                temperature=10000),
        mask_downsampler=MaskDownSampler(embed_dim=D_MODEL, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=D_MODEL, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                            use_dwconv=True), num_layers=1))
    model = SAM2Base(
        ImageEncoder(trunk=trunk, neck=neck, scalp=1), memory_attention, memory_encoder,
        num_maskmem=7, image_size=t["img_size"], sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0, use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True, no_obj_embed_spatial=True,
        use_high_res_features_in_sam=True, multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True,
        use_signed_tpos_enc_to_obj_ptrs=True, only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0, multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True,
        sam_mask_decoder_extra_args=POSTPROCESSING)
    return _randomise(model, seed=2)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    model = official_tiny_sam2()
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)  # the official format
    return model, path


def shapes() -> SegmentationSample:
    """A 48 x 80 image (not square: SAM 2 stretches it) with a rectangle and a disk."""
    h, w = 48, 80
    rect = np.zeros((h, w), bool)
    rect[8:28, 6:46] = True
    yy, xx = np.mgrid[:h, :w]
    disk = ((yy - 32) ** 2 + (xx - 62) ** 2 <= 10 ** 2) & ~rect
    img = np.full((h, w, 3), 30, np.uint8)
    img[rect] = (220, 20, 20)
    img[disk] = (20, 20, 220)
    return SegmentationSample("shapes", img, np.stack([rect, disk]), (1, 2))


def _reference(model: nn.Module):
    """sam2's own predictor; its feature sizes are fixed for 1024 px, so set them for 64 px."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ref = SAM2ImagePredictor(model)
    ref._bb_feat_sizes = [(16, 16), (8, 8), (4, 4)]
    return ref


@pytest.mark.parametrize("prompt", [dict(point=np.array([25.0, 17.0])),
                                    dict(box=np.array([6.0, 8.0, 46.0, 28.0])),
                                    dict(point=np.array([62.0, 32.0]))])
def test_converted_sam2_predicts_like_official_sam2(official, prompt):
    model, path = official
    ours = load_sam_predictor("sam2_hiera_t", weights=path, tiny=True, device="cpu")
    assert isinstance(ours, Sam2MaskPredictor)
    ref = _reference(model)
    img = shapes().image_hwc
    ours.set_image(img)
    ref.set_image(img)
    logits_khw, iou_k = ours.predict_logits(**prompt)
    if "point" in prompt:
        kwargs = dict(point_coords=prompt["point"][None], point_labels=np.array([1]),
                      multimask_output=True)
    else:
        kwargs = dict(box=prompt["box"], multimask_output=False)
    want_khw, want_iou_k, _ = ref.predict(return_logits=True, **kwargs)
    assert logits_khw.shape == want_khw.shape == (3 if "point" in prompt else 1, 48, 80)
    assert want_khw.std() > 0.1  # a non-degenerate map, so equality means something
    np.testing.assert_allclose(logits_khw, want_khw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(iou_k, want_iou_k, rtol=1e-4, atol=1e-4)
    mask_hw = ours.predict(**prompt)
    np.testing.assert_array_equal(mask_hw, want_khw[int(np.argmax(want_iou_k))] > 0)


def test_image_options_match_every_sam2_config():
    """SAM2_IMAGE_OPTIONS (and the neck we build) are those of all eight official configs."""
    from pathlib import Path

    from omegaconf import OmegaConf

    root = Path(sam2.__file__).parent / "configs"
    configs = sorted([*root.glob("sam2/*.yaml"), *root.glob("sam2.1/*.yaml")])
    assert len(configs) == 8
    for config in configs:
        m = OmegaConf.load(config).model
        for key, value in SAM2_IMAGE_OPTIONS.items():
            if key in m:
                assert m[key] == value, (config.name, key)
        neck = m.image_encoder.neck
        assert (m.image_encoder.scalp, neck.d_model, list(neck.fpn_top_down_levels),
                neck.fpn_interp_model, m.image_size) == (1, 256, [2, 3], "nearest", 1024)


@pytest.mark.parametrize("prompt", ["point", "box"])
def test_sam2_evaluation_end_to_end(official, prompt):
    _, path = official
    predictor = load_sam_predictor("sam2_hiera_t", weights=path, tiny=True, device="cpu")
    sample = shapes()
    predictor.set_image(sample.image_hwc)
    mask_hw = predictor.predict(**({"point": np.array([25.0, 17.0])} if prompt == "point"
                                   else {"box": np.array([6.0, 8.0, 46.0, 28.0])}))
    assert mask_hw.shape == (48, 80) and mask_hw.dtype == bool
    result = evaluate_segmentation([sample, sample], predictor, prompt)
    assert result.n_instances == 4 and result.n_images == 2
    assert np.isfinite(result.miou) and 0.0 <= result.miou <= 1.0
    np.testing.assert_array_equal(result.ious[:2], result.ious[2:])  # deterministic


def test_untrained_sam2_builds_with_default_width():
    adapter = load_model("sam2_hiera_t", untrained=True, tiny=True, device="cpu")
    model = build_sam(adapter)
    assert model.image_encoder.neck.d_model == 256 and model.image_size == 64
    assert model.image_encoder.trunk.hiera is adapter.module  # shared, not copied


def _write(tmp_path, name, sd):
    path = tmp_path / name
    torch.save({"model": sd}, path)
    return path


def test_mismatched_checkpoint_keys_are_named(official, tmp_path):
    model, _ = official
    sd = dict(model.state_dict())
    sd.pop("sam_mask_decoder.iou_token.weight")
    sd["sam_mask_decoder.extra.weight"] = torch.zeros(1)
    path = _write(tmp_path, "broken.pt", sd)
    adapter = load_model("sam2_hiera_t", weights=path, tiny=True, device="cpu")  # trunk is fine
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=r"iou_token\.weight.*sam_mask_decoder\.extra\.weight"):
        build_sam(adapter, checkpoint=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_checkpoint_of_another_trunk_size_is_refused(official):
    _, path = official
    adapter = load_model("sam2_hiera_t", untrained=True, tiny=True, embed_dim=8, device="cpu")
    with pytest.raises(InputError, match=r"image_encoder\.neck\.convs\.0\.conv\.weight.*shape"):
        build_sam(adapter, checkpoint=path)


def test_sam2_checkpoint_given_to_a_sam_vit_entry_is_refused(official):
    _, path = official
    with pytest.raises(InputError, match="SAM 2 checkpoint.*sam2_hiera"):
        load_model("sam_vit_b", weights=path, tiny=True, device="cpu")
    with pytest.raises(InputError, match="SAM 2 checkpoint.*sam2_hiera"):
        load_sam_predictor("sam_vit_b", weights=path, tiny=True, device="cpu")
    vit = load_model("sam_vit_b", untrained=True, tiny=True, device="cpu")
    with pytest.raises(InputError, match="SAM 2 checkpoint"):
        build_sam(vit, checkpoint=path)


def test_sam_checkpoint_given_to_sam2_is_refused(tmp_path):
    sd = {"prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 16),
          "mask_decoder.iou_token.weight": torch.zeros(1, 16)}
    path = _write(tmp_path, "sam_vit.pth", sd)
    adapter = load_model("sam2_hiera_t", untrained=True, tiny=True, device="cpu")
    with pytest.raises(InputError, match="segment-anything-style"):
        build_sam(adapter, checkpoint=path)


def test_bad_images_and_prompts_are_refused(official):
    _, path = official
    predictor = load_sam_predictor("sam2_hiera_t", weights=path, tiny=True, device="cpu")
    with pytest.raises(InputError, match="set_image"):
        predictor.predict(point=np.array([1.0, 1.0]))
    with pytest.raises(InputError, match="image"):
        predictor.set_image(np.zeros((20, 20, 2), np.uint8))
    predictor.set_image(np.zeros((20, 30), np.uint8))  # grayscale is repeated to RGB
    with pytest.raises(InputError, match="exactly one prompt"):
        predictor.predict()
    with pytest.raises(InputError, match="exactly one prompt"):
        predictor.predict(point=np.array([1.0, 1.0]), box=np.array([0.0, 0.0, 5.0, 5.0]))
    with pytest.raises(InputError, match="point"):
        predictor.predict(point=np.array([40.0, 5.0]))  # off the 30-px-wide image
    with pytest.raises(InputError, match="x0 < x1"):
        predictor.predict(box=np.array([5.0, 0.0, 5.0, 5.0]))
    assert predictor.predict(box=np.array([0.0, 0.0, 5.0, 5.0])).shape == (20, 30)


def test_non_sam_adapter_is_refused():
    adapter = load_model("timm:resnet18", untrained=True, device="cpu")
    with pytest.raises(InputError, match="Segment Anything family"):
        build_sam(adapter)
