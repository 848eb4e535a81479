"""Gabor V1 bank: filters against the explicit formula, tuning and phase invariance on gratings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError
from cortexalign.models import GaborConfig, GaborV1, load_model

SIDE = 64
CONFIG = GaborConfig(image_size=SIDE, image_deg=None, frequencies=(0.0625, 0.125, 0.25),
                     n_orientations=8)


def _explicit_kernel(f, theta, phi, sigma, gamma, half):
    """The Gabor formula evaluated pixel by pixel, then DC-removed and L2-normalised."""
    k = np.zeros((2 * half + 1, 2 * half + 1))
    for row in range(2 * half + 1):
        for col in range(2 * half + 1):
            x, y = col - half, row - half
            xr = x * math.cos(theta) + y * math.sin(theta)
            yr = -x * math.sin(theta) + y * math.cos(theta)
            k[row, col] = (math.exp(-(xr**2 + gamma**2 * yr**2) / (2 * sigma**2))
                           * math.cos(2 * math.pi * f * xr + phi))
    k -= k.mean()
    return k / np.linalg.norm(k)


def _grating(f, theta, psi, side=SIDE):
    """(1, 3, side, side) grating cos(2 pi f (x cos theta + y sin theta) + psi) in [-1, 1]."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    g = np.cos(2 * np.pi * f * (x * np.cos(theta) + y * np.sin(theta)) + psi)
    return torch.from_numpy(g).float().expand(1, 3, side, side).contiguous()


def test_filters_match_the_explicit_formula():
    model = GaborV1(CONFIG)
    for bank, f in zip(model.banks, CONFIG.frequencies_cpp(), strict=True):
        sigma = CONFIG.sigma(f)
        half = (bank.weight.shape[-1] - 1) // 2
        assert half == math.ceil(3 * sigma)
        for o, theta in enumerate(CONFIG.orientations()):
            for p, phi in enumerate((0.0, -math.pi / 2)):
                ref = _explicit_kernel(f, theta, phi, sigma, CONFIG.aspect_ratio, half)
                np.testing.assert_allclose(bank.weight[2 * o + p, 0].numpy(), ref, atol=1e-6)


def test_sigma_gives_the_requested_bandwidth():
    """Half-amplitude points of the envelope's Fourier transform sit one octave apart (b = 1)."""
    f = 0.1
    sigma = CONFIG.sigma(f)
    # along the carrier the spectrum is a Gaussian of std 1 / (2 pi sigma) centred on f
    half_width = math.sqrt(2 * math.log(2)) / (2 * math.pi * sigma)
    assert (f + half_width) / (f - half_width) == pytest.approx(2.0)


@pytest.mark.parametrize("fi", [0, 1, 2])
@pytest.mark.parametrize("oi", [0, 3, 5])
def test_grating_drives_the_matching_filter_most(fi, oi):
    model = load_model("gabor_v1", **vars(CONFIG))
    f, theta = CONFIG.frequencies_cpp()[fi], CONFIG.orientations()[oi]
    complex_bchw = model.forward_layers(_grating(f, theta, 0.3), ["complex"])["complex"]
    centre_c = complex_bchw[0, :, SIDE // 2 - 4:SIDE // 2 + 4, SIDE // 2 - 4:SIDE // 2 + 4].mean((1, 2))
    assert int(centre_c.argmax()) == fi * CONFIG.n_orientations + oi


def test_complex_cells_are_phase_invariant_simple_cells_are_not():
    model = load_model("gabor_v1", **vars(CONFIG))
    f, theta = CONFIG.frequencies_cpp()[1], CONFIG.orientations()[2]
    channel = 1 * CONFIG.n_orientations + 2
    complex_vals, simple_vals = [], []
    for psi in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        out = model.forward_layers(_grating(f, theta, psi), ["simple", "complex"])
        complex_vals.append(float(out["complex"][0, channel, SIDE // 2, SIDE // 2]))
        simple_vals.append(float(out["simple"][0, 2 * channel, SIDE // 2, SIDE // 2]))
    complex_vals, simple_vals = np.array(complex_vals), np.array(simple_vals)
    assert complex_vals.std() / complex_vals.mean() < 0.02
    assert simple_vals.min() == 0.0 and simple_vals.max() > 0.5 * complex_vals.mean()


def test_layers_shapes_and_pooling():
    model = load_model("gabor_v1", **vars(CONFIG))
    x = torch.randn(2, 3, SIDE, SIDE)
    out = model.forward_layers(x, model.layers())
    n_f, n_o = len(CONFIG.frequencies), CONFIG.n_orientations
    assert model.layers() == ["simple", "complex", "pooled"]
    assert out["simple"].shape == (2, n_f * n_o * 2, SIDE, SIDE)
    assert out["complex"].shape == (2, n_f * n_o, SIDE, SIDE)
    assert out["pooled"].shape == (2, n_f * n_o, 4, 4)
    block = out["complex"][:, :, :16, 16:32].mean((2, 3))  # grid cell (0, 1) of a 4x4 grid
    torch.testing.assert_close(out["pooled"][:, :, 0, 1], block)
    uniform = model.forward_layers(torch.full((1, 3, SIDE, SIDE), 0.7), ["complex"])["complex"]
    assert uniform[0, :, SIDE // 2, SIDE // 2].abs().max() < 1e-4  # filters have no DC response


def test_untrained_control_is_seeded_random_filters():
    designed = load_model("gabor_v1", **vars(CONFIG))
    a = load_model("gabor_v1", untrained=True, seed=2, **vars(CONFIG))
    b = load_model("gabor_v1", untrained=True, seed=2, **vars(CONFIG))
    c = load_model("gabor_v1", untrained=True, seed=3, **vars(CONFIG))
    assert a.weights_digest == b.weights_digest != c.weights_digest != designed.weights_digest
    assert a.model_id.endswith("@untrained-seed2") and designed.model_id.endswith("@designed")
    w = a.module.banks[0].weight
    torch.testing.assert_close(w.flatten(1).norm(dim=1), torch.ones(w.shape[0], device=w.device))


def test_cycles_per_degree_and_validation():
    config = GaborConfig()  # 224 px over 8 degrees: 28 px per degree
    assert config.frequencies_cpp()[0] == pytest.approx(1.0 / 28)
    with pytest.raises(InputError, match="Nyquist"):
        GaborConfig(image_size=64, image_deg=8.0, frequencies=(4.0,))
    with pytest.raises(InputError, match="kwargs"):
        load_model("gabor_v1", n_orientation=8)
