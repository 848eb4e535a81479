"""SAE modules, objectives and metrics against explicit formulas; the decoder constraint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.sae import (
    OBJECTIVES,
    SAE_ARCHITECTURES,
    MetricAccumulator,
    SAEConfig,
    build_sae,
    resolved_objective,
)

ARCHS = list(SAE_ARCHITECTURES)


def test_registry_lists_the_three_architectures():
    assert set(ARCHS) == {"relu_tied", "topk", "batch_topk"}
    with pytest.raises(UnknownNameError, match="topk"):
        SAE_ARCHITECTURES.get("top_k")


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_sparsity(arch):
    cfg = SAEConfig(d_in=8, architecture=arch, expansion=4, k=3)
    sae = build_sae(cfg)
    x = torch.randn(10, 8)
    xhat, z = sae(x)
    assert xhat.shape == (10, 8) and z.shape == (10, 32)
    assert (z >= 0).all()
    if arch == "topk":
        assert ((z > 0).sum(1) <= 3).all()
    if arch == "batch_topk":
        assert (z > 0).sum() <= 3 * 10
        sae.eval()  # threshold rule: a token's code no longer depends on its batch
        # fresh tokens: the batch that set the threshold holds a value exactly at it, which
        # float rounding of a different batch size can put on either side
        x2 = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(sae.encode(x2[:1]), sae.encode(x2)[:1])


def test_relu_tied_matches_the_seed_equations():
    cfg = SAEConfig(d_in=6, expansion=3)
    sae = build_sae(cfg)
    with torch.no_grad():
        sae.b_pre.normal_()
        sae.b_lat.normal_()
    x = torch.randn(5, 6, dtype=torch.float32)
    W, b_pre, b_lat = sae.W.detach(), sae.b_pre.detach(), sae.b_lat.detach()
    z_ref = torch.clamp(torch.einsum("kd,bd->bk", W, x - b_pre) + b_lat, min=0)
    xhat_ref = torch.einsum("kd,bk->bd", W, z_ref) + b_pre
    xhat, z = sae(x)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(xhat, xhat_ref)


@pytest.mark.parametrize("arch", ["topk", "batch_topk"])
def test_untied_decoder_rows_are_unit_norm_after_constrain(arch):
    sae = build_sae(SAEConfig(d_in=8, architecture=arch, expansion=2, k=2))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(16, 1) * 5)
    sae.constrain()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))


def test_seed_objective_against_explicit_loop():
    g = torch.Generator().manual_seed(0)
    x, xhat, z = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g), torch.rand(7, 11, generator=g)
    lam = 8.6e-4
    loss, parts = OBJECTIVES["seed"](x, xhat, z, lam)
    xs, xh, zs = x.double().numpy(), xhat.double().numpy(), z.double().numpy()
    mse = np.mean([np.sum((xh[i] - xs[i]) ** 2) / np.sum(xs[i] ** 2) for i in range(7)])
    l1 = np.mean([np.sum(np.abs(zs[i])) / np.sqrt(np.sum(xs[i] ** 2)) for i in range(7)])
    assert float(loss) == pytest.approx(mse + lam * l1, rel=1e-5)
    assert parts["nmse"] == pytest.approx(mse, rel=1e-5)
    assert parts["l1"] == pytest.approx(l1, rel=1e-5)
    loss2, _ = OBJECTIVES["nmse"](x, xhat, z, lam)
    assert float(loss2) == pytest.approx(mse, rel=1e-5)


def test_seed_objective_is_scale_invariant_in_the_mse_term():
    x, xhat, z = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, 6)
    a = OBJECTIVES["seed"](x, xhat, z, 0.0)[0]
    b = OBJECTIVES["seed"](10 * x, 10 * xhat, z, 0.0)[0]
    torch.testing.assert_close(a, b)


def test_metric_accumulator_against_numpy_in_chunks():
    g = np.random.default_rng(1)
    x = g.standard_normal((50, 4)) + 3.0
    xhat = x + 0.3 * g.standard_normal((50, 4))
    z = np.where(g.random((50, 9)) < 0.2, g.random((50, 9)), 0.0)
    z[:, 4] = 0.0  # latent 4 never fires
    acc = MetricAccumulator(4, 9)
    for sl in (slice(0, 13), slice(13, 50)):  # two chunks: sums must stream
        acc.update(torch.tensor(x[sl]), torch.tensor(xhat[sl]), torch.tensor(z[sl]))
    m = acc.result()
    nmse = np.mean(np.sum((xhat - x) ** 2, 1) / np.sum(x**2, 1))
    ev = 1 - np.sum((x - xhat) ** 2) / np.sum((x - x.mean(0)) ** 2)
    assert m.nmse == pytest.approx(nmse, rel=1e-10)
    assert m.explained_variance == pytest.approx(ev, rel=1e-10)
    assert m.l0 == pytest.approx((z != 0).sum(1).mean())
    assert m.dead_fraction == pytest.approx(((z != 0).sum(0) == 0).mean())
    assert m.n_tokens == 50


def test_config_validation_and_differences():
    with pytest.raises(InputError, match="sae.expansion"):
        SAEConfig.from_dict({"d_in": 8, "expansion": 0})
    with pytest.raises(InputError, match="sae.colour"):
        SAEConfig.from_dict({"d_in": 8, "colour": "red"})
    a, b = SAEConfig(d_in=8), SAEConfig(d_in=8, k=4, lr=5e-5)
    assert a.differences(b) == {"k": (32, 4), "lr": (1e-3, 5e-5)}
    assert resolved_objective(a) == "seed"
    assert resolved_objective(SAEConfig(d_in=8, architecture="topk")) == "nmse"
    assert "768" in SAEConfig.model_fields["d_in"].description
