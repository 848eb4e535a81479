"""torchvision prefix: hooked layers, weights (file, hub offline, weights_only), preprocessing
against torchvision's own transforms, layer order, public extraction."""

from __future__ import annotations

import os
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import get_model_weights

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import extract_features
from cortexalign.models import load_model
from cortexalign.stimuli import load_stimuli


@pytest.fixture(scope="module")
def resnet18():
    return load_model("torchvision:resnet18", untrained=True, seed=1, device="cpu")


@pytest.fixture(scope="module")
def alexnet():
    return load_model("torchvision:alexnet", untrained=True, device="cpu")


def _manual_capture(module: torch.nn.Module, x: torch.Tensor, paths: list[str]) -> dict:
    """Forward hooks registered by hand, independent of the adapter's capture code."""
    modules, got = dict(module.named_modules()), {}
    handles = [modules[p].register_forward_hook(lambda _m, _i, o, p=p: got.__setitem__(p, o))
               for p in paths]
    try:
        with torch.inference_mode():
            out = module(x)
    finally:
        for h in handles:
            h.remove()
    return got, out


@pytest.mark.parametrize("fixture", ["resnet18", "alexnet"])
def test_hooked_layers_equal_a_manual_capture(fixture, request):
    adapter = request.getfixturevalue(fixture)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    layers = adapter.layers()
    out = adapter.forward_layers(x, layers)
    ref, logits = _manual_capture(adapter.module, x, layers[:-1])
    for name in layers[:-1]:
        assert torch.equal(out[name], ref[name]), name
    assert torch.equal(out["logits"], logits)
    alone = adapter.forward_layers(x, [layers[2]])  # early-stopping path
    assert torch.equal(alone[layers[2]], ref[layers[2]])


def test_layer_lists_follow_the_architecture_in_forward_order(resnet18, alexnet):
    stages = [n for i in range(1, 5) for n in (f"layer{i}.0", f"layer{i}.1", f"layer{i}")]
    assert resnet18.layers() == ["conv1", "bn1", "relu", "maxpool", *stages, "avgpool", "logits"]
    # AlexNet: conv/relu/pool stages, the classifier without its dropouts, logits for classifier.6
    assert alexnet.layers() == ([f"features.{i}" for i in range(13)]
                                + ["avgpool", "classifier.1", "classifier.2", "classifier.4",
                                   "classifier.5", "logits"])


@pytest.mark.parametrize("arch", ["densenet121", "mobilenet_v3_small", "googlenet"])
def test_layers_are_in_the_order_their_modules_finish(arch):
    adapter = load_model(f"torchvision:{arch}", untrained=True, device="cpu")
    modules = dict(adapter.module.named_modules())
    order: list[str] = []
    names = adapter.layers()[:-1]
    handles = [modules[n].register_forward_hook(lambda *_, n=n: order.append(n)) for n in names]
    try:
        with torch.inference_mode():
            adapter.module(torch.zeros(1, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    assert order == names  # each ran once, in list order (googlenet's aux heads left out)
    assert adapter.layers()[-1] == "logits"


def test_vit_token_layers_have_the_class_token_first():
    adapter = load_model("torchvision:vit_b_16", untrained=True, device="cpu", image_size=32)
    assert adapter.num_prefix_tokens == 1 and adapter.preprocess.size == (32, 32)
    x = torch.randn(2, 3, 32, 32)
    block = "encoder.layers.encoder_layer_0"
    assert block in adapter.layers() and "encoder.ln" in adapter.layers()
    feats = adapter.forward_layers(x, ["conv_proj", block])
    assert feats[block].shape == (2, 1 + 4, 768)  # class token + 2 x 2 patches
    # torchvision prepends the class token before adding position embeddings: position 0
    enc = adapter.module.encoder
    with torch.inference_mode():
        seq = adapter.module._process_input(x)
        seq = torch.cat([adapter.module.class_token.expand(2, -1, -1), seq], dim=1)
        ref = enc.layers[0](enc.dropout(seq + enc.pos_embedding))
    torch.testing.assert_close(feats[block], ref)


def test_swin_channels_last_maps_are_returned_channels_first():
    adapter = load_model("torchvision:swin_t", untrained=True, device="cpu")
    x = torch.randn(1, 3, 64, 64)
    out = adapter.forward_layers(x, ["features.1", "norm"])
    ref, _ = _manual_capture(adapter.module, x, ["features.1", "norm"])
    for name in out:
        assert torch.equal(out[name], ref[name].permute(0, 3, 1, 2))
    assert out["features.1"].shape == (1, 96, 16, 16)
    # any submodule path inside the channels-last part is returned channels-first too; the patch
    # embedding's convolution already is
    sub = adapter.forward_layers(x, ["features.1.1", "features.1.0.mlp", "features.0.0"])
    assert torch.equal(sub["features.1.1"], out["features.1"])  # the stage's last block
    assert sub["features.1.0.mlp"].shape == (1, 96, 16, 16)
    conv, _ = _manual_capture(adapter.module, x, ["features.0.0"])
    assert torch.equal(sub["features.0.0"], conv["features.0.0"])


def test_weights_file_round_trip_and_pickle_refused(resnet18, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(resnet18.module.state_dict(), path)  # the layout of torchvision's own .pth files
    loaded = load_model("torchvision:resnet18", weights=path, device="cpu")
    assert loaded.model_id == "torchvision:resnet18@file:w.pth"
    assert loaded.weights_digest == resnet18.weights_digest
    x = torch.randn(2, 3, 224, 224)
    a, b = resnet18.forward_layers(x, ["layer3", "logits"]), loaded.forward_layers(x, ["layer3", "logits"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    evil = tmp_path / "model.pth"
    torch.save(resnet18.module, evil)  # a whole pickled module, not a state_dict
    with pytest.raises(InputError, match="unpickling") as err:
        load_model("torchvision:resnet18", weights=evil)
    assert err.value.parameter == "weights"


def test_untrained_is_seeded_and_named(resnet18):
    state = torch.random.get_rng_state()
    again = load_model("torchvision:resnet18", pretrained=False, seed=1, device="cpu")
    other = load_model("torchvision:resnet18", untrained=True, seed=2, device="cpu")
    assert torch.equal(state, torch.random.get_rng_state())
    assert again.model_id == resnet18.model_id == "torchvision:resnet18@untrained-seed1"
    assert again.weights_digest == resnet18.weights_digest != other.weights_digest


def _hub_loader(monkeypatch, load):
    """Replace torchvision's download (torch.hub.load_state_dict_from_url) for the test."""
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", load)


def test_offline_default_weights_raise_with_the_fix(monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    _hub_loader(monkeypatch, offline)
    with pytest.raises(InputError) as err:
        load_model("torchvision:alexnet", device="cpu")
    e = err.value
    assert e.parameter == "pretrained" and "URLError" in e.received
    url = get_model_weights("alexnet").DEFAULT.url
    assert url in e.fix and "weights=PATH" in e.fix and "untrained=True" in e.fix


UNPICKLED: list[str] = []


class Canary:
    """Records when it is unpickled: a weights_only load refuses it before that."""

    def __setstate__(self, state):
        UNPICKLED.append("ran")


def test_default_weights_load_weights_only(monkeypatch, resnet18, tmp_path):
    """torch.hub passes weights_only=False; the adapter forces weights_only loads around it."""
    good, evil = tmp_path / "good.pth", tmp_path / "evil.pth"
    torch.save(resnet18.module.state_dict(), good)
    torch.save({**resnet18.module.state_dict(), "canary": Canary()}, evil)
    _hub_loader(monkeypatch, lambda url, *a, **kw: torch.load(good, weights_only=False))
    hub = load_model("torchvision:resnet18", device="cpu")
    assert hub.model_id == "torchvision:resnet18@hub:IMAGENET1K_V1"
    assert hub.weights_digest == resnet18.weights_digest
    _hub_loader(monkeypatch, lambda url, *a, **kw: torch.load(evil, weights_only=False))
    with pytest.raises(InputError, match="pretrained") as err:
        load_model("torchvision:resnet18", device="cpu")
    assert UNPICKLED == [] and "Unpickl" in err.value.received  # refused before running code
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_unknown_arch_and_bad_kwargs():
    with pytest.raises(UnknownNameError) as err:
        load_model("torchvision:resnet1B", untrained=True)
    assert "resnet18" in err.value.matches
    with pytest.raises(UnknownNameError):  # detection models are not served
        load_model("torchvision:fasterrcnn_resnet50_fpn", untrained=True)
    with pytest.raises(InputError, match="kwargs"):
        load_model("torchvision:resnet18", untrained=True, not_an_option=1)
    with pytest.raises(InputError, match="kwargs"):  # the ImageNet weights fix num_classes
        load_model("torchvision:resnet18", num_classes=10)


@pytest.mark.parametrize(("arch", "hw"), [("alexnet", (256, 320)), ("swin_t", (232, 300))])
def test_preprocess_equals_torchvision_transforms_on_a_pil_image(arch, hw):
    """Shorter side already at resize_size, even crop margins: the same pixels reach both, and
    the crop and normalisation agree to float rounding."""
    adapter = load_model(f"torchvision:{arch}", untrained=True, device="cpu")
    transforms = get_model_weights(arch).DEFAULT.transforms()
    img = np.random.default_rng(0).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ours = adapter.preprocess([img])[0]
    ref = transforms(Image.fromarray(img))
    assert ours.shape == ref.shape == (3, 224, 224)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_preprocess_resize_matches_torchvision(alexnet):
    """A bundled stimulus upsampled 175 -> 256 (bilinear): exact against torchvision's transform
    on float pixels; within one grey level against the PIL path (PIL rounds to uint8)."""
    img = np.asarray(load_stimuli("kriegeskorte92").image(0))
    transforms = get_model_weights("alexnet").DEFAULT.transforms()
    ours = alexnet.preprocess([img])[0]
    on_float = transforms(torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(ours, on_float, rtol=0, atol=1e-5)
    on_pil = transforms(Image.fromarray(img))
    assert (ours - on_pil).abs().max() <= 1.01 / 255 / min(transforms.std)


@pytest.mark.parametrize("fixture", ["alexnet", "resnet18"])
def test_extract_features_on_bundled_stimuli(fixture, request):
    adapter = request.getfixturevalue(fixture)
    stimuli = load_stimuli("kriegeskorte92")
    stimuli = stimuli.subset(list(stimuli.ids[:4]))
    layers = [adapter.layers()[1], adapter.layers()[-3], "logits"]
    feats = extract_features(adapter, stimuli, layers, pooling="mean", batch_size=2,
                             progress=False)
    assert list(feats) == layers
    x = adapter.preprocess([np.asarray(stimuli.image(i)) for i in range(4)])
    raw = adapter.forward_layers(x, layers)
    for name, f in feats.items():
        assert f.values.shape[0] == 4 and np.isfinite(f.values).all()
        ref = raw[name].flatten(2).mean(-1) if raw[name].ndim == 4 else raw[name]
        np.testing.assert_allclose(f.values, ref.numpy(), rtol=1e-4, atol=1e-5)
        assert f.model_id == adapter.model_id
