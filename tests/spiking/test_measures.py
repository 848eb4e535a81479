"""Feature extraction, energy accounting and mutual information."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.spiking.energy import E_AC_PJ, E_MAC_PJ, firing_rates, measure_energy
from cortexalign.spiking.features import (
    attention_names,
    extract_attention_maps,
    extract_features,
    layer_names,
)
from cortexalign.spiking.information import MI_ESTIMATORS, mi_binned, mi_gaussian, time_step_mi
from cortexalign.spiking.models import SNN_MODELS, create_snn
from cortexalign.spiking.neurons import MultiStepLIF

TINY = [n for n in SNN_MODELS if n.endswith("_tiny")]


@pytest.mark.parametrize("name", TINY)
def test_features_shapes_and_time_mean(name):
    torch.manual_seed(0)
    m = create_snn(name, time_steps=2)
    x = torch.randn(2, 3, 16, 16) * 2
    names = layer_names(m)
    assert names[0] == "stage1.embed" and "stage3" in names
    f = extract_features(m, x, names)
    per_t = extract_features(m, x, names, time_reduce="none")
    assert f["stage1.embed"].shape == (2, 8, 16, 16)
    assert f["stage3.block0"].shape == (2, 16, 32)  # (B, N, D): 4 x 4 tokens
    assert f["stage3"].shape == (2, 16, 32)
    for n in names:
        assert per_t[n].shape == (2, *f[n].shape)
        torch.testing.assert_close(per_t[n].mean(0), f[n])
    with pytest.raises(UnknownNameError, match="stage2.block0"):
        extract_features(m, x, ["stage2.blok0"])
    assert all(not mod._forward_hooks for mod in m.modules())


@pytest.mark.parametrize("name", TINY)
def test_attention_maps(name):
    torch.manual_seed(0)
    m = create_snn(name)
    maps = extract_attention_maps(m, torch.randn(2, 3, 16, 16))
    assert list(maps) == attention_names(m)
    assert maps["stage1.block0.attn"].shape == (2, 2, 256)  # (B, h, N) token map
    assert maps["stage3.block0.attn"].shape == (2, 2, 16, 16)  # (B, h, N, N)
    assert all(((v >= 0) & torch.isfinite(v)).all() for v in maps.values())
    assert all(not mod._forward_hooks for mod in m.modules())


def test_energy_hand_count():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), MultiStepLIF(), nn.Linear(3, 2))
    x = torch.randn(2, 5, 4) * 3  # (T=2, B=5, 4)
    with torch.no_grad():
        spikes = MultiStepLIF()(net[0](x))
    n_spikes = int(spikes.sum())
    assert 0 < n_spikes < spikes.numel()
    rep = measure_energy(net, x, n_samples=5)
    assert rep.layers[0].macs == 2 * 5 * 3 * 4 and rep.layers[0].sops == 0  # real input: MACs
    assert rep.layers[1].macs == 0 and rep.layers[1].sops == pytest.approx(n_spikes * 2)  # 2 targets
    assert rep.macs == pytest.approx(24.0) and rep.sops == pytest.approx(n_spikes * 2 / 5)
    assert rep.energy_pj == pytest.approx(24.0 * E_MAC_PJ + n_spikes * 2 / 5 * E_AC_PJ)
    assert rep.firing_rates["1"] == pytest.approx(n_spikes / spikes.numel())
    with pytest.raises(InputError, match="n_samples"):
        measure_energy(net, x)


def test_energy_conv_counts_and_model():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0, 2, 2] = 1.0
    rep = measure_energy(conv, x, n_samples=1)
    assert rep.layers[0].dense_macs == 4 * 25 * 2 * 9
    assert rep.sops == pytest.approx(4 * 25 * 2 * 9 / 50)  # one spike in 50 inputs
    torch.manual_seed(0)
    m = create_snn("hst_tiny")
    rep = measure_energy(m, torch.randn(2, 3, 16, 16))
    assert rep.layers[0].name == "stage1.embed.conv1.conv" and not rep.layers[0].spiking_input
    assert rep.sops > 0 and rep.macs > 0 and rep.energy_mj > 0
    fr = firing_rates(m, torch.randn(2, 3, 16, 16))
    assert fr and all(0 <= v <= 1 for v in fr.values())


def test_gaussian_mi_closed_form():
    rng = np.random.default_rng(0)
    for rho in (0.0, 0.5, 0.9):
        z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=20000)
        assert mi_gaussian(z[:, :1], z[:, 1:]) == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=0.01)


def test_binned_mi_matches_sklearn():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, size=(500, 4))
    b = (a + rng.integers(0, 2, size=a.shape)) % 4
    ref = np.mean([mutual_info_score(a[:, u], b[:, u]) for u in range(4)])
    assert mi_binned(a, b) == pytest.approx(ref, abs=1e-12)
    # identity gives the entropy, independence about zero
    h = mutual_info_score(a[:, 0], a[:, 0])
    assert mi_binned(a[:, :1], a[:, :1]) == pytest.approx(h)
    assert mi_binned(rng.integers(0, 2, (5000, 1)), rng.integers(0, 2, (5000, 1))) < 0.005


def test_time_step_mi_matrix():
    rng = np.random.default_rng(2)
    base = rng.random((3, 200, 6)) < 0.3
    feats = np.stack([base[0], base[0], base[1]]).astype(float)
    for est in MI_ESTIMATORS:
        mi = time_step_mi(feats, est)
        assert mi.shape == (3, 3) and np.allclose(mi, mi.T)
        assert mi[0, 1] > 5 * mi[0, 2]
    with pytest.raises(InputError, match="time_reduce"):
        time_step_mi(np.zeros((3, 4)))
    with pytest.raises(UnknownNameError):
        time_step_mi(feats, "kraskov")
    with pytest.raises(InputError, match="finite"):
        mi_gaussian(np.full((5, 1), np.nan), np.zeros((5, 1)))
