"""Sparsity that holds: BatchTopK's inference threshold calibrated to mean L0 = k, dense and
dead latents counted, and a warning when a trained SAE is not sparse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _sae_planted import planted_dictionary

from cortexalign.sae import MetricAccumulator, SAEConfig, array_chunks, build_sae, evaluate_sae
from cortexalign.sae.objectives import DENSE_FREQUENCY
from cortexalign.sae.train import DenseCodeWarning, train_sae, warn_if_dense


def test_batch_topk_threshold_gives_mean_l0_k_on_the_calibration_tokens():
    torch.manual_seed(0)
    cfg = SAEConfig(d_in=16, architecture="batch_topk", expansion=8, k=5)
    sae = build_sae(cfg).eval()
    x = torch.randn(1000, 16)
    t = sae.calibrate_threshold([x[:300], x[300:650], x[650:]])  # streamed in three chunks
    z = sae.encode(x)
    assert (z != 0).sum(1).double().mean().item() == pytest.approx(cfg.k, abs=1e-12)
    # the reference: the (k n)-th and (k n + 1)-th largest pre-activations bracket the threshold
    pre = sae.pre_acts(x).flatten().sort(descending=True).values
    n_k = cfg.k * x.shape[0]
    assert pre[n_k] < t < pre[n_k - 1]
    # held-out tokens of the same distribution: close to k
    held = sae.encode(torch.randn(1000, 16))
    assert abs((held != 0).sum(1).double().mean().item() - cfg.k) < 0.5


def test_trained_batch_topk_calibration_fixes_the_running_threshold():
    x_nd, _ = planted_dictionary(40_000)
    cfg = SAEConfig(d_in=32, architecture="batch_topk", expansion=4, k=3, lr=3e-3, batch_size=256,
                    dead_window=20_000)
    sae = train_sae(array_chunks(x_nd, 8192), cfg, device="cpu").sae
    sae.calibrate_threshold(lambda: array_chunks(x_nd[:4000], 1000))
    m = evaluate_sae(sae, array_chunks(x_nd[:4000]), device="cpu")
    assert m.l0 == pytest.approx(3.0, abs=1e-9)


def test_dense_and_active_fractions_against_numpy():
    g = np.random.default_rng(0)
    n, k = 200, 12
    freq = np.linspace(0.0, 0.3, k)  # latent j fires on ~freq[j] of tokens
    z = np.where(g.random((n, k)) < freq, 1.0 + g.random((n, k)), 0.0)
    x = g.standard_normal((n, 4))
    acc = MetricAccumulator(4, k)
    acc.update(torch.tensor(x[:77]), torch.tensor(x[:77]), torch.tensor(z[:77]))
    acc.update(torch.tensor(x[77:]), torch.tensor(x[77:]), torch.tensor(z[77:]))
    m = acc.result()
    fired = (z != 0).mean(0)
    assert m.dense_fraction == pytest.approx((fired > DENSE_FREQUENCY).mean())
    assert m.dead_fraction == pytest.approx((fired == 0).mean())
    assert m.active_fraction == pytest.approx((z != 0).sum(1).mean() / k)


def test_a_dense_code_is_warned():
    g = np.random.default_rng(0)
    x = torch.tensor(g.standard_normal((500, 8)), dtype=torch.float32)
    dense = build_sae(SAEConfig(d_in=8, expansion=2, l1_coef=0.0)).eval()  # ReLU: ~half active
    m = evaluate_sae(dense, [x], device="cpu")
    with pytest.warns(DenseCodeWarning, match="not sparse"):
        assert warn_if_dense(m, "blocks.3")
    sparse = build_sae(SAEConfig(d_in=8, architecture="topk", expansion=32, k=2)).eval()
    assert not warn_if_dense(evaluate_sae(sparse, [x], device="cpu"), "blocks.3")
