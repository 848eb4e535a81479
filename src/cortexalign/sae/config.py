"""The SAE configuration: a frozen pydantic model with a docstring per field.

The defaults follow the SAE-BrainMap seed (METHODS.md section 2): a ReLU SAE with a tied decoder
and a pre-bias, 16x expansion, the normalised-MSE + scaled-L1 objective, AdamW. Ours, with the
reasons in the fields' docs: lambda 0.1 (the paper's 8.6e-4 gives dense codes), inputs scaled to
E||x||^2 = d, lr 1e-3, lambda warmed up over 200 steps. The seed's batch was 512 images (~100k tokens); the default here is
smaller so that a laptop can run it; ``configs/sae_brainmap.yaml`` sets the seed's values.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from cortexalign.errors import InputError

__all__ = ["SAEConfig"]


class SAEConfig(BaseModel):
    """Everything that determines an SAE's architecture and its training."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    d_in: int
    """Width d of the activations (768 for CLIP ViT-B/16)."""
    architecture: str = "relu_tied"
    """A name in ``SAE_ARCHITECTURES``: ``relu_tied`` (the seed), ``topk`` or ``batch_topk``."""
    expansion: int = 16
    """Latents per input dimension: the SAE has ``expansion * d_in`` latents (16 x 768 = 12,288)."""
    k: int = 32
    """Active latents per token for ``topk``; mean active latents per token for ``batch_topk``."""
    objective: str | None = None
    """A name in ``OBJECTIVES``; None picks the architecture's default (``seed`` for ReLU SAEs,
    ``nmse`` for the TopK family, whose sparsity is set by k)."""
    l1_coef: float = 0.1
    """lambda of the seed's objective: weight of mean ||z||_1 / ||x||_2. Ours: 0.1, not the
    paper's 8.6e-4. Both terms of that objective are already normalised by each token's norm
    (it is invariant to the tokens' scale), so no input scaling changes what a lambda means;
    and at 8.6e-4 the reconstruction term wins: trained to convergence, the ReLU SAE keeps 288
    of 896 latents active on EfficientNet-Lite0 tokens (NMSE 3e-4) and 107 of 512 on planted
    tokens made of 3 atoms each, whose atoms it does not recover. At 0.1: 25 of 896 (NMSE 0.23)
    and 9.5 of 512 with 97% of the atoms recovered (docs/studies/sae_brainmap.md). Set 8.6e-4
    to train the paper's objective as published."""
    normalize_inputs: bool = True
    """Scale the tokens by one constant c, set from the first training batch so that
    E||c x||^2 = d_in (kept in the SAE as ``input_scale``; encode/decode take and return the
    tokens' own units). The seed's objective is unchanged by c (same optimum, rescaled), so
    lambda keeps its meaning; what changes is that Adam's absolute steps (lr) meet
    pre-activations of a fixed scale whatever the layer's norm (an addition to the seed, as in
    Anthropic's SAEs; False trains on the raw tokens)."""
    l1_warmup_steps: int = 200
    """lambda rises linearly from 0 over the first this many steps (0: no warm-up): the SAE learns
    to reconstruct before the penalty bites, instead of losing its latents to it early (at
    lambda 0.2 without it, planted tokens lost every latent; an addition to the seed, as in
    Anthropic's SAEs)."""
    lr: float = 1e-3
    """AdamW learning rate. Ours: 1e-3, not the paper's 5e-5, which the paper spent over ~60,000
    steps of 100k tokens (5 ImageNet epochs); with fewer steps (a study's own images) 5e-5 leaves
    the latents' thresholds near their start. On planted tokens, 2,000 steps at 3e-4 recovered
    38% of the atoms, at 1e-3 92%."""
    weight_decay: float = 0.0
    """AdamW weight decay (the seed does not state one; 0 keeps the objective as written)."""
    batch_size: int = 4096
    """Tokens per optimisation step (the seed: 512 images x 196 patches = 100,352)."""
    dead_window: int = 1_000_000
    """A latent is dead when it has not fired on any of the last ``dead_window`` training tokens;
    the dead set is checked (and resampled) every ``dead_window`` tokens."""
    resample_dead: bool = True
    """Re-initialise dead latents towards poorly reconstructed inputs at each check (an addition to
    the seed, after Bricken et al. 2023)."""
    autocast_bf16: bool = False
    """Run the forward pass under bf16 autocast on CUDA (ignored on the CPU; the loss is float32)."""
    seed: int = 0
    """Seed of the initialisation, the token shuffling and the resampling."""

    @field_validator("l1_warmup_steps")
    @classmethod
    def _non_negative_int(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("d_in", "expansion", "k", "batch_size", "dead_window")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be a positive integer")
        return v

    @field_validator("lr", "l1_coef", "weight_decay")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @property
    def d_sae(self) -> int:
        """Number of latents, ``expansion * d_in``."""
        return self.expansion * self.d_in

    def differences(self, other: SAEConfig) -> dict[str, tuple[object, object]]:
        """Fields whose values differ: name -> (self's value, other's value)."""
        a, b = self.model_dump(), other.model_dump()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    @classmethod
    def from_dict(cls, data: dict) -> SAEConfig:
        """Validate a dict (from YAML or a checkpoint), raising ``InputError`` on a bad field."""
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            raise InputError(f"sae.{loc}", "a valid SAEConfig field", f"{err['msg']} "
                             f"(input {err.get('input')!r})", "see SAEConfig's field docs") from None
