"""Contract tests over every tiny registered model, plus family-specific behaviour."""

import pytest
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.spiking.models import SNN_MODELS, create_snn

TINY = [n for n in SNN_MODELS if n.endswith("_tiny")]


def _model(name, **kw):
    torch.manual_seed(0)
    return create_snn(name, **kw)


@pytest.mark.parametrize("name", TINY)
def test_shapes_static_and_sequence_input(name):
    m = _model(name).eval()
    x = torch.randn(2, 3, 16, 16)
    assert m(x).shape == (2, 10)
    x_T = x.unsqueeze(0).expand(2, *x.shape)
    # a static image repeated over T is exactly the (T, B, ...) input
    torch.testing.assert_close(m(x), m(x_T))
    assert len(m.forward_heads(x)) == len(m.loss_weights(len(m.forward_heads(x))))


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 2, 2, 3, 16, 16), (2, 1, 16, 16), (2, 3, 18, 16),
                                   (0, 2, 3, 16, 16)])
def test_bad_input_shapes(name, shape):
    m = _model(name)
    with pytest.raises(InputError, match=r"\(T, B, 3, H, W\)|T >= 1") as err:
        m(torch.zeros(shape))
    assert err.value.parameter == "x"


def test_nan_input_and_unknown_names():
    m = _model("hst_tiny")
    with pytest.raises(InputError, match="finite"):
        m(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(UnknownNameError, match="spiliformer_tiny"):
        create_snn("spiliformer_tinny")
    with pytest.raises(UnknownNameError, match="embed_dim"):
        create_snn("hst_tiny", embed_dims=64)
    with pytest.raises(InputError, match="time_steps"):
        create_snn("hst_tiny", time_steps=0)


@pytest.mark.parametrize("name", TINY)
def test_gradient_reaches_every_parameter(name):
    m = _model(name)
    # attention neurons fire rarely at initialisation; a low threshold makes every path active
    for mod in m.modules():
        if hasattr(mod, "attn_lif"):
            mod.attn_lif.v_threshold = 0.01
    x = torch.randn(4, 3, 16, 16) * 2
    loss, _ = m.loss(x, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    dead = [k for k, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def _two_class_task(n=16, seed=0):
    """Class 0 bright in the left half, class 1 in the right half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.3
    x[y == 0, :, :, :8] += 1.5
    x[y == 1, :, :, 8:] += 1.5
    return x, y


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_learns_separable_task(name):
    m = _model(name, num_classes=2)
    x, y = _two_class_task()
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    losses = []
    for _ in range(20):  # 12 left spiliformer_tiny 1% from the bar on another CPU
        loss, _ = m.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses


def test_tdformer_subnets_and_weights():
    m = _model("tdformer_tiny", time_steps=4, n_subnets=2)
    assert len(m.forward_heads(torch.randn(2, 3, 16, 16))) == 2
    w = m.loss_weights(4)
    assert abs(sum(w) - 1) < 1e-12 and w == sorted(w) and w[0] < w[-1]
    with pytest.raises(InputError, match="n_subnets"):
        m(torch.randn(3, 2, 3, 16, 16))  # T=3 not divisible by 2
    with pytest.raises(InputError, match="subnet_weights"):
        create_snn("tdformer_tiny", n_subnets=2, subnet_weights=(0.5, 0.6))


def test_tdformer_topdown_changes_later_subnets_only():
    m = _model("tdformer_tiny", time_steps=2)
    for blk in m.stage3.blocks:
        blk.attn.attn_lif.v_threshold = 0.01
    x = torch.randn(2, 3, 16, 16) * 2
    heads = m.forward_heads(x)
    with torch.no_grad():
        for p in m.pm.parameters():
            p.add_(torch.randn_like(p))
    heads2 = m.forward_heads(x)
    torch.testing.assert_close(heads[0], heads2[0])  # the first sub-network has no top-down input
    assert not torch.allclose(heads[1], heads2[1])


def test_spiliformer_two_passes_and_feedback_matters():
    m = _model("spiliformer_tiny")  # train mode: batch norm keeps activity up at initialisation
    for blk in m.stage3.blocks:
        blk.attn.attn_lif.v_threshold = 0.01  # keep the attention path active at initialisation
    x = torch.randn(2, 3, 16, 16) * 2
    h1, h2 = m.forward_heads(x)
    assert m.loss_weights(2) == [0.5, 0.5]
    with torch.no_grad():
        for blk in m.stage3.blocks:
            blk.attn.fb_bn.bias.add_(3.0)
    g1, g2 = m.forward_heads(x)
    torch.testing.assert_close(h1, g1)  # pass 1 ignores the feedback branch
    assert not torch.allclose(h2, g2)
