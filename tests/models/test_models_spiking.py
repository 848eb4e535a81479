"""Spiking transformers through the model registry: time-averaged layer outputs, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError
from cortexalign.models import load_model
from cortexalign.spiking import create_snn
from cortexalign.spiking._checkpoint import save_checkpoint
from cortexalign.spiking.features import extract_features


def test_layers_are_time_averaged_spiking_outputs():
    adapter = load_model("snn:hst_tiny", untrained=True, seed=3, img_size=16, device="cpu")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16) * 3
    got = adapter.forward_layers(x, ["stage1.embed", "stage3"])
    ref_model = create_snn("hst_tiny")
    ref_model.load_state_dict(adapter.module.state_dict())
    ref_model.eval()
    ref = extract_features(ref_model, x, ["stage1.embed", "stage3"], time_reduce="mean")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name])
    # firing rates averaged over T time steps: multiples of 1/T in [0, 1]
    T = adapter.module.config.time_steps
    rates = got["stage1.embed"].numpy() * T
    np.testing.assert_allclose(rates, np.round(rates), atol=1e-5)
    assert got["stage1.embed"].min() >= 0 and got["stage1.embed"].max() <= 1


def test_repeated_calls_do_not_leak_membrane_state():
    adapter = load_model("snn:tdformer_tiny", untrained=True, img_size=16, device="cpu")
    x = torch.randn(2, 3, 16, 16) * 3
    a = adapter.forward_layers(x, ["stage2"])["stage2"]
    b = adapter.forward_layers(x, ["stage2"])["stage2"]
    torch.testing.assert_close(a, b)


def test_checkpoint_round_trip_and_missing_weights(tmp_path):
    torch.manual_seed(5)
    model = create_snn("spiliformer_tiny")
    path = save_checkpoint(tmp_path, 1, model, None, {})
    adapter = load_model("snn:spiliformer_tiny", weights=path, img_size=16, device="cpu")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(adapter.module.state_dict()[k], v)
    other = save_checkpoint(tmp_path / "other", 1, create_snn("hst_tiny"), None, {})
    with pytest.raises(InputError, match="checkpoint"):
        load_model("snn:spiliformer_tiny", weights=other, img_size=16)
    with pytest.raises(InputError, match="train-snn"):
        load_model("snn:spiliformer_tiny")
