"""Second-order results as rows of the results store (``results.SecondOrderRecord``)."""

from __future__ import annotations

import math

import numpy as np

from cortexalign.analyses._model_boot import ModelScoreSamples
from cortexalign.analyses._patterns import PatternAnalysis
from cortexalign.results import SecondOrderRecord
from cortexalign.stats import Discriminability, percentile_interval

__all__ = ["pattern_records", "discriminability_records"]


def _list(x: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(x, float).tolist()]


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def pattern_records(result: PatternAnalysis, *, model: str, target: str, metric: str,
                    with_brain: bool = True) -> list[SecondOrderRecord]:
    """Rows of one model's pattern analysis (and, with ``with_brain``, the brain's matrix)."""
    b = result.brain
    regions = list(b.regions)
    rows = []
    if with_brain:
        for r, region in enumerate(regions):
            rows.append(SecondOrderRecord(
                analysis="patterns", target=target, metric=metric, rule="brain",
                kind="brain_row", name=region, value=_num(b.matrix_rr[r, r]),
                extra={"regions": regions, "row": _list(b.matrix_rr[r]),
                       "ceiling_low": _num(b.ceiling_low_r[r]),
                       "ceiling_high": _num(b.ceiling_high_r[r]),
                       "n_subjects": int(b.n_subjects_r[r]), "similarity": b.similarity}))
    for s in result.scores:
        rows.append(SecondOrderRecord(
            analysis="patterns", target=target, metric=metric, rule=s.assigned_by,
            kind="pattern", model=model, layer=s.layer, name=s.region, value=_num(s.value),
            ci_low=_num(s.ci_low), ci_high=_num(s.ci_high), p_value=_num(s.p_value),
            extra={**s.extra, "regions": regions, "profile": _list(s.profile_r),
                   "brain_profile": _list(s.brain_profile_r), "pointwise": _num(s.pointwise),
                   "ceiling_low": _num(s.ceiling_low), "ceiling_high": _num(s.ceiling_high)}))
    return rows


def discriminability_records(samples: ModelScoreSamples, d: Discriminability, *, target: str,
                             metric: str) -> list[SecondOrderRecord]:
    """Rows of one (target, metric, rule): the summary, each model, each ordered pair."""
    common = {"analysis": "discriminability", "target": target, "metric": metric,
              "rule": samples.rule}
    rows = [SecondOrderRecord(kind="summary", value=d.fraction_separated, **common,
                              extra={**d.summary(), "subjects_resampled":
                                     samples.subjects_resampled})]
    for j, name in enumerate(d.names):
        lo, hi = percentile_interval(samples.samples_bm[:, j], d.ci_level)
        rows.append(SecondOrderRecord(
            kind="model", model=name, layer=",".join(samples.layers[name]),
            value=float(d.scores_m[j]), ci_low=_num(lo), ci_high=_num(hi), **common,
            extra={"rank": float(d.rank_m[j]), "rank_low": float(d.rank_low_m[j]),
                   "rank_high": float(d.rank_high_m[j]), "layers": list(samples.layers[name])}))
    for i, a in enumerate(d.names):
        for j, b in enumerate(d.names):
            if i != j:
                rows.append(SecondOrderRecord(
                    kind="pair", model=a, name=b, value=float(d.p_above_mm[i, j]),
                    p_value=_num(d.q_values_mm[i, j]), **common,
                    extra={"p_value": _num(d.p_values_mm[i, j]),
                           "separated": bool(d.separated_mm[i, j])}))
    return rows
