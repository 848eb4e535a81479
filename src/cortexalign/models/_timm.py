"""Any timm model as ``"timm:<name>"`` (Wightman, PyTorch Image Models, 2019).

Layers are timm's ``feature_info`` modules (``blocks.0``..``blocks.11`` for ViTs, ``stages.0``..
for ConvNeXt, ``act1``, ``layer1``.. for ResNets) plus the final output (``logits``, or ``head``
when the model has no classifier). They are read with timm's ``forward_intermediates`` where the
model has it (it stops early and skips the head) and with forward hooks otherwise. ViT-style
models return full token sequences (b, t, d) with the prefix (CLS, register) tokens first.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.models._base import OUTPUT, ModelAdapter, default_layer_paths
from cortexalign.models._clip import clip_to_timm, is_clip_state_dict
from cortexalign.models._hooks import capture_outputs, seeded
from cortexalign.models._hub import timm_hub_overlay
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._registry import MODELS, LoadSpec, options_tag
from cortexalign.models._weights import load_state_dict_checked, read_state_dict

__all__ = ["TimmAdapter", "build_timm", "create_timm", "timm_preprocess"]

# timm name prefixes whose models expect Segment Anything's resize-longest-side-and-pad input
_LONGEST_SIDE_PAD = ("samvit_",)


class TimmAdapter(ModelAdapter):
    """``ModelAdapter`` for timm models, reading ``feature_info`` layers with ``forward_intermediates``."""

    def __init__(self, name: str, model_id: str, module: nn.Module, preprocess: Preprocess,
                 device: torch.device, layers: Sequence[str] | None = None):
        info = _feature_modules(module)
        head = "logits" if getattr(module, "num_classes", 0) else "head"
        # ``layers``: the listed layers (module paths, in forward order) instead of feature_info's
        paths = ({m: m for m in layers} if layers is not None else {m: m for m in info} if info
                 else default_layer_paths(module))
        paths[head] = OUTPUT
        self._head = head
        self._fi_index = {m: i for i, m in enumerate(info)}
        params = (inspect.signature(module.forward_intermediates).parameters
                  if hasattr(module, "forward_intermediates") and info else {})
        self._use_fi = bool(params)
        # layer -> whether forward_intermediates returns exactly the hooked module output (same
        # layout); filled on the first call that asks for the layer (both are computed then)
        self._hook_equal: dict[str, bool] = {}
        self._tokens = "return_prefix_tokens" in params
        self._fi_kwargs = {"output_fmt": "NLC", "return_prefix_tokens": True} if self._tokens else {}
        self._stop_early = "stop_early" in params
        prefix = int(getattr(module, "num_prefix_tokens", 0) or 0) if self._tokens else 0
        super().__init__(name, model_id, module, preprocess, device, prefix, paths)

    def _forward_layers(self, x_bchw: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        others = [n for n in names if n not in self._fi_index and n != self._head]
        fi_names = [n for n in names if n in self._fi_index]
        if not self._use_fi or others or not fi_names:
            return super()._forward_layers(x_bchw, names)
        check = [n for n in fi_names if n in self._module_paths and n not in self._hook_equal]
        if not check and self._head not in names and all(self._hook_equal.get(n, False)
                                                         for n in fi_names):
            # the same tensors through hooks: no split and re-concatenation of the prefix
            # tokens of every block (a copy of each block's output per batch)
            return super()._forward_layers(x_bchw, names)
        idx = sorted({self._fi_index[n] for n in fi_names})
        with capture_outputs(self.module, check) as hooked:
            if self._head in names:
                final, inter = self.module.forward_intermediates(x_bchw, indices=idx,
                                                                 **self._fi_kwargs)
                head_out = self.module.forward_head(final)
            else:
                kw = dict(self._fi_kwargs, stop_early=True) if self._stop_early else self._fi_kwargs
                inter = self.module.forward_intermediates(x_bchw, indices=idx,
                                                          intermediates_only=True, **kw)
                head_out = None
        by_index = dict(zip(idx, (self._join_prefix(t) for t in inter), strict=True))
        out = {n: by_index[self._fi_index[n]] for n in fi_names}
        if head_out is not None:
            out[self._head] = head_out
        if check:
            for n in check:
                self._hook_equal[n] = (out[n].shape == hooked[n].shape
                                       and torch.allclose(out[n], hooked[n], rtol=1e-4, atol=1e-5))
            bad = [n for n in check if not _same_values(out[n], hooked[n])]
            if bad:
                warnings.warn(f"{self.model_id}: forward_intermediates outputs do not match the "
                              f"feature_info modules {bad}; using forward hooks instead",
                              stacklevel=3)
                self._use_fi = False
                return super()._forward_layers(x_bchw, names)
        return out

    @staticmethod
    def _join_prefix(t: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if isinstance(t, tuple):  # (spatial tokens, prefix tokens) -> prefix first
            spatial_btd, prefix_bpd = t
            return torch.cat([prefix_bpd, spatial_btd], dim=1)
        return t


def _feature_modules(module: nn.Module) -> list[str]:
    info = getattr(module, "feature_info", None)
    if info is None:
        return []
    dicts = info.get_dicts() if hasattr(info, "get_dicts") else info
    names = [d["module"] for d in dicts if isinstance(d, Mapping) and d.get("module")]
    return list(dict.fromkeys(names))


def _same_values(fi_out: torch.Tensor, hook_out: torch.Tensor) -> bool:
    """Whether a forward_intermediates output holds the hooked module's output, up to layout
    (NHWC -> NCHW, tokens -> NCHW without prefix tokens)."""
    candidates = [hook_out]
    if hook_out.ndim == 4:
        candidates.append(hook_out.permute(0, 3, 1, 2))
    if hook_out.ndim == 3 and fi_out.ndim == 4:
        hw = fi_out.shape[2] * fi_out.shape[3]
        candidates.append(hook_out[:, -hw:].transpose(1, 2).reshape(fi_out.shape))
    return any(c.shape == fi_out.shape and torch.allclose(c, fi_out, rtol=1e-4, atol=1e-5)
               for c in candidates)


def timm_preprocess(module: nn.Module, arch: str, kwargs: Mapping[str, Any]) -> Preprocess:
    """Preprocessing from timm's ``resolve_data_config``, with the input size the model was built for."""
    cfg = resolve_data_config({}, model=module)
    size = tuple(cfg["input_size"][1:])
    if "img_size" in kwargs:  # timm's pretrained_cfg keeps the default size
        img_size = kwargs["img_size"]
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    resize = ("longest_side_pad" if arch.startswith(_LONGEST_SIDE_PAD)
              else "stretch" if cfg.get("crop_mode") == "squash" else "shorter_side_center_crop")
    interpolation = cfg.get("interpolation", "bicubic")
    return Preprocess(size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), resize=resize,
                      crop_pct=float(cfg.get("crop_pct") or 1.0),
                      interpolation=interpolation if interpolation in ("bilinear", "nearest") else "bicubic")


def create_timm(arch: str, spec: LoadSpec, kwargs: Mapping[str, Any]) -> nn.Module:
    """Build timm ``arch`` with the weights ``spec`` asks for (hub, file or seeded untrained)."""
    if not timm.is_model(arch):
        raise UnknownNameError("timm model", arch, timm.list_models(),
                               fix="use a name from timm.list_models(), e.g. 'resnet18'")
    # hub weights: fails at once when neither cached nor reachable (no retries)
    overlay = timm_hub_overlay(arch) if spec.source == "default" else {}
    try:
        if spec.source == "default":
            return timm.create_model(arch, pretrained=True, **kwargs,
                                     **({"pretrained_cfg_overlay": overlay} if overlay else {}))
        with seeded(spec.seed):
            module = timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as err:
        raise InputError("kwargs", f"options accepted by timm's {arch}", repr(dict(kwargs)),
                         f"remove or fix the option ({err})") from err
    except Exception as err:  # hub download: network, missing files, HF errors of all kinds
        raise InputError(
            "pretrained", f"timm hub weights for {arch!r}",
            f"a failed download ({type(err).__name__}: {str(err)[:200]})",
            "no hub is reachable offline: pass weights=PATH (a local .safetensors or torch "
            "state_dict file), or untrained=True for the untrained control") from err
    if spec.source == "file":
        state_dict = read_state_dict(spec.weights)
        if is_clip_state_dict(state_dict):  # OpenAI's release or open_clip's layout
            state_dict = clip_to_timm(state_dict, module, repr(str(spec.weights)))
        load_state_dict_checked(module, state_dict, repr(str(spec.weights)))
    return module


def _model_id(spec: LoadSpec, module: nn.Module, kwargs: Mapping[str, Any]) -> str:
    opts = options_tag(kwargs)
    if spec.source == "default":
        tag = (getattr(module, "pretrained_cfg", None) or {}).get("tag")
        return f"{spec.name}{opts}@hub" + (f":{tag}" if tag else "")
    return f"{spec.name}{opts}{spec.variant()}"


@MODELS.register_prefix(
    "timm",
    description="Any timm architecture (hub weights online, weights=PATH offline, untrained=True)",
    layers="timm feature_info modules (blocks.i / stages.i / layer1..), then logits",
    weights="timm hub (needs network) or a local checkpoint",
    tiny={"name": "timm:resnet10t", "untrained": True},
)
def build_timm(spec: LoadSpec, **kwargs: Any) -> TimmAdapter:
    """Build ``timm:<arch>``; ``kwargs`` go to ``timm.create_model`` (e.g. ``img_size=32``)."""
    module = create_timm(spec.arch, spec, kwargs)
    return TimmAdapter(spec.name, _model_id(spec, module, kwargs), module,
                       timm_preprocess(module, spec.arch, kwargs), spec.device)
