"""Offline EfficientNet-Lite0: key mapping complete, real ImageNet predictions, TF preprocessing."""

from __future__ import annotations

import pytest
import timm
import torch
from skimage import data

from cortexalign.models import convert_lite0_state_dict, load_model, read_state_dict
from cortexalign.models._efficientnet_lite0 import TIMM_ARCH, lite0_checkpoint_path

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0", device="cpu")


def test_mapping_covers_every_tensor_with_matching_shapes():
    src = read_state_dict(lite0_checkpoint_path())
    module = timm.create_model(TIMM_ARCH, pretrained=False)
    converted = convert_lite0_state_dict(src, [len(s) for s in module.blocks])
    own = module.state_dict()
    assert len(converted) == len(src)  # one-to-one renaming
    assert set(converted) == set(own)
    for key, tensor in own.items():
        assert converted[key].shape == tensor.shape, key
    # the tensors are moved, not altered
    assert torch.equal(converted["blocks.1.0.conv_dw.weight"], src["_blocks.1._depthwise_conv.weight"])
    assert torch.equal(converted["classifier.weight"], src["_fc.weight"])


def test_classifies_chelsea_and_coffee(lite0):
    x = lite0.preprocess([data.chelsea(), data.coffee()])
    top5 = lite0.forward_layers(x, ["logits"])["logits"].topk(5).indices.tolist()
    assert CATS & set(top5[0]), f"chelsea (a cat) top-5: {top5[0]}"
    assert COFFEE & set(top5[1]), f"coffee (a cup) top-5: {top5[1]}"


def test_preprocessing_and_padding_match_the_tf_checkpoint(lite0):
    """TF EfficientNet-Lite normalises with (x - 127) / 128 on [0, 255] and uses 'same' padding
    and BatchNorm eps 1e-3; the ported weights only reproduce the reference with these."""
    pre = lite0.preprocess
    for m, s in zip(pre.mean, pre.std, strict=True):
        assert abs(m - 127 / 255) < 0.005 and abs(s - 128 / 255) < 0.005
    assert pre.size == (224, 224) and pre.crop_pct == pytest.approx(224 / 256)
    bns = [m for m in lite0.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(bn.eps == pytest.approx(1e-3) for bn in bns)
    stem = lite0.module.conv_stem
    assert stem.padding == (0, 0) and "Same" in type(stem).__name__


def test_model_ids_and_untrained_control(lite0):
    assert lite0.model_id == "efficientnet_lite0@imagenet"
    control = load_model("efficientnet_lite0", untrained=True, seed=1)
    again = load_model("efficientnet_lite0", untrained=True, seed=1)
    assert control.model_id == "efficientnet_lite0@untrained-seed1"
    assert control.weights_digest == again.weights_digest != lite0.weights_digest
    assert control.layers() == lite0.layers()
