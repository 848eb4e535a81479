"""Pooling functions against explicit numpy references, and their contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import POOLINGS, pool

rng = np.random.default_rng(0)
CONV_BCHW = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
TOKENS_BTD = rng.normal(size=(3, 10, 5)).astype(np.float32)  # 1 prefix + a 3 x 3 grid
VEC_BD = rng.normal(size=(3, 5)).astype(np.float32)


def ref_conv(name: str, a: np.ndarray) -> np.ndarray:
    b, c, h, w = a.shape
    out = np.empty((b, c) if name in ("mean", "max") else (b, c * h * w))
    for i in range(b):
        for j in range(c):
            if name == "mean":
                out[i, j] = sum(a[i, j, y, x] for y in range(h) for x in range(w)) / (h * w)
            elif name == "max":
                out[i, j] = max(a[i, j, y, x] for y in range(h) for x in range(w))
        if name == "flatten":
            out[i] = [a[i, j, y, x] for j in range(c) for y in range(h) for x in range(w)]
    return out


def ref_tokens(name: str, a: np.ndarray, p: int) -> np.ndarray:
    patches = [a[:, k] for k in range(p, a.shape[1])]
    if name == "mean":
        return sum(patches) / len(patches)
    if name == "max":
        return np.maximum.reduce(patches)
    if name == "cls":
        return a[:, 0]
    return np.stack([a[i].ravel() for i in range(len(a))])


@pytest.mark.parametrize("name", ["mean", "max", "flatten"])
def test_conv_pooling_matches_loop(name):
    got = POOLINGS[name](torch.from_numpy(CONV_BCHW), 0).numpy()
    np.testing.assert_allclose(got, ref_conv(name, CONV_BCHW), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mean", "max", "cls", "flatten"])
@pytest.mark.parametrize("prefix", [1, 2])
def test_token_pooling_matches_numpy(name, prefix):
    got = POOLINGS[name](torch.from_numpy(TOKENS_BTD), prefix).numpy()
    np.testing.assert_allclose(got, ref_tokens(name, TOKENS_BTD, prefix), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mean", "max"])
def test_token_pooling_without_prefix_uses_all_tokens(name):
    got = POOLINGS[name](torch.from_numpy(TOKENS_BTD), 0).numpy()
    want = TOKENS_BTD.mean(axis=1) if name == "mean" else TOKENS_BTD.max(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


LAYOUTS = {"conv": CONV_BCHW, "tokens": TOKENS_BTD, "vec": VEC_BD}
CASES = [(name, layout) for name in sorted(POOLINGS) for layout in LAYOUTS
         if not (name == "cls" and layout != "tokens")]  # cls errors elsewhere: tested below


@pytest.mark.parametrize("name,layout", CASES)
def test_every_pooling_keeps_batch_and_returns_float32(name, layout):
    acts = LAYOUTS[layout]
    got = POOLINGS[name](torch.from_numpy(acts).to(torch.bfloat16), 1)
    assert got.dtype == torch.float32
    if name == "none":
        assert got.shape == acts.shape
    else:
        assert got.ndim == 2 and got.shape[0] == acts.shape[0]


def test_none_is_identity():
    np.testing.assert_array_equal(POOLINGS["none"](torch.from_numpy(TOKENS_BTD), 1).numpy(),
                                  TOKENS_BTD)


def test_vector_layers_pass_through_mean_and_max():
    for name in ("mean", "max", "flatten"):
        np.testing.assert_array_equal(POOLINGS[name](torch.from_numpy(VEC_BD), 0).numpy(), VEC_BD)


@pytest.mark.parametrize("acts,prefix", [(CONV_BCHW, 0), (TOKENS_BTD, 0), (VEC_BD, 0)])
def test_cls_without_prefix_token_says_use_mean(acts, prefix):
    with pytest.raises(InputError, match="pooling='mean'"):
        POOLINGS["cls"](torch.from_numpy(acts), prefix)


def test_prefix_only_layer_cannot_be_mean_pooled():
    with pytest.raises(InputError, match="prefix tokens"):
        POOLINGS["mean"](torch.from_numpy(TOKENS_BTD), TOKENS_BTD.shape[1])


def test_rank5_needs_flatten():
    acts = torch.zeros(2, 3, 4, 5, 6)
    with pytest.raises(InputError, match="flatten"):
        POOLINGS["mean"](acts, 0)
    assert POOLINGS["flatten"](acts, 0).shape == (2, 360)


def test_unknown_pooling_suggests_close_names():
    with pytest.raises(UnknownNameError, match="mean"):
        pool(torch.from_numpy(VEC_BD), "maen")


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), t=st.integers(2, 9), d=st.integers(1, 4), p=st.integers(0, 1),
       seed=st.integers(0, 2**31 - 1))
def test_token_mean_is_permutation_invariant_and_bounded_by_max(b, t, d, p, seed):
    g = torch.Generator().manual_seed(seed)
    acts_btd = torch.randn(b, t, d, generator=g)
    perm = torch.cat([torch.arange(p), p + torch.randperm(t - p, generator=g)])
    mean_bd = POOLINGS["mean"](acts_btd, p)
    torch.testing.assert_close(mean_bd, POOLINGS["mean"](acts_btd[:, perm], p))
    assert bool((POOLINGS["max"](acts_btd, p) >= mean_bd - 1e-6).all())


@pytest.mark.parametrize("g", [2, 4])
def test_grid_pooling_matches_block_means(g):
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    got = pool(torch.from_numpy(acts), f"grid{g}").numpy()
    step = 8 // g
    ref = acts.reshape(2, 3, g, step, g, step).mean(axis=(3, 5)).reshape(2, -1)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    # token layout: the same grid from (b, 1 + 64, c) tokens with a CLS token first
    tokens = np.concatenate([rng.normal(size=(2, 1, 3)),
                             acts.reshape(2, 3, 64).transpose(0, 2, 1)], axis=1)
    got_t = pool(torch.from_numpy(tokens.astype(np.float32)), f"grid{g}", 1).numpy()
    np.testing.assert_allclose(got_t, ref, rtol=1e-5, atol=1e-7)


def test_grid_pooling_refuses_non_square_tokens():
    with pytest.raises(InputError, match="square grid"):
        pool(torch.zeros(1, 7, 4), "grid2", 1)
