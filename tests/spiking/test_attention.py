"""Attention variants: explicit-formula references, map shapes, control and processing modules."""

import pytest
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.spiking.attention import ATTENTIONS, ProcessingModule
from cortexalign.spiking.neurons import lif_multistep

T, B, C, N, H = 2, 3, 16, 10, 2


def _x(seed=0):
    return torch.randn(T, B, C, N, generator=torch.Generator().manual_seed(seed)) * 2


def _capture(attn, x, **kw):
    maps = []
    h = attn.attn_probe.register_forward_hook(lambda m, a, o: maps.append(o))
    try:
        y = attn(x, **kw)
    finally:
        h.remove()
    return y, maps


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_output_and_map_shapes(kind):
    torch.manual_seed(0)
    attn = ATTENTIONS[kind](C, H)
    y, maps = _capture(attn, _x())
    assert y.shape == (T, B, C, N)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert len(maps) == 1
    sizes = {"T": T, "B": B, "h": H, "N": N, "d": C // H}
    assert tuple(maps[0].shape) == tuple(sizes[s] for s in attn.map_layout.split())
    y2, maps2 = _capture(attn, _x(1))
    assert maps2 and attn.attn_probe._forward_hooks == {}


def _qkv(attn, x):
    """Q, K, V spikes recomputed from the module's projections, (T, B, h, d, N)."""
    def heads(t):
        return t.reshape(T, B, H, C // H, N)
    out = [heads(attn.q(x)), heads(attn.k(x))]
    if attn.uses_value:
        out.append(heads(attn.v(x)))
    return out


def _attn_spikes(drive):
    return lif_multistep(drive, v_th=0.5, backend="reference")[0]


def _reference(kind, attn, x):
    from cortexalign.spiking.neurons import reset_states
    reset_states(attn)
    qkv = _qkv(attn, x)
    q, k = qkv[0], qkv[1]
    if kind == "token_qk":
        mixed = _attn_spikes(q.sum(3, keepdim=True)) * k
    elif kind == "channel_qk":
        mixed = _attn_spikes(q.sum(4, keepdim=True)) * k
    elif kind == "ff_li":
        d = C // H // 2
        mixed = _attn_spikes(q[:, :, :, :d].sum(3, keepdim=True) - q[:, :, :, d:].sum(3, keepdim=True)) * k
    elif kind == "ssa":
        attn_nn = torch.einsum("tbhdn,tbhdm->tbhnm", q, k) * 0.125
        mixed = _attn_spikes(torch.einsum("tbhnm,tbhdm->tbhdn", attn_nn, qkv[2]))
    else:  # fb_li without feedback: linear-order attention == quadratic order
        attn_nn = torch.einsum("tbhdn,tbhdm->tbhnm", q, k) * 0.125
        mixed = _attn_spikes(torch.einsum("tbhnm,tbhdm->tbhdn", attn_nn, qkv[2]))
    return attn.out(mixed.reshape(T, B, C, N))


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_matches_explicit_formula(kind):
    torch.manual_seed(0)
    attn = ATTENTIONS[kind](C, H).eval()
    for m in attn.modules():  # make batch norm non-trivial but fixed
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_var.fill_(0.05)
    x = _x(2)
    with torch.no_grad():
        y = attn(x)
        ref = _reference(kind, attn, x)
    assert y.sum() > 0
    assert torch.equal(y, ref)


def test_ff_li_inhibitory_half_silences_tokens():
    """Tokens whose query spikes sit only in the inhibitory half get a zero mask."""
    attn = ATTENTIONS["ff_li"](C, H)
    d = C // H
    q = torch.zeros(T, B, H, d, N)
    q[:, :, :, d // 2:, : N // 2] = 1  # inhibitory half active on the first tokens
    q[:, :, :, : d // 2, N // 2:] = 1  # excitatory half active on the last tokens
    k = torch.ones(T, B, H, d, N)
    out = attn._attend(q, k, None)
    assert out[..., : N // 2].sum() == 0 and (out[..., N // 2:] == 1).all()


def test_control_modules():
    torch.manual_seed(0)
    x, td = _x(3), (_x(4) > 0).float()
    for kind, ctrl in [("ssa", "cm1"), ("ssa", "cm2"), ("ssa", "cm3"), ("token_qk", "cm1")]:
        attn = ATTENTIONS[kind](C, H, control=ctrl)
        base = attn(x)
        from cortexalign.spiking.neurons import reset_states
        reset_states(attn)
        assert attn(x, topdown=torch.zeros_like(x)).equal(base)  # no top-down == zeros
    with pytest.raises(InputError, match="cm1 or cm3"):
        ATTENTIONS["token_qk"](C, H, control="cm2")
    with pytest.raises(InputError, match="control"):
        ATTENTIONS["ssa"](C, H)(x, topdown=td)
    with pytest.raises(UnknownNameError):
        ATTENTIONS["ssa"](C, H, control="cm4")
    with pytest.raises(InputError, match="divisor"):
        ATTENTIONS["ssa"](C, 3)


def test_cm1_topdown_enters_key_only():
    torch.manual_seed(0)
    attn = ATTENTIONS["ssa"](C, H, control="cm1")
    x, td = _x(3), (_x(4) > 0).float()
    seen = {}
    for name in ("q", "k", "v"):
        getattr(attn, name).register_forward_hook(lambda m, a, o, n=name: seen.setdefault(n, []).append(o))
    attn(x)
    from cortexalign.spiking.neurons import reset_states
    reset_states(attn)
    attn(x, topdown=td)
    assert seen["q"][0].equal(seen["q"][1]) and seen["v"][0].equal(seen["v"][1])
    assert not seen["k"][0].equal(seen["k"][1])


def test_processing_module_clamps():
    pm = ProcessingModule(C, bounds=(0.0, 1.5))
    x = (_x(5) > 0).float()
    gate = pm.gate(x)
    assert gate.shape == (T, B, 1, N)
    assert pm(x).shape == x.shape
    with pytest.raises(InputError, match="b < a"):
        ProcessingModule(C, bounds=(1.0, 0.0))
    with pytest.raises(InputError, match="feedback"):
        ATTENTIONS["fb_li"](C, H)(_x(), feedback=torch.zeros(T, B, C, N + 1))
