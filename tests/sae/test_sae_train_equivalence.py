"""The fast trainer against explicit reference loops: same seed, same batches, same weights.

The references below are written from the trainer's documented semantics (shuffle each chunk with
``randperm`` from a generator seeded with ``config.seed``, concatenate it behind the previous
chunk's leftover tokens, cut into batches, drop the tail; with ``normalize_inputs`` the input scale
c = sqrt(d / mean ||x||^2) of the first batch; pre-bias starts at the first batch's mean (of c x);
AdamW; the seed's objective on c x and c x_hat with lambda ramped over ``l1_warmup_steps``, or the
NMSE objective; ``constrain`` after each step) with the permuted chunk
materialised and plain Python bookkeeping, i.e. the way ``train_sae`` worked before it gathered
batches on the device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _sae_planted import planted_dictionary
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError
from cortexalign.sae import SAEConfig, build_sae, fused, train_sae
from cortexalign.sae.train import _batches

# chunk lengths that exercise every carry-over case for batch 50: a chunk that completes the
# leftover and leaves a new one, a chunk too short to complete it (5), an empty chunk, exact fits
CHUNK_SIZES = [70, 30, 5, 0, 200, 64, 50, 41]


def _chunks(sizes: list[int], d: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d) + 0.3 for n in sizes]


def _reference_batches(chunks: list[torch.Tensor], batch_size: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    rest = torch.empty(0, chunks[0].shape[1])
    for chunk in chunks:
        t = torch.cat([rest, chunk[torch.randperm(chunk.shape[0], generator=gen)]])
        n_full = t.shape[0] // batch_size * batch_size
        for start in range(0, n_full, batch_size):
            yield t[start:start + batch_size]
        rest = t[n_full:]


def _seed_loss(x, xhat, z, l1_coef):
    xn2 = (x * x).sum(1)
    mse = (((xhat - x) ** 2).sum(1) / xn2).mean()
    return mse + l1_coef * (z.abs().sum(1) / xn2.sqrt()).mean(), mse


def _reference_training(chunks, cfg: SAEConfig):
    """Plain loop: no resampling, so the dead-latent bookkeeping must not change any weight."""
    torch.manual_seed(cfg.seed)
    sae = build_sae(cfg).train()
    opt = torch.optim.AdamW(sae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    c = 1.0
    for step, x in enumerate(_reference_batches(chunks, cfg.batch_size, cfg.seed)):
        if step == 0:
            if cfg.normalize_inputs:
                c = float(np.sqrt(cfg.d_in / float((x.double() ** 2).sum(1).mean())))
            with torch.no_grad():
                sae.input_scale.fill_(c)
                sae.b_pre.copy_((c * x).mean(0))
        xhat, z = sae(x)
        x, xhat = c * x, c * xhat
        if cfg.architecture == "relu_tied":
            warm = min(1.0, (step + 1) / cfg.l1_warmup_steps) if cfg.l1_warmup_steps else 1.0
            loss, _ = _seed_loss(x, xhat, z, cfg.l1_coef * warm)
        else:
            loss = (((xhat - x) ** 2).sum(1) / (x * x).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.constrain()
        losses.append(float(loss.detach()))
    return sae, losses


@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8), batch_size=st.integers(1, 17),
       seed=st.integers(0, 3))
@settings(max_examples=40, deadline=None)
def test_device_gathered_batches_equal_the_materialised_shuffle(sizes, batch_size, seed):
    chunks = _chunks(sizes, 3, seed)
    cfg = SAEConfig(d_in=3, batch_size=batch_size, seed=seed)
    got = list(_batches(chunks, cfg, torch.Generator().manual_seed(seed), torch.device("cpu")))
    want = list(_reference_batches(chunks, batch_size, seed))
    assert len(got) == len(want) == sum(sizes) // batch_size
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("arch", ["relu_tied", "topk", "batch_topk"])
def test_train_sae_equals_a_plain_reference_loop(arch, normalize):
    cfg = SAEConfig(d_in=6, architecture=arch, expansion=3, k=2, lr=1e-2, batch_size=50,
                    l1_coef=0.05, resample_dead=False, dead_window=100, seed=3,
                    normalize_inputs=normalize)
    chunks = _chunks(CHUNK_SIZES, 6)
    out = train_sae(chunks, cfg, device="cpu", log_every=1)
    ref, ref_losses = _reference_training(chunks, cfg)
    assert out.n_steps == len(ref_losses) == sum(CHUNK_SIZES) // 50
    np.testing.assert_allclose([h["loss"] for h in out.history], ref_losses, rtol=1e-6, atol=1e-7)
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(out.sae.state_dict()[name], p, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("max_density, paths", [(0.0, {"dense"}), (1.0, {"sparse"}),
                                                 (0.3, {"dense", "sparse"})])
def test_relu_tied_sparse_and_dense_steps_equal_the_reference_loop(monkeypatch, max_density, paths):
    # planted sparse tokens: the share of active latents falls from 0.5 to ~0.15 over the run, so
    # at 0.3 the trainer switches from the dense to the sparse backward part-way
    x_nd, _ = planted_dictionary(1200, d=16, m=48, s=2, seed=0)
    chunks = [torch.from_numpy(x_nd[:700]), torch.from_numpy(x_nd[700:])]
    cfg = SAEConfig(d_in=16, expansion=4, lr=3e-2, batch_size=50, l1_coef=0.3, l1_warmup_steps=5,
                    resample_dead=False, seed=0)
    used = []
    dense, sparse = fused._dense_grads, fused._sparse_grads
    monkeypatch.setattr(fused, "SPARSE_MAX_DENSITY", max_density)
    monkeypatch.setattr(fused, "_dense_grads", lambda *a: used.append("dense") or dense(*a))
    monkeypatch.setattr(fused, "_sparse_grads", lambda *a: used.append("sparse") or sparse(*a))
    out = train_sae(chunks, cfg, device="cpu", log_every=1)
    ref, ref_losses = _reference_training(chunks, cfg)
    assert set(used) == paths and len(used) == out.n_steps == len(ref_losses) == 24
    np.testing.assert_allclose([h["loss"] for h in out.history], ref_losses, rtol=1e-6)
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(out.sae.state_dict()[name], p, rtol=1e-6, atol=1e-6)


def test_training_continues_from_an_init_sae():
    x_nd, _ = planted_dictionary(900, d=16, m=48, s=2, seed=1)
    cfg = SAEConfig(d_in=16, expansion=4, lr=3e-2, batch_size=50, l1_coef=0.3, l1_warmup_steps=0,
                    resample_dead=False, seed=2)
    first = train_sae([x_nd[:400]], cfg, device="cpu").sae
    start = {k: v.clone() for k, v in first.state_dict().items()}
    out = train_sae([x_nd[400:]], cfg, device="cpu", log_every=1, init=first)
    assert all(torch.equal(first.state_dict()[k], v) for k, v in start.items())  # init untouched
    ref = build_sae(cfg)
    ref.load_state_dict(start)
    opt = torch.optim.AdamW(ref.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    c = float(ref.input_scale)
    for x in _reference_batches([torch.from_numpy(x_nd[400:])], 50, cfg.seed):
        xhat, z = ref(x)
        loss, _ = _seed_loss(c * x, c * xhat, z, cfg.l1_coef)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert out.n_steps == 10
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(out.sae.state_dict()[name], p, rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="init"):
        train_sae([x_nd], cfg.model_copy(update={"expansion": 2}), device="cpu", init=first)
    with pytest.raises(InputError, match="TopKSAE"):
        train_sae([x_nd], cfg, device="cpu", init=build_sae(cfg.model_copy(
            update={"architecture": "topk"})))


def test_dead_fraction_matches_an_explicit_firing_record():
    # a strong L1 penalty kills some latents; dead at the end = silent on the last window (3 batches)
    cfg = SAEConfig(d_in=6, expansion=3, lr=0.3, batch_size=50, l1_coef=50.0, resample_dead=False,
                    dead_window=150, seed=1, normalize_inputs=False, l1_warmup_steps=0)
    chunks = _chunks([400], 6)
    out = train_sae(chunks, cfg, device="cpu")
    assert out.n_tokens == 400 and out.n_steps == 8
    torch.manual_seed(cfg.seed)
    sae = build_sae(cfg).train()
    opt = torch.optim.AdamW(sae.parameters(), lr=cfg.lr)
    fired_k = np.zeros(cfg.d_sae, bool)
    for step, x in enumerate(_reference_batches(chunks, 50, cfg.seed)):
        if step == 0:
            with torch.no_grad():
                sae.b_pre.copy_(x.mean(0))
        xhat, z = sae(x)
        if step >= 5:
            fired_k |= (z.detach().numpy() > 0).any(0)
        loss, _ = _seed_loss(x, xhat, z, cfg.l1_coef)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 0 < fired_k.mean() < 1, fired_k  # the check needs both live and dead latents
    assert out.dead_fraction == pytest.approx(1 - fired_k.mean())


def test_batch_topk_threshold_follows_the_running_rule():
    cfg = SAEConfig(d_in=4, architecture="batch_topk", expansion=2, k=2)
    sae = build_sae(cfg).train()
    g = torch.Generator().manual_seed(0)
    expected, seen = 0.0, False
    for step in range(6):
        x = torch.randn(5, 4, generator=g)
        with torch.no_grad():
            sae.b_enc.fill_(-100.0 if step == 2 else 0.0)  # step 2: nothing positive, no update
            pre = sae.pre_acts(x).flatten()
        kept = pre.topk(10).values
        positive = kept[kept > 0]
        if positive.numel():
            low = float(positive.min())
            expected = low if not seen else 0.99 * expected + 0.01 * low
            seen = True
        sae.encode(x)
        assert float(sae.threshold) == pytest.approx(expected, rel=1e-6)
        assert bool(sae.threshold_seen) == seen


def test_non_finite_values_anywhere_in_a_chunk_raise():
    cfg = SAEConfig(d_in=3, batch_size=4)
    for bad in (float("nan"), float("inf"), -float("inf")):
        chunk = np.ones((9, 3), np.float32)
        chunk[7, 2] = bad
        with pytest.raises(InputError, match="NaN/Inf"):
            train_sae([np.ones((5, 3), np.float32), chunk], cfg, device="cpu")
