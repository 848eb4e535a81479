"""The SAE configuration: a frozen pydantic model with a docstring per field.

The defaults are the SAE-BrainMap seed's (METHODS.md section 2): a ReLU SAE with a tied decoder and
a pre-bias, 16x expansion, the normalised-MSE + scaled-L1 objective with lambda = 8.6e-4, AdamW at
lr 5e-5. The seed's batch was 512 images (~100k tokens); the default here is smaller so that a
laptop can run it; ``configs/sae_brainmap.yaml`` sets the seed's value.
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
    l1_coef: float = 8.6e-4
    """lambda of the seed's objective: weight of mean ||z||_1 / ||x||_2."""
    lr: float = 5e-5
    """AdamW learning rate."""
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
