"""Weights: safetensors / torch-file round trips, refusal of pickled objects, key mismatches."""

from __future__ import annotations

import collections

import pytest
import timm
import torch
from safetensors.torch import save_file

from cortexalign.errors import InputError
from cortexalign.models import load_model, state_dict_digest

ARCH = "timm:resnet10t"
KW = {"num_classes": 7}


@pytest.fixture(scope="module")
def source():
    return load_model(ARCH, untrained=True, seed=11, **KW)


def test_round_trip_safetensors_and_torch_file(source, tmp_path):
    sd = source.module.state_dict()
    st_path, pt_path = tmp_path / "w.safetensors", tmp_path / "w.pt"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st_path))
    torch.save({"state_dict": sd}, pt_path)  # a common wrapper, unwrapped on load
    from_st = load_model(ARCH, weights=st_path, **KW)
    from_pt = load_model(ARCH, weights=pt_path, **KW)
    assert from_st.model_id == "timm:resnet10t[num_classes=7]@file:w.safetensors"
    assert from_st.weights_digest == from_pt.weights_digest == source.weights_digest
    x = torch.randn(2, 3, 32, 32)
    ref = source.forward_layers(x, ["layer2", "logits"])
    for other in (from_st, from_pt):
        out = other.forward_layers(x, ["layer2", "logits"])
        for k in ref:
            assert torch.equal(out[k], ref[k])


class NotATensor:
    def __init__(self):
        self.payload = [1, 2, 3]


def test_pickled_object_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(InputError) as err:
        load_model(ARCH, weights=path, **KW)
    msg = str(err.value)
    assert "evil.pt" in msg and "safetensors" in msg and "unpickling" in msg


def test_mismatched_keys_name_the_first_missing_and_unexpected(source, tmp_path):
    sd = collections.OrderedDict(source.module.state_dict())
    sd["extra.weight"] = torch.zeros(1)
    del sd["conv1.0.weight"]
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(InputError) as err:
        load_model(ARCH, weights=path, **KW)
    assert "'conv1.0.weight'" in str(err.value) and "'extra.weight'" in str(err.value)


def test_shape_mismatch_names_the_key(source, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.module.state_dict().items()}, str(path))
    with pytest.raises(InputError, match="fc.weight"):
        load_model(ARCH, weights=path, num_classes=5)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_corrupt_or_missing_files(tmp_path, content, suffix):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_model(ARCH, weights=bad, **KW)
    assert "unpickling" not in str(err.value)
    with pytest.raises(InputError, match="existing"):
        load_model(ARCH, weights=tmp_path / "absent.pt", **KW)


def test_non_state_dict_file(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(InputError, match="state_dict"):
        load_model(ARCH, weights=path, **KW)


def test_pretrained_download_failure_says_pass_weights(monkeypatch):
    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        raise AssertionError("only the pretrained path is exercised here")

    import cortexalign.models._hub as hub

    monkeypatch.setattr(timm, "create_model", offline)
    # the hub answers the probe (so timm is asked), then the download itself fails
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    with pytest.raises(InputError) as err:
        load_model("timm:resnet10t")
    assert "weights=PATH" in str(err.value) and "OSError" in str(err.value)


def test_offline_without_cached_weights_fails_at_once_with_the_fixes(monkeypatch):
    import cortexalign.models._hub as hub

    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")
    monkeypatch.setattr(hub, "cached_hub_file", lambda repo: None)
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("timm was asked"))
    with pytest.raises(InputError) as err:
        load_model("timm:resnet10t")
    assert "cortexalign fetch timm:resnet10t" in str(err.value)
    assert "weights=PATH" in str(err.value)


@pytest.mark.parametrize("kwargs", [
    {"untrained": True, "pretrained": True}, {"untrained": True, "weights": "x.pt"},
    {"pretrained": True, "weights": "x.pt"}, {"seed": -1}, {"seed": 1.5},
])
def test_conflicting_options(kwargs):
    with pytest.raises(InputError):
        load_model(ARCH, **kwargs)


def test_digest_depends_on_names_and_values(source):
    module = source.module
    digest = state_dict_digest(module)
    assert digest == source.weights_digest and len(digest) == 64
    saved = module.fc.bias.detach().clone()
    with torch.no_grad():
        module.fc.bias[0] += 1.0
    try:
        assert state_dict_digest(module) != digest
    finally:
        with torch.no_grad():
            module.fc.bias.copy_(saved)
    assert state_dict_digest(module) == digest
