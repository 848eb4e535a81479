"""Neuron maps vs an explicit per-neuron loop, and what they promise."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import downscale_local_mean

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural import make_responses
from cortexalign.neural._maps import WEIGHTINGS, neuron_maps
from cortexalign.stimuli import StimulusSet


@pytest.mark.parametrize("weighting", sorted(WEIGHTINGS))
def test_matches_loop_reference(rng, weighting):
    imgs = rng.integers(0, 256, (9, 12, 16), dtype=np.uint8)
    resp = rng.normal(size=(9, 4)) + 1.0
    maps = neuron_maps(resp, imgs, (3, 4), weighting=weighting)
    small = np.stack([downscale_local_mean(im / 255.0, (4, 4)) for im in imgs])
    small -= small.mean(0)
    for j in range(4):
        r = resp[:, j]
        w = {"raw": r / np.abs(r).sum(), "zscore": (r - r.mean()) / r.std() / len(r),
             "positive": np.clip(r, 0, None) / np.clip(r, 0, None).sum()}[weighting]
        ref = sum(w[i] * small[i] for i in range(9))
        np.testing.assert_allclose(maps[j], ref, atol=1e-12)


def test_recovers_a_planted_receptive_field(rng):
    imgs = rng.uniform(0, 1, (400, 8, 8))
    rf = np.zeros((8, 8))
    rf[2:4, 5:7] = 1.0
    resp = (imgs * rf).sum((1, 2))[:, None]
    m = neuron_maps(resp, imgs, (8, 8))[0]
    assert set(zip(*np.unravel_index(np.argsort(m.ravel())[-4:], m.shape), strict=True)) == {
        (2, 5), (2, 6), (3, 5), (3, 6)}


def test_stimulus_set_and_dataarray_inputs(rng):
    imgs = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    stim = StimulusSet.from_arrays(imgs, ids=[f"s{i}" for i in range(6)])
    da = make_responses(rng.normal(size=(6, 2, 3)), stim.ids)
    from_set = neuron_maps(da, stim, (4, 4))
    from_arr = neuron_maps(da.values.mean(2), imgs, (4, 4))
    np.testing.assert_allclose(from_set, from_arr)
    with pytest.raises(InputError, match="order"):
        neuron_maps(da.isel(stimulus=[1, 0, 2, 3, 4, 5]), stim, (4, 4))


def test_pad_square_puts_image_top_left(rng):
    imgs = np.ones((3, 4, 8))
    resp = np.array([[1.0], [2.0], [3.0]])
    m = neuron_maps(resp, imgs * np.arange(1, 4)[:, None, None] / 3, (8, 8), weighting="raw",
                    subtract_mean_image=False, pad_square=True)[0]
    assert np.allclose(m[4:], 0.5) and not np.allclose(m[:4], 0.5)


def test_bad_inputs(rng):
    imgs = rng.uniform(0, 1, (5, 8, 8))
    with pytest.raises(UnknownNameError):
        neuron_maps(rng.normal(size=(5, 2)), imgs, (4, 4), weighting="softmax")
    with pytest.raises(InputError, match="5 images"):
        neuron_maps(rng.normal(size=(5, 2)), imgs[:4], (4, 4))
    with pytest.raises(InputError, match="constant"):
        neuron_maps(np.ones((5, 2)), imgs, (4, 4))
    with pytest.raises(InputError, match="grid"):
        neuron_maps(rng.normal(size=(5, 2)), imgs, (0, 4))
