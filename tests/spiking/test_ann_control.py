"""The ANN control trained by the spiking recipe: ``train_snn`` with ``model: timm:<arch>``, and
its checkpoint scored through the model registry (``load_model('timm:...', weights=...)``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError
from cortexalign.models import load_model
from cortexalign.spiking import TrainConfig, build_classifier, load_weights, to_input, train_snn

VIT = "timm:vit_tiny_patch16_224"
VIT_OPTIONS = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2}


@pytest.fixture
def npz(toy_npz):
    return toy_npz(32)


def test_ann_trains_by_the_recipe_and_loads_through_the_registry(npz, tmp_path):
    cfg = TrainConfig(data=npz, checkpoint_dir=tmp_path / "ann", model=VIT,
                      model_options=VIT_OPTIONS, batch_size=8, epochs=3, lr=3e-3,
                      progress=False)
    result = train_snn(cfg)
    assert result.steps == 12 and result.stopped_at_step is None
    assert result.epochs[-1]["train_loss"] < result.epochs[0]["train_loss"]
    meta = json.loads(result.last_checkpoint.with_suffix(".json").read_text())
    assert meta["model_name"] == VIT and "architecture" not in meta

    mine = build_classifier(VIT, 2, 3, VIT_OPTIONS)
    load_weights(mine, result.last_checkpoint)
    adapter = load_model(VIT, weights=str(result.last_checkpoint), device="cpu",
                         num_classes=2, **VIT_OPTIONS)
    x = to_input(torch.from_numpy(np.load(npz)["test_images"]))
    with torch.no_grad():
        torch.testing.assert_close(adapter.module.eval()(x), mine.eval()(x))
    untouched = build_classifier(VIT, 2, 3, VIT_OPTIONS)
    assert not torch.allclose(untouched.eval()(x), mine(x))  # the weights did load


def test_ann_options_are_checked(npz, tmp_path):
    with pytest.raises(ValueError, match="vit_tiny_patch16_224"):
        TrainConfig(data=npz, checkpoint_dir=tmp_path, model="timm:vit_tiny_patch16_22")
    with pytest.raises(InputError, match="time_steps"):
        train_snn(TrainConfig(data=npz, checkpoint_dir=tmp_path / "t", model=VIT,
                              model_options=VIT_OPTIONS, time_steps=4, progress=False))
    with pytest.raises(InputError, match="model_options"):
        build_classifier(VIT, 2, 3, {"no_such_option": 1})
