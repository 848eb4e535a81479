"""Model configurations and the registry of named spiking-transformer sizes.

``hst_{L}_{D}`` follows QKFormer's hierarchical spiking transformer (Zhou et al. 2024):
three stages at widths D/4, D/2, D; token attention in stages 1-2, SSA in stage 3.
Block splits per stage are ours where the papers do not give them: 10-768 = 1+2+7
(METHODS.md), 4-384 = 1+1+2. CIFAR sizes keep 32 x 32 inputs at full resolution in
stage 1 (``stem_stride=1``, 8 x 8 tokens in stage 3, as QKFormer's patch size 4);
ImageNet sizes downsample by 4 in the stem (14 x 14 tokens in stage 3 at 224 px).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.registry import Registry
from cortexalign.spiking.attention import ATTENTIONS, CONTROLS
from cortexalign.spiking.neurons import LIF_KERNELS, SURROGATES

__all__ = ["HSTConfig", "SNN_MODELS", "FAMILIES", "snn_config"]

FAMILIES = ("hst", "spiliformer", "tdformer")


@dataclass(frozen=True)
class HSTConfig:
    """Architecture of a hierarchical spiking transformer and its SpiLiFormer/TDFormer variant."""

    embed_dim: int
    """D, the width of stage 3 (stages 1 and 2 are D/4 and D/2)."""
    depths: tuple[int, int, int]
    """Number of transformer blocks in stages 1, 2 and 3."""
    num_heads: int
    """Attention heads in every stage."""
    family: str = "hst"
    """``hst`` (QKFormer baseline), ``spiliformer`` or ``tdformer``."""
    attention: tuple[str, str, str] = ("token_qk", "token_qk", "ssa")
    """Attention variant per stage, names in ``ATTENTIONS``."""
    mlp_ratio: float = 4.0
    """Hidden width of the spiking MLP relative to the block width."""
    in_chans: int = 3
    """Input image channels."""
    num_classes: int = 10
    """Classes of the classification head."""
    time_steps: int = 4
    """T, the number of time steps a static (B, C, H, W) image is repeated over."""
    stem_stride: int = 1
    """Downsampling of the stem before stage 1 (1, 2 or 4); stages 2 and 3 halve again."""
    surrogate: str = "sigmoid"
    """Surrogate gradient of every neuron (``SURROGATES``)."""
    backend: str = "auto"
    """LIF kernel (``LIF_KERNELS`` or ``auto``)."""
    inhibition: str = "head"
    """SpiLiFormer feed-forward inhibition scope: ``head`` or ``global``."""
    feedback_clamp: tuple[float, float] = (0.0, 1.0)
    """SpiLiFormer clamp bounds of the prompted feedback ``clamp(X' y)``."""
    pass1_weight: float = 0.5
    """SpiLiFormer alpha in ``alpha CE(pass 1) + (1 - alpha) CE(pass 2)``."""
    detach_feedback: bool = False
    """SpiLiFormer: stop gradients from pass 2 into pass 1 through the feedback."""
    control: str = "cm1"
    """TDFormer control module: ``cm1`` (key), ``cm2`` (value) or ``cm3`` (added to input)."""
    n_subnets: int | None = None
    """TDFormer sub-networks the time steps are split into; None: one per time step."""
    subnet_weights: tuple[float, ...] | None = None
    """TDFormer loss weights per sub-network (sum 1); None: linearly increasing, n / sum(1..N)."""
    pm_bounds: tuple[float, float] = (0.0, 1.0)
    """TDFormer processing-module clamp bounds (b, a)."""
    pm_gate: str = "token"
    """TDFormer processing-module gate: ``token`` (sum over channels) or ``channel``."""

    def __post_init__(self):
        def bad(param, expected, received, fix):
            raise InputError(param, expected, repr(received), fix)

        if self.family not in FAMILIES:
            raise UnknownNameError("model family", self.family, FAMILIES)
        if self.time_steps < 1:
            bad("time_steps", "an integer >= 1", self.time_steps, "use T=4 (the papers' value)")
        if self.embed_dim % 4 or (self.embed_dim // 4) % self.num_heads:
            bad("embed_dim", f"a multiple of 4 * num_heads ({4 * self.num_heads})", self.embed_dim,
                "choose embed_dim so that every stage width divides into the heads")
        if len(self.depths) != 3 or min(self.depths) < 1:
            bad("depths", "three block counts >= 1", self.depths, "e.g. (1, 1, 2)")
        if self.stem_stride not in (1, 2, 4):
            bad("stem_stride", "1, 2 or 4", self.stem_stride, "use 1 for CIFAR, 4 for ImageNet")
        for a in self.attention:
            if a not in ATTENTIONS:
                raise UnknownNameError("attention", a, ATTENTIONS)
        if self.surrogate not in SURROGATES:
            raise UnknownNameError("surrogate", self.surrogate, SURROGATES)
        if self.backend != "auto" and self.backend not in LIF_KERNELS:
            raise UnknownNameError("LIF backend", self.backend, [*LIF_KERNELS, "auto"])
        if self.control not in CONTROLS[1:]:
            raise UnknownNameError("control module", self.control, CONTROLS[1:])
        if not 0.0 <= self.pass1_weight <= 1.0:
            bad("pass1_weight", "a weight in [0, 1]", self.pass1_weight, "use 0.5")
        if self.n_subnets is not None and self.n_subnets < 1:
            bad("n_subnets", "None or an integer >= 1", self.n_subnets, "use None")
        if self.subnet_weights is not None:
            if self.n_subnets is None or len(self.subnet_weights) != self.n_subnets:
                bad("subnet_weights", "one weight per sub-network (n_subnets set)",
                    self.subnet_weights, "set n_subnets or drop subnet_weights")
            if abs(sum(self.subnet_weights) - 1.0) > 1e-6 or min(self.subnet_weights) < 0:
                bad("subnet_weights", "non-negative weights summing to 1", self.subnet_weights,
                    "normalise the weights")

    @property
    def stage_dims(self) -> tuple[int, int, int]:
        """Channel widths of the three stages (d/4, d/2, d)."""
        d = self.embed_dim
        return (d // 4, d // 2, d)

    @property
    def lif(self) -> dict:
        """The LIF neuron options (surrogate, backend)."""
        return {"surrogate": self.surrogate, "backend": self.backend}


SNN_MODELS: Registry[HSTConfig] = Registry("spiking model")

_FAMILY_DEFAULTS = {
    "hst": {},
    "spiliformer": {"family": "spiliformer", "attention": ("ff_li", "ff_li", "fb_li")},
    "tdformer": {"family": "tdformer"},
}
_SIZES = {
    # name: (config, description)
    "tiny": (dict(embed_dim=32, depths=(1, 1, 1), num_heads=2, time_steps=2, stem_stride=1),
             "tiny test size (D=32, 1+1+1 blocks, T=2)"),
    "4_384": (dict(embed_dim=384, depths=(1, 1, 2), num_heads=8, time_steps=4, stem_stride=1),
              "CIFAR size HST-4-384, T=4"),
    "10_768": (dict(embed_dim=768, depths=(1, 2, 7), num_heads=12, time_steps=4, stem_stride=4,
                    num_classes=1000), "ImageNet size HST-10-768, T=4"),
}
_CITATIONS = {
    "hst": "Zhou et al. 2024, QKFormer (NeurIPS)",
    "spiliformer": "Zheng et al. 2025, SpiLiFormer (ICCV), arXiv 2503.15986",
    "tdformer": "Zhu et al. 2025, TDFormer, arXiv 2505.15840",
}
for _fam, _extra in _FAMILY_DEFAULTS.items():
    for _size, (_cfg, _desc) in _SIZES.items():
        SNN_MODELS.add(f"{_fam}_{_size}", HSTConfig(**_cfg, **_extra),
                       description=f"{_fam} {_desc}", citation=_CITATIONS[_fam])


def snn_config(name: str, **overrides) -> HSTConfig:
    """The registered configuration ``name`` with ``overrides`` applied (validated)."""
    base = SNN_MODELS.get(name)
    known = {f.name for f in fields(HSTConfig)}
    for key in overrides:
        if key not in known:
            raise UnknownNameError("model option", key, known)
    for key in ("depths", "attention", "feedback_clamp", "pm_bounds", "subnet_weights"):
        if overrides.get(key) is not None:
            overrides[key] = tuple(overrides[key])
    return replace(base, **overrides)
