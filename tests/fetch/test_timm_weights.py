"""``timm:<name>``: the file timm would download, fetched into the hub cache timm reads (served
by the local server standing in for huggingface.co), checked against the hub's SHA-256."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save

from cortexalign.fetch import OfflineError, fetch, plan


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    return tmp_path / "hub"


def test_timm_weights_land_in_the_hub_cache_timm_reads(server, home, hub_cache, monkeypatch):
    import huggingface_hub.constants as hf
    import timm

    srv, base = server
    model = timm.create_model("resnet10t", pretrained=False)
    body = save(model.state_dict())
    srv.add("/timm/resnet10t.c3_in1k/resolve/main/model.safetensors", body, hub=True)
    assert plan("timm:resnet10t", mirror=base).present == [False]
    result = fetch("timm:resnet10t", mirror=base)
    got = result.files[0]
    assert got.checked == "hub sha256" and got.path.read_bytes() == body
    assert str(got.path).startswith(str(hub_cache))  # one cache: the hub's
    # timm itself now loads it offline from that cache
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    loaded = timm.create_model("resnet10t", pretrained=True)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert fetch("timm:resnet10t", mirror=base).files[0].status == "present"
    assert len(srv.gets("/timm/resnet10t.c3_in1k/resolve/main/model.safetensors")) == 1


def test_timm_weights_offline_fail_at_once(home, hub_cache, monkeypatch, no_network):
    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")
    with pytest.raises(OfflineError, match="run `cortexalign fetch timm:resnet10t`"):
        fetch("timm:resnet10t")



def test_timm_model_default_weights_offline_name_the_fetch_command(home, hub_cache, monkeypatch,
                                                                   no_network):
    """``load_model('timm:<name>')`` offline (CORTEXALIGN_OFFLINE=1 too) without the weights in
    the hub cache: an error at once whose fix is the fetch command."""
    from cortexalign.errors import InputError
    from cortexalign.models import load_model

    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")
    with pytest.raises(InputError, match="run `cortexalign fetch timm:resnet10t`"):
        load_model("timm:resnet10t", device="cpu")
