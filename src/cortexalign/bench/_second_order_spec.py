"""Config entries of the second-order analyses: ``patterns:`` and ``discriminability:``.

Both run after the per-layer jobs, on the features the run cached, and write the
``second_order`` table (``results.SecondOrderRecord``); the report shows them.

```yaml
patterns:                          # alignment pattern analysis (Höfling et al. 2026)
  - target: mouse V1-HVAs          # a responses target's label (its region/subject coords)
    region_by: [area, cre_line]    # what a region is
    subject_by: subject
    models: [EfficientNet-Lite0]   # default: every activations model
    assign: {VISp/Cux2: blocks.3}  # default (null): each region's best layer
    n_permutations: 1000
    n_bootstrap: 200
discriminability:                  # how well each (target, metric entry) separates the models
  rules: [best, cv]
  n_bootstrap: 200
  alpha: 0.05
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PatternSpec", "DiscriminabilitySpec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatternSpec(_Strict):
    """One alignment pattern analysis: a multi-region target and the models put in its regions'
    places (``cortexalign.analyses.alignment_patterns``)."""

    target: str = Field(description="The label of a responses neural entry (not split_by) whose "
                                    "neuroids carry the region and subject coordinates.")
    region_by: list[str] = Field(default_factory=lambda: ["area"], min_length=1,
                                 description="Neuroid coordinate(s) naming a region: [area], or "
                                             "[area, cre_line] for Allen areas x Cre lines.")
    subject_by: str = Field("subject", description="Neuroid coordinate naming the subject.")
    min_neuroids: int = Field(2, ge=1, description="(subject, region) groups with fewer "
                                                   "neuroids are left out.")
    models: list[str] | None = Field(None, description="Model labels (default: every "
                                                       "activations model).")
    assign: dict[str, str] | None = Field(None, description="region -> layer (only those "
                                          "regions); null: every region gets each model's "
                                          "layer with the best pointwise score.")
    rdm_method: str = Field("correlation", description="RDM method of models and regions.")
    compare: str = Field("spearman", description="RDM comparison (RDM_COMPARISONS).")
    similarity: Literal["pearson", "spearman", "cosine"] = Field(
        "pearson", description="How two alignment profiles are compared.")
    null: Literal["stimuli", "regions"] = Field("stimuli", description="Permutation null: the "
                                                "model's stimulus labels, or its profile over "
                                                "regions.")
    n_permutations: int = Field(1000, ge=0, description="Permutations (0: no p-value).")
    n_bootstrap: int = Field(200, ge=0, description="Stimulus (and subject) resamples for the "
                                                    "interval (0: none).")
    bootstrap_subjects: bool = Field(True, description="Resample subjects too (>= 3 subjects).")


class DiscriminabilitySpec(_Strict):
    """How well each (target, metric entry) separates the models
    (``cortexalign.analyses.benchmark_discriminability``)."""

    rules: list[Literal["best", "cv"]] = Field(default_factory=lambda: ["best", "cv"],
                                               min_length=1,
                                               description="Layer rules: best on the same data, "
                                                           "and/or cross-validated choice.")
    n_bootstrap: int = Field(200, ge=2, description="Paired stimulus (and subject) resamples.")
    n_folds: int = Field(5, ge=2, description="Stimulus folds of the cross-validated choice.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of the pairwise tests after FDR.")
    bootstrap_subjects: bool = Field(True, description="Resample subjects too (>= 3 subjects).")
    generic_n_bootstrap: int = Field(50, ge=2, description="Resamples of a measure without an "
                                     "exact resampled form (one metric call per layer and "
                                     "resample): at most this many.")
    max_seconds: float = Field(600.0, gt=0, description="A generic resampling estimated (from "
                               "its full-data calls) to take longer is skipped with the reason.")
