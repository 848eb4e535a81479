"""OpenAI's and open_clip's official CLIP checkpoint formats load onto timm's QuickGELU ViT-B/16.

The official architecture is built from the installed ``open_clip`` package (ViT-B/16 geometry:
width 768, patch 16, 224 px, 12 heads; two blocks instead of twelve to stay fast) with random
weights, saved the way each project ships it (OpenAI: a TorchScript archive from
``torch.jit.trace``; open_clip: a ``torch.save`` state dict and a safetensors file), loaded through
``cortexalign.models.load_model`` and compared on image features.
"""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from cortexalign.errors import InputError
from cortexalign.models import load_model
from cortexalign.models._torchscript import read_torchscript_tensors

open_clip_model = pytest.importorskip("open_clip.model", reason="open-clip-torch (dev extra)")

ARCH = "timm:vit_base_patch16_clip_quickgelu_224"
DEPTH = 2


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    model = open_clip_model.CLIP(
        512, vision_cfg=dict(layers=DEPTH, width=768, patch_size=16, image_size=224, head_width=64),
        text_cfg=dict(layers=1, width=64, heads=1, context_length=77, vocab_size=49408),
        quick_gelu=True).eval()
    with torch.no_grad():  # random, not init-like, values everywhere (biases and norms too)
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    img = torch.randn(2, 3, 224, 224)
    text = torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace_module(model, {"encode_image": (img[:1],), "encode_text": (text,)},
                                    check_trace=False)
    torch.jit.save(traced, str(tmp / "ViT-B-16.pt"))
    sd = model.state_dict()
    torch.save(sd, tmp / "open_clip_pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / "open_clip_model.safetensors"))
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp / "ddp.bin")
    with torch.no_grad():
        ref = model.encode_image(img)
        ref_jit = torch.jit.load(str(tmp / "ViT-B-16.pt")).encode_image(img)
    return tmp, img, ref, ref_jit


@pytest.mark.parametrize("fname", ["ViT-B-16.pt", "open_clip_pytorch_model.bin",
                                   "open_clip_model.safetensors", "ddp.bin"])
def test_official_formats_give_the_official_image_features(official, fname):
    tmp, img, ref, ref_jit = official
    adapter = load_model(ARCH, weights=tmp / fname, depth=DEPTH, device="cpu")
    got = adapter.forward_layers(img, ["logits"])["logits"]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, ref_jit, rtol=1e-5, atol=1e-5)
    assert adapter.model_id.endswith(f"@file:{fname}")


def test_torchscript_reader_keeps_dtypes_and_names(tmp_path):
    lin = torch.nn.Linear(3, 2).half()
    torch.jit.save(torch.jit.script(lin), str(tmp_path / "half.pt"))
    got = read_torchscript_tensors(tmp_path / "half.pt")
    assert set(got) == {"weight", "bias"} and got["weight"].dtype == torch.float16
    torch.testing.assert_close(got["weight"], lin.weight.detach(), rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_archive_with_code_in_its_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"x": _Evil()}, protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(InputError, match=r"refers to .*print"):
        read_torchscript_tensors(path)
    assert "code ran" not in capsys.readouterr().out
    (tmp_path / "plain.pt").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="TorchScript"):
        read_torchscript_tensors(tmp_path / "plain.pt")


def test_clip_weights_into_a_cnn_are_refused(official):
    tmp = official[0]
    with pytest.raises(InputError, match="VisionTransformer"):
        load_model("timm:resnet10t", weights=tmp / "open_clip_model.safetensors", device="cpu")
