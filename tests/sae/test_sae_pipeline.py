"""SAE-BrainMap end to end on a tiny random ViT with planted voxels; the repo config validates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortexalign.errors import InputError
from cortexalign.features import FeatureCache
from cortexalign.models import load_model
from cortexalign.neural import make_responses
from cortexalign.sae.pipeline import (
    BrainMapConfig,
    layer_tokens_from_model,
    load_brainmap_config,
    run_sae_brainmap,
)
from cortexalign.stimuli import StimulusSet

REPO = Path(__file__).resolve().parents[2]


def test_repo_config_validates():
    cfg = load_brainmap_config(REPO / "configs" / "sae_brainmap.yaml")
    assert cfg.model == "timm:vit_base_patch16_clip_quickgelu_224.openai" and len(cfg.layers) == 12
    sae = cfg.sae_config(768)
    assert (sae.architecture, sae.d_sae, sae.l1_coef, sae.lr) == ("relu_tied", 12288, 0.1, 1e-3)
    assert sae.normalize_inputs and cfg.min_steps == 2000


def test_bad_config_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("layerz: [blocks.0]\n")
    with pytest.raises(InputError, match="layerz"):
        load_brainmap_config(p)
    p.write_text(f"subject_surfaces: {tmp_path}\n")  # not a FreeSurfer subject directory
    with pytest.raises(InputError, match="subject_surfaces.*surf/lh.white"):
        load_brainmap_config(p)


def test_pipeline_end_to_end_recovers_planted_units(tmp_path):
    adapter = load_model("timm:vit_tiny_patch16_224", untrained=True, device="cpu", img_size=32,
                         patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    g = np.random.default_rng(0)
    imgs = g.integers(0, 255, (48, 32, 32, 3), dtype=np.uint8)
    stimuli = StimulusSet.from_arrays(imgs, ids=[f"im{i}" for i in range(48)], name="rand48")
    layers = ["blocks.0", "blocks.1"]
    tokens, n_prefix = layer_tokens_from_model(adapter, stimuli, layers, FeatureCache(tmp_path / "c"))
    assert n_prefix == 1 and tokens["blocks.0"].shape == (48, 17, 32)
    cfg = BrainMapConfig(model="tiny", layers=layers, epochs=10, min_steps=0, images_per_chunk=16,
                         sae={"architecture": "topk", "expansion": 2, "k": 4, "lr": 3e-3,
                              "batch_size": 128},
                         one_to_one=True, n_permutations=19, top_units=3, n_images=5,
                         selectivity_threshold=2, output_dir=str(tmp_path / "out"))
    placeholder = make_responses(g.standard_normal((48, 3)), stimuli.ids, coords={"roi": ["FFA"] * 3})
    first = run_sae_brainmap(tokens, n_prefix, stimuli.ids, placeholder, cfg)
    assert (tmp_path / "out" / "saes" / "blocks.1" / "sae.safetensors").is_file()
    # voxels = noisy, rescaled copies of chosen units (of units that vary over images)
    var = {k: np.flatnonzero(first.units[k].std(0) > 1e-3) for k in layers}
    chosen = [("blocks.0", var["blocks.0"][0]), ("blocks.1", var["blocks.1"][1]),
              ("blocks.1", var["blocks.1"][-1]), ("blocks.0", var["blocks.0"][-1])]
    vox = np.stack([3 * first.units[lay][:, j] / first.units[lay][:, j].std() + 1
                    + 0.05 * g.standard_normal(48) for lay, j in chosen], 1)
    order = g.permutation(48)  # voxels listed in another stimulus order: aligned by id
    voxels = make_responses(vox[order], [stimuli.ids[i] for i in order],
                            coords={"roi": ["FFA", "FFA", "V1", "V1"]})
    labels = np.where(np.arange(48) < 24, "faces", "places")
    res = run_sae_brainmap(tokens, n_prefix, stimuli.ids, voxels, cfg, labels=labels)  # loads SAEs
    for k in layers:
        np.testing.assert_allclose(res.units[k][0], first.units[k][order[0]], rtol=1e-5, atol=1e-6)
    assert res.dictionary.layer_names() == [lay for lay, _ in chosen]
    assert res.dictionary.unit_n.tolist() == [int(j) for _, j in chosen]
    assert (res.dictionary.r_n > 0.99).all() and (res.permutation.p_n <= 0.05).all()
    assert res.one_to_one.unit_n.tolist() == [int(j) for _, j in chosen]
    assert res.best_layer_n.tolist() == [0, 1, 1, 0]
    assert set(res.consistency.roi) == {"FFA", "V1"} and set(res.roi_rsa) == set()
    assert all(0 <= m.dead_fraction <= 1 and m.l0 <= 4 for m in res.sae_metrics.values())
    table = (tmp_path / "out" / "dictionary.csv").read_text().splitlines()
    assert table[0] == "voxel,layer,unit,r,best_layer,p,p_fwe" and len(table) == 5
    with pytest.raises(InputError, match="expansion: requested 4"):
        run_sae_brainmap(tokens, n_prefix, stimuli.ids, voxels,
                         cfg.model_copy(update={"sae": {**cfg.sae, "expansion": 4}}))


def test_few_images_are_repeated_until_min_steps(tmp_path):
    import json

    from cortexalign.neural import make_responses

    g = np.random.default_rng(0)
    tokens = {"b": g.standard_normal((48, 17, 8)).astype(np.float32)}  # 48 x 16 patch tokens
    ids = [f"im{i}" for i in range(48)]
    vox = make_responses(g.standard_normal((48, 3)), ids, coords={"roi": ["FFA"] * 3})
    cfg = BrainMapConfig(model="tiny", layers=["b"], epochs=1, min_steps=20, images_per_chunk=16,
                         sae={"expansion": 2, "batch_size": 128}, surface_maps=False,
                         output_dir=str(tmp_path))
    run_sae_brainmap(tokens, 1, ids, vox, cfg)
    # 768 tokens an epoch are 6 steps of 128: ceil(20 * 128 / 768) = 4 epochs, 24 steps
    assert json.loads((tmp_path / "saes/b/config.json").read_text())["n_steps"] == 24
