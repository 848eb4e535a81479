"""What a run derives from its scores and stores beside them, so that a report reads the store
and nothing else.

``notes`` (run_id, kind, subject, text, created)
    Append-only. ``kind`` is ``citation`` (subject: what is cited, e.g. ``measure: rsa``; text:
    the reference) or ``failure`` (subject: a model that did not load, or another unit of work
    outside the ``jobs`` table; text: the error).
``q_values`` (model, layer, target, metric, q_value, family, run_id)
    The false-discovery-rate adjusted p-value of every stored score with a p-value, over its
    family (``family`` says which: all scores of the metric). Rewritten whole by each run, as
    the family grows with every run.
``comparisons`` (model_a, model_b, target, metric, difference, p_value, q_value, method, run_id)
    Paired tests between models at their best layers. Rewritten whole by each run.

``best_layers`` picks each (model, target, metric)'s best layer from a scores frame: the rows
the comparisons and the report's summary table are about.

The tables arrived with schema version 4; an older file gains them when a writer opens it
(``_schema.MIGRATIONS``) and reads them as empty tables until then.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["DERIVED_DDL", "DERIVED_COLUMNS", "NOTE_KINDS", "best_layers", "normalized_scores"]

DERIVED_DDL = (
    """CREATE TABLE notes (
        run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, subject VARCHAR NOT NULL,
        text VARCHAR NOT NULL, created TIMESTAMP NOT NULL)""",
    """CREATE TABLE q_values (
        model VARCHAR NOT NULL, layer VARCHAR NOT NULL, target VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, q_value DOUBLE, family VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL)""",
    """CREATE TABLE comparisons (
        model_a VARCHAR NOT NULL, model_b VARCHAR NOT NULL, target VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, difference DOUBLE, p_value DOUBLE, q_value DOUBLE,
        method VARCHAR NOT NULL, run_id VARCHAR NOT NULL)""",
)

#: table -> its columns, in order.
DERIVED_COLUMNS = {
    "notes": ("run_id", "kind", "subject", "text", "created"),
    "q_values": ("model", "layer", "target", "metric", "q_value", "family", "run_id"),
    "comparisons": ("model_a", "model_b", "target", "metric", "difference", "p_value",
                    "q_value", "method", "run_id"),
}

NOTE_KINDS = ("citation", "failure")
"""What a note can be: a reference the run relies on, or a failure outside the jobs table."""


def normalized_scores(frame: pd.DataFrame) -> pd.Series:
    """Each score as a fraction of the lower bound of its noise ceiling (NaN without a ceiling):
    the ``normalized`` column of the report's best-layer table and of ``cortexalign results``."""
    ceiling = frame["ceiling_low"].astype(float)
    return (frame["value"].astype(float) / ceiling.where(ceiling != 0)).rename("normalized")


def best_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """The best layer of each (model, target, metric) of a scores frame (the highest value),
    with its interval, its ceiling and the score over the lower ceiling (``normalized``)."""
    rows = []
    for (model, target, metric), grp in frame.groupby(["model", "target", "metric"], sort=False):
        g = grp.dropna(subset=["value"])
        if g.empty:
            continue
        best = g.loc[g["value"].idxmax()]
        rows.append({"model": model, "target": target, "metric": metric, "layer": best["layer"],
                     "value": best["value"], "ci_low": best["ci_low"], "ci_high": best["ci_high"],
                     "ceiling_low": best["ceiling_low"], "ceiling_high": best["ceiling_high"],
                     "normalized": normalized_scores(best.to_frame().T).iloc[0]})
    return pd.DataFrame(rows)
