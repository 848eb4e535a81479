"""Untrained spiking controls are scorable (batch-norm calibration on the stimuli), silent images
give a warning and a defined RDM, and the energy convention for the first layer is explicit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.features import extract_features
from cortexalign.metrics import ConstantFeaturesWarning, compute_rdm
from cortexalign.models import load_model
from cortexalign.models._spiking import SilentStimulusWarning
from cortexalign.spiking import create_snn, measure_energy
from cortexalign.spiking.energy import ENERGY_CONVENTIONS
from cortexalign.stimuli import StimulusSet


def _stimuli(n: int = 12, side: int = 32, seed: int = 0) -> StimulusSet:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(side, side, 3))
    imgs = np.clip(128 + 50 * (base + rng.normal(size=(n, side, side, 3))), 0, 255).astype(np.uint8)
    return StimulusSet.from_arrays(imgs, name=f"noise{n}")


def test_untrained_default_calibrates_batchnorm_on_the_stimuli():
    stim = _stimuli()
    raw = load_model("snn:hst_tiny", untrained=True, bn_calibration="none", device="cpu")
    cal = load_model("snn:hst_tiny", untrained=True, device="cpu")
    assert "bn_calibration='stimuli'" in cal.model_id and "bn_calibration" not in raw.model_id
    assert raw.weights_digest == cal.weights_digest  # same weights; the statistics are not part
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f_raw = extract_features(raw, stim, ["stage3"], progress=False)["stage3"].values
    assert any(issubclass(w.category, SilentStimulusWarning) for w in caught)
    f_cal = extract_features(cal, stim, ["stage2", "stage3"], progress=False)
    assert f_raw.max() == 0  # the untrained network at initial statistics is silent
    for name, feats in f_cal.items():
        x = feats.values.reshape(len(stim), -1)
        assert (x.max(axis=1) > 0).all(), name  # every image spikes
        assert np.ptp(x, axis=0).max() > 0, name  # and images differ
    # the first batch norm's statistics are the stimuli's own (one calibration batch):
    # mean and unbiased variance over images, time steps and positions of conv1's output
    bn = cal.module.stage1.embed.conv1.bn
    x = cal.preprocess(list(stim.images()))
    with torch.no_grad():
        y = cal.module.stage1.embed.conv1.conv(x).double()
    ref_mean = y.mean(dim=(0, 2, 3))
    ref_var = y.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean.double(), ref_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), ref_var, rtol=1e-4, atol=1e-6)
    assert not cal.module.training and bn.momentum == 0.1


def test_calibration_is_per_stimulus_set_and_repeatable():
    cal = load_model("snn:spiliformer_tiny", untrained=True, device="cpu")
    a, b = _stimuli(seed=0), _stimuli(n=10, seed=5)
    first = extract_features(cal, a, ["stage3"], progress=False)["stage3"].values
    extract_features(cal, b, ["stage3"], progress=False)
    again = extract_features(cal, a, ["stage3"], progress=False)["stage3"].values
    np.testing.assert_array_equal(first, again)
    with pytest.raises(InputError, match="bn_calibration"):
        load_model("snn:hst_tiny", untrained=True, bn_calibration="batch", device="cpu")


def test_constant_rows_are_uncorrelated_with_every_other():
    rng = np.random.default_rng(0)
    x = rng.random((6, 5))
    x[2] = 0.0  # a silent image
    x[4] = 0.0
    with pytest.warns(ConstantFeaturesWarning, match="2 of 6 stimuli"):
        rdm = compute_rdm(x, "correlation")
    keep = [0, 1, 3, 5]
    ref = 1 - np.corrcoef(x[keep])
    np.testing.assert_allclose(rdm[np.ix_(keep, keep)], ref, atol=1e-12)
    for i in (2, 4):
        expected = np.ones(6)
        expected[i] = 0.0
        np.testing.assert_allclose(rdm[i], expected)
        np.testing.assert_allclose(rdm[:, i], expected)
    with pytest.warns(ConstantFeaturesWarning, match="all-zero"):
        cos = compute_rdm(x, "cosine")
    assert cos[2, 0] == 1.0 and np.isfinite(cos).all()


def test_first_layer_counted_once_or_per_step():
    torch.manual_seed(0)
    m = create_snn("hst_tiny").eval()
    x = torch.randn(3, 3, 16, 16)
    once = measure_energy(m, x)
    per_step = measure_energy(m, x, first_layer="per_step")
    T = m.config.time_steps
    first = "stage1.embed.conv1.conv"
    lay_once = {lay.name: lay for lay in once.layers}
    lay_step = {lay.name: lay for lay in per_step.layers}
    # the static image's first convolution: T x (out elements x C_in x 9) per step vs once
    conv = m.stage1.embed.conv1.conv
    per_call = 3 * conv.out_channels * 16 * 16 * conv.in_channels * 9
    assert lay_step[first].macs == T * per_call and lay_once[first].macs == per_call
    # spiking layers and the head (its per-step inputs differ) are counted the same way
    for name in lay_once:
        if name != first:
            assert lay_once[name].macs == pytest.approx(lay_step[name].macs)
            assert lay_once[name].sops == pytest.approx(lay_step[name].sops)
    assert once.macs == pytest.approx(per_step.macs - (T - 1) * per_call / 3)
    assert once.as_dict()["first_layer"] == "once" and "Spikformer" in once.convention
    assert set(ENERGY_CONVENTIONS) == {"once", "per_step"}
    # inputs that change over time steps are counted at every step under either convention
    net = nn.Sequential(nn.Linear(4, 3))
    xt = torch.randn(2, 5, 4)
    assert measure_energy(net, xt, n_samples=5).macs == measure_energy(
        net, xt, n_samples=5, first_layer="per_step").macs == 2 * 3 * 4
    with pytest.raises(InputError, match="first_layer"):
        measure_energy(m, x, first_layer="twice")
