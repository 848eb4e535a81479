"""The ``second_order`` table: analyses computed from many scores at once, kept for the report.

``second_order`` (run_id, analysis, target, metric, rule, model, layer, kind, name, value, ci_low,
ci_high, p_value, extra JSON, config_hash, created)
    ``analysis`` is ``patterns`` (alignment pattern analysis, ``analyses.alignment_patterns``) or
    ``discriminability`` (``analyses.benchmark_discriminability``). ``kind`` says what a row is:

    - patterns: ``brain_row`` (name: a region; value: its between-subject consistency, the
      diagonal; extra: ``regions``, the matrix ``row``, ``ceiling_low``/``ceiling_high``),
      ``pattern`` (model, layer, name: the region the layer stands in for; value: the pattern
      similarity, its interval and permutation p-value; extra: both profiles, the pointwise
      score, the ceilings, how the layer was assigned);
    - discriminability: ``summary`` (value: the fraction of model pairs separated; extra:
      ``n_distinguishable`` and the settings), ``model`` (value: the model's score under the
      layer rule, interval over resamples; extra: rank, rank interval, chosen layer(s)),
      ``pair`` (model above name; value: P(model ranks above name); p_value: the corrected
      p-value; extra: the raw p-value, ``separated``).

    ``metric`` names the measure (``rsa:correlation:spearman``: RDM method and comparison), ``rule`` the layer rule (``best``, ``cv``,
    or ``user``/``best_score`` for patterns). The rows of one (run, analysis, target, metric) are
    rewritten together (``ResultsStore.record_second_order``): recomputing replaces them.

The table arrived with schema version 3; an older file gains it when a writer opens it and reads
as an empty table until then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cortexalign.errors import InputError
from cortexalign.results._partitions import require_strings

__all__ = ["SECOND_ORDER_DDL", "SECOND_ORDER_COLUMNS", "SECOND_ORDER_FILTERS", "SECOND_ORDER_KINDS",
           "SecondOrderRecord"]

SECOND_ORDER_DDL = (
    """CREATE TABLE second_order (
        run_id VARCHAR NOT NULL, analysis VARCHAR NOT NULL, target VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, rule VARCHAR NOT NULL, model VARCHAR, layer VARCHAR,
        kind VARCHAR NOT NULL, name VARCHAR, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
        p_value DOUBLE, extra JSON, config_hash VARCHAR, created TIMESTAMP NOT NULL)""",
)
SECOND_ORDER_COLUMNS = ("run_id", "analysis", "target", "metric", "rule", "model", "layer", "kind",
                        "name", "value", "ci_low", "ci_high", "p_value", "extra", "config_hash",
                        "created")
SECOND_ORDER_FILTERS = ("run_id", "analysis", "target", "metric", "rule", "model", "layer", "kind",
                        "name", "config_hash")
SECOND_ORDER_KINDS = {"patterns": ("brain_row", "pattern"),
                      "discriminability": ("summary", "model", "pair")}


def _number(name: str, x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(name, "a number, NaN or None", repr(x)[:60], "pass a float") from None
    if math.isinf(v):
        raise InputError(name, "a finite number, NaN or None", repr(x), "drop the infinite value")
    return None if math.isnan(v) else v


@dataclass(frozen=True)
class SecondOrderRecord:
    """One row of ``second_order`` before it is written (run, time and config hash added).

    Attributes
    ----------
    analysis, target, metric, rule, kind : what the row is (module docstring).
    model, layer, name : who it is about (None where it does not apply).
    value, ci_low, ci_high, p_value : the numbers (NaN/None: not computed). extra : JSON-able.
    """

    analysis: str
    target: str
    metric: str
    rule: str
    kind: str
    model: str | None = None
    layer: str | None = None
    name: str | None = None
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def checked(self) -> tuple[Any, ...]:
        """Validated column values analysis .. extra (a dict); or InputError."""
        require_strings(self, ("analysis", "target", "metric", "rule", "kind"), "second_order")
        kinds = SECOND_ORDER_KINDS.get(self.analysis)
        if kinds is None or self.kind not in kinds:
            raise InputError("second_order.kind", f"a kind of {SECOND_ORDER_KINDS}",
                             f"{self.analysis!r}/{self.kind!r}", "use one of those pairs")
        nums = [_number(f"second_order.{k}", getattr(self, k))
                for k in ("value", "ci_low", "ci_high", "p_value")]
        if nums[3] is not None and not 0.0 <= nums[3] <= 1.0:
            raise InputError("second_order.p_value", "a probability in [0, 1]", repr(nums[3]),
                             "pass the p-value or NaN")
        return (self.analysis, self.target, self.metric, self.rule, self.model, self.layer,
                self.kind, self.name, *nums, self.extra)
