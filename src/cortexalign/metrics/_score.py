"""``Score``: one number with its uncertainty and ceiling, the return type of every metric."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cortexalign.errors import InputError

__all__ = ["Score", "check_published_ceiling"]


def check_published_ceiling(low: Any, high: Any, parameter: str = "ceiling") -> tuple[float, float]:
    """A published ceiling ``(low, high)``: two finite numbers with ``low <= high``."""
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise InputError(parameter, "a published ceiling {low, high}: two finite numbers, "
                         "low <= high", f"low={low!r}, high={high!r}",
                         "copy both bounds from the dataset's paper (equal when it gives one "
                         "number)")
    return lo, hi


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

    def with_published_ceiling(self, low: float, high: float, source: str = "") -> Score:
        """This score with a dataset's own published ceiling in place of the computed one.

        The computed bounds (when there were any) move to ``extra["computed_ceiling"]``;
        ``extra["ceiling"]`` says the ceiling is published (and by whom), so tables and reports
        show it as such. ``low``/``high`` are checked by :func:`check_published_ceiling`.
        """
        low, high = check_published_ceiling(low, high)
        extra = dict(self.extra)
        if math.isfinite(self.ceiling_low) or math.isfinite(self.ceiling_high):
            extra["computed_ceiling"] = [self.ceiling_low, self.ceiling_high,
                                         extra.get("ceiling", "computed")]
        extra["ceiling"] = "published" + (f" ({source})" if source else "")
        return replace(self, ceiling_low=low, ceiling_high=high, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The score's fields as a plain dict."""
        return asdict(self)
