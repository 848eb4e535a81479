"""The configuration of one alignment-regularised training run (the ``train-aligned`` YAML schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = ["AlignConfig", "OBJECTIVE_NAMES"]

OBJECTIVE_NAMES = ("rsa", "cka", "ridge")


class AlignConfig(BaseModel):
    """Task loss on a task dataset + ``lam`` x alignment loss between ``layers`` and a brain target.

    The alignment loss is ``-objective`` averaged over the layers, computed on the target's
    *training* stimuli only; the held-out stimuli (``heldout_fraction`` of them, stratified by
    ``category_key`` where the stimuli carry it) are split off before anything is fitted and used
    only to measure alignment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    out: Path
    """Run folder: checkpoints (safetensors + JSON), split.json, results.duckdb, report."""
    model: str = "timm:test_convnext2"
    """A registry model, timm (``timm:<arch>``) or spiking (``snn:<name>``), trained from its
    untrained initialisation under ``seed``."""
    model_options: dict = {}
    """Builder options (e.g. ``img_size``); ``num_classes`` is set from the task data."""
    layers: list[str] = ["stages.2"]
    """Layers whose features are aligned (flattened per stimulus); the loss averages them."""
    target: str = "kriegeskorte92.human_IT"
    """A neural dataset ``load_neural`` reads: a registered name or a .nc/.csv/.npz file (RDMs
    or responses)."""
    stimuli: str | None = None
    """The target's stimuli (``load_stimuli``); None: the set registered with the target."""
    objective: Literal["rsa", "cka", "ridge"] = "rsa"
    """``rsa`` (RDMs or responses), ``cka`` or ``ridge`` (responses)."""
    objective_options: dict | None = None
    """Options of the objective (``cortexalign.metrics.rsa_objective`` and co.); None: rsa's
    soft Spearman (``compare: spearman, strength: 1.0``), the defaults of cka and ridge."""
    lam: float = 1.0
    """Weight of the alignment loss (0: task loss alone, the control)."""
    task_data: Path | None = None
    """Task dataset: an .npz (train_images, train_labels, test_images, test_labels) or an image
    folder; None: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes)."""
    max_task_train: int | None = None
    """Use only the first n task training images."""
    max_task_test: int | None = 1000
    """Task test images scored at each evaluation (None: all)."""
    image_size: int = 32
    """Side of the model input for task and brain images."""
    heldout_fraction: float = 0.25
    """Fraction of the target's stimuli held out from the alignment loss."""
    category_key: str | None = "category"
    """Stimulus metadata column to stratify the split by (skipped when absent)."""
    split_seed: int = 0
    """Seed of the stimulus split (kept fixed across seeds and lambdas of a study)."""
    steps: int = 200
    """Optimizer steps (the budget; the same for every lambda)."""
    batch_size: int = 64
    """Task images per step."""
    align_batch: int | None = None
    """Training stimuli per alignment step (None: all of them every step)."""
    lr: float = 2e-3
    """AdamW learning rate, cosine decay to zero."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the initialisation, the data order and the alignment batches."""
    eval_every: int = 50
    """Evaluate (task accuracy, train and held-out alignment) every n steps and at the end."""
    checkpoint_every: int | None = None
    """Checkpoint every n steps (None: at each evaluation)."""
    keep_last: int = 2
    """Complete checkpoints kept (older ones are deleted)."""
    resume: bool = True
    """Continue from the last complete checkpoint in ``out``."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda[:i]'."""
    progress: bool = True
    """Show a progress bar."""

    @field_validator("steps", "batch_size", "image_size", "eval_every", "keep_last")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("max_task_train", "max_task_test", "align_batch", "checkpoint_every")
    @classmethod
    def _positive_or_none(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be >= 1 or null")
        return v

    @field_validator("heldout_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be strictly between 0 and 1")
        return v

    @field_validator("lam", "lr", "weight_decay")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if not v >= 0.0:
            raise ValueError("must be >= 0")
        return v

    @model_validator(mode="after")
    def _options_fit_the_objective(self) -> AlignConfig:
        import inspect

        from cortexalign.metrics import OBJECTIVES

        params = inspect.signature(OBJECTIVES[self.objective]).parameters
        takes = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(self.options()) - set(takes))
        if unknown:
            raise ValueError(f"{unknown} are not options of the {self.objective} objective "
                             f"(it takes {', '.join(takes)})")
        return self

    def options(self) -> dict:
        """The objective's options, with the defaults filled in."""
        if self.objective_options is not None:
            return dict(self.objective_options)
        return {"compare": "spearman", "strength": 1.0} if self.objective == "rsa" else {}

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one layer")
        return v
