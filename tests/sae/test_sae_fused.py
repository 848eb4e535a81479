"""The fused relu_tied step (dense and sparse backward) against autograd of the plain forward."""

from __future__ import annotations

import pytest
import torch
from _sae_planted import planted_dictionary

from cortexalign.sae import SAEConfig, build_sae, fused
from cortexalign.sae.objectives import seed_objective


def _planted_sae(b_lat: float, dtype=torch.float32, n: int = 96, seed: int = 0):
    """A tied SAE whose rows are the planted atoms: with a negative bias only a few latents fire."""
    x_nd, atoms_md = planted_dictionary(n, d=32, m=256, s=3, seed=seed)
    sae = build_sae(SAEConfig(d_in=32, expansion=8, seed=seed)).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W.copy_(torch.from_numpy(atoms_md) + 0.05 * torch.randn(256, 32, generator=g))
        sae.b_lat.copy_(b_lat + 0.1 * torch.randn(256, generator=g))
        sae.b_pre.copy_(0.1 * torch.randn(32, generator=g))
        sae.input_scale.fill_(1.7)
    x_bd = (torch.from_numpy(x_nd) + 0.02 * torch.randn(n, 32, generator=g)).to(dtype) / 1.7
    return sae, x_bd


def _autograd(sae, x_bd, l1_coef):
    """Autograd of the module's forward and the objective (``seed_objective`` computes its L1 term
    in float32, so in float64 the seed's loss is written out here)."""
    sae.zero_grad(set_to_none=True)
    xhat_bd, z_bk = sae(x_bd)
    x, xhat = sae.normalise(x_bd), sae.normalise(xhat_bd)
    if x_bd.dtype == torch.float32:
        loss, parts = seed_objective(x, xhat, z_bk, l1_coef)
    else:
        xn2 = (x * x).sum(1)
        mse = (((xhat - x) ** 2).sum(1) / xn2).mean()
        l1 = (z_bk.abs().sum(1) / xn2.sqrt()).mean()
        loss, parts = mse + l1_coef * l1, {"nmse": mse.detach(), "l1": l1.detach()}
    loss.backward()
    return loss.detach(), parts, z_bk.detach(), {k: p.grad.clone() for k, p in sae.named_parameters()}


def _fused_run(sae, x_bd, l1_coef, max_density):
    sae.zero_grad(set_to_none=True)
    loss, parts, z_bk = fused.relu_tied_seed_loss(sae, x_bd, l1_coef, max_density)
    loss.backward()
    return loss.detach(), parts, z_bk, {k: p.grad.clone() for k, p in sae.named_parameters()}


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("b_lat, low", [(-0.6, True), (0.8, False)])
@pytest.mark.parametrize("max_density", [0.0, 1.0])  # forced dense, forced sparse
def test_fused_loss_and_gradients_equal_autograd(dtype, tol, b_lat, low, max_density):
    sae, x_bd = _planted_sae(b_lat, dtype)
    want = _autograd(sae, x_bd, 0.3)
    got = _fused_run(sae, x_bd, 0.3, max_density)
    density = float((want[2] > 0).double().mean())
    assert (density < 0.1) if low else (density > 0.4), density  # the planted regime holds
    torch.testing.assert_close(got[0], want[0], rtol=tol, atol=0)
    for key in ("nmse", "l1"):
        torch.testing.assert_close(got[1][key], want[1][key], rtol=tol, atol=0)
    assert torch.equal(got[2] > 0, want[2] > 0)
    torch.testing.assert_close(got[2], want[2], rtol=tol, atol=tol)
    for name, grad in want[3].items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(got[3][name], grad, rtol=tol, atol=tol * scale, msg=name)


def test_the_step_switches_on_the_measured_density(monkeypatch):
    calls = []
    real = fused._sparse_grads
    monkeypatch.setattr(fused, "_sparse_grads", lambda *a: calls.append(1) or real(*a))
    for b_lat, expect_sparse in ((-0.6, True), (0.8, False)):
        sae, x_bd = _planted_sae(b_lat)
        calls.clear()
        want = _autograd(sae, x_bd, 0.3)
        got = _fused_run(sae, x_bd, 0.3, max_density=0.2)  # between the two planted densities
        assert bool(calls) == expect_sparse
        for name, grad in want[3].items():
            torch.testing.assert_close(got[3][name], grad, rtol=1e-6,
                                       atol=1e-6 * float(grad.abs().max()))


def test_a_code_with_no_active_latent_still_trains_the_pre_bias():
    sae, x_bd = _planted_sae(-50.0)  # nothing fires: x_hat = b_pre
    for max_density in (0.0, 1.0):
        loss, _, z_bk, grads = _fused_run(sae, x_bd, 0.3, max_density)
        assert not z_bk.any() and grads["W"].abs().max() == 0 and grads["b_lat"].abs().max() == 0
        want = _autograd(sae, x_bd, 0.3)
        torch.testing.assert_close(grads["b_pre"], want[3]["b_pre"], rtol=1e-6, atol=1e-8)
