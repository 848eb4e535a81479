"""Streaming trainer: planted dictionary recovery, dead-latent resampling, checkpoints, streams."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _sae_planted import planted_dictionary

from cortexalign.errors import InputError
from cortexalign.features import FeatureCache
from cortexalign.sae import (
    SAEConfig,
    array_chunks,
    build_sae,
    cache_token_chunks,
    evaluate_sae,
    load_sae,
    save_sae,
    token_chunks,
    train_sae,
)
from cortexalign.sae.train import _resample


@pytest.mark.parametrize("arch", ["topk", "batch_topk"])
def test_planted_dictionary_is_recovered(arch):
    x_nd, atoms_md = planted_dictionary(80_000)
    cfg = SAEConfig(d_in=32, architecture=arch, expansion=4, k=3, lr=3e-3, batch_size=256,
                    dead_window=20_000)
    out = train_sae(array_chunks(x_nd, 8192), cfg, device="cpu")
    dec = out.sae.decoder_kd().detach().numpy()
    dec /= np.linalg.norm(dec, axis=1, keepdims=True)
    best_cos_m = (atoms_md @ dec.T).max(1)
    assert (best_cos_m > 0.9).mean() >= 0.85, np.sort(best_cos_m)[:10]
    m = evaluate_sae(out.sae, array_chunks(x_nd[:4000]), device="cpu")
    assert m.explained_variance > 0.8
    assert m.l0 <= 3 + 1e-9 if arch == "topk" else m.l0 < 6
    assert out.n_tokens == 80_000 // 256 * 256 and out.n_steps == 80_000 // 256


def test_relu_tied_training_lowers_the_seed_loss():
    x_nd, _ = planted_dictionary(8192, d=16, m=32)
    cfg = SAEConfig(d_in=16, expansion=4, lr=3e-3, batch_size=256, l1_coef=1e-2)
    out = train_sae(array_chunks(x_nd, 2048), cfg, device="cpu", log_every=1)
    first, last = out.history[0]["loss"], np.mean([h["loss"] for h in out.history[-5:]])
    assert last < 0.5 * first
    assert {"step", "tokens", "loss", "nmse", "l1"} <= set(out.history[0])


def test_max_tokens_stops_the_stream():
    x_nd, _ = planted_dictionary(4096, d=8, m=8)
    out = train_sae(array_chunks(x_nd, 1000), SAEConfig(d_in=8, batch_size=100), device="cpu",
                    max_tokens=1000)
    assert out.n_tokens == 1000 and out.n_steps == 10


def test_resample_points_dead_latents_at_batch_inputs_and_resets_adam():
    cfg = SAEConfig(d_in=6, architecture="topk", expansion=2, k=2, lr=1e-2)
    sae = build_sae(cfg)
    opt = torch.optim.AdamW(sae.parameters(), lr=1e-2)
    x = torch.randn(20, 6)
    xhat, z = sae(x)
    xhat.pow(2).sum().backward()
    opt.step()
    sae.constrain()
    before = sae.W_dec.detach().clone()
    dead = torch.zeros(12, dtype=torch.bool)
    dead[[1, 5, 7]] = True
    n = _resample(sae, opt, dead, x, torch.Generator().manual_seed(0))
    assert n == 3
    dirs = (x - sae.b_pre.detach())
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    cos = sae.W_dec.detach()[dead] @ dirs.T
    torch.testing.assert_close(cos.max(1).values, torch.ones(3))  # each is some input's direction
    torch.testing.assert_close(sae.W_dec.detach()[~dead], before[~dead])
    assert (sae.b_enc.detach()[dead] == 0).all()
    assert (opt.state[sae.W_dec]["exp_avg"][dead] == 0).all()
    assert (opt.state[sae.W_dec]["exp_avg_sq"][dead] == 0).all()


def test_trainer_resamples_latents_that_never_fire():
    # All tokens lie near one direction and k = 1: most latents never win the TopK, so they die.
    g = np.random.default_rng(0)
    x_nd = (np.outer(g.uniform(1, 2, 6000), np.eye(8)[0]) + 0.01 * g.standard_normal((6000, 8)))
    cfg = SAEConfig(d_in=8, architecture="topk", expansion=4, k=1, batch_size=200, dead_window=1000,
                    lr=1e-3)
    out = train_sae(array_chunks(x_nd.astype(np.float32), 3000), cfg, device="cpu")
    assert out.n_resampled > 0
    no_resample = train_sae(array_chunks(x_nd.astype(np.float32), 3000),
                            cfg.model_copy(update={"resample_dead": False}), device="cpu")
    assert no_resample.n_resampled == 0 and no_resample.dead_fraction > 0.5


@pytest.mark.parametrize("arch", ["relu_tied", "topk", "batch_topk"])
def test_checkpoint_round_trip(tmp_path, arch):
    cfg = SAEConfig(d_in=8, architecture=arch, expansion=2, k=2, batch_size=64)
    x_nd, _ = planted_dictionary(512, d=8, m=8)
    out = train_sae(array_chunks(x_nd), cfg, device="cpu", checkpoint=tmp_path / "ck")
    assert (tmp_path / "ck" / "sae.safetensors").is_file()
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["config"]["architecture"] == arch and meta["n_tokens"] == 512
    sae = load_sae(tmp_path / "ck", cfg)
    x = torch.from_numpy(x_nd[:10])
    torch.testing.assert_close(sae(x)[0], out.sae(x)[0])


def test_checkpoint_with_another_config_names_the_differing_fields(tmp_path):
    cfg = SAEConfig(d_in=8, expansion=2)
    save_sae(build_sae(cfg), tmp_path)
    with pytest.raises(InputError, match=r"expansion: requested 4, checkpoint 2.*l1_coef"):
        load_sae(tmp_path, SAEConfig(d_in=8, expansion=4, l1_coef=0.5))
    with pytest.raises(InputError, match="checkpoint directory"):
        load_sae(tmp_path / "nothing")


def test_bad_chunks_raise():
    cfg = SAEConfig(d_in=8, batch_size=4)
    with pytest.raises(InputError, match=r"\(N, 8\)"):
        train_sae([np.zeros((10, 7), np.float32)], cfg, device="cpu")
    with pytest.raises(InputError, match="NaN"):
        train_sae([np.full((10, 8), np.nan, np.float32)], cfg, device="cpu")
    with pytest.raises(InputError, match="at least batch_size"):
        train_sae([np.zeros((3, 8), np.float32)], cfg, device="cpu")


def test_token_chunks_drop_prefix_tokens_and_cover_every_patch():
    acts = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    chunks = list(token_chunks(acts, 1, images_per_chunk=2, block_order=np.array([2, 0, 1])))
    assert [c.shape for c in chunks] == [(3, 3), (6, 3), (6, 3)]
    got = torch.cat(chunks).numpy()
    want = acts[:, 1:].reshape(-1, 3)
    assert sorted(map(tuple, got)) == sorted(map(tuple, want))
    with pytest.raises(InputError, match="num_prefix_tokens"):
        next(token_chunks(acts, 4))


def test_cache_token_chunks_stream_a_feature_cache_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    acts = np.random.default_rng(0).standard_normal((7, 5, 4)).astype(np.float32)
    key = "a" * 64
    cache.put(key, acts, {"num_prefix_tokens": 1, "pooling": "none"})
    got = torch.cat(list(cache_token_chunks(cache, key, images_per_chunk=3, epochs=2))).numpy()
    assert got.shape == (2 * 7 * 4, 4)
    want = np.concatenate([acts[:, 1:].reshape(-1, 4)] * 2)
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(want, axis=0))
    with pytest.raises(InputError, match="feature-cache entry"):
        next(cache_token_chunks(cache, "b" * 64))


def test_cache_token_chunks_refuse_a_corrupted_chunk(tmp_path):
    """Tokens are read through FeatureCache.open: a chunk changed on disk is never trained on."""
    import warnings

    import zarr

    from cortexalign.features import CacheIntegrityError

    cache = FeatureCache(tmp_path)
    acts = np.random.default_rng(1).standard_normal((6, 3, 4)).astype(np.float32)
    key = "c" * 64
    cache.put(key, acts, {"num_prefix_tokens": 1, "pooling": "none"})
    stored = zarr.open_array(cache.path(key) / "values", mode="r+")
    stored[5, 2, 3] = 99.0  # tamper with the data after the digests were written
    with warnings.catch_warnings(), pytest.raises(CacheIntegrityError):
        warnings.simplefilter("ignore", RuntimeWarning)  # the discard warning
        list(cache_token_chunks(cache, key, images_per_chunk=2, shuffle=False))
    assert not cache.contains(key)  # the corrupt entry was discarded
