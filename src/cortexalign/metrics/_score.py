"""``Score``: one number with its uncertainty and ceiling, the return type of every metric."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Score"]


@dataclass(frozen=True)
class Score:
    """The result of comparing one model layer with one neural target under one measure.

    Attributes
    ----------
    value : the raw score (e.g. Spearman rho between RDMs).
    ci_low, ci_high : bootstrap confidence interval of ``value`` (NaN when not computed).
    ceiling_low, ceiling_high : noise-ceiling bounds of the target (NaN when not available).
    p_value : permutation p-value (NaN when not computed).
    n_stimuli : how many stimuli the score used.
    extra : measure-specific details (per-neuroid scores summary, chosen penalty...).
    """

    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    ceiling_low: float = math.nan
    ceiling_high: float = math.nan
    p_value: float = math.nan
    n_stimuli: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def normalized(self) -> float:
        """``value`` divided by the lower ceiling bound (NaN when there is no ceiling)."""
        c = self.ceiling_low
        return self.value / c if c and not math.isnan(c) else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The score's fields as a plain dict."""
        return asdict(self)
