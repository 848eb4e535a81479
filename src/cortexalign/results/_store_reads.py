"""The store's reads: whole tables, filtered frames and exports (a part of ``ResultsStore``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd

from cortexalign.results._derived import DERIVED_COLUMNS
from cortexalign.results._export import copy_atomic, export_frame
from cortexalign.results._partitions import PARTITION_COLUMNS, PARTITION_FILTERS
from cortexalign.results._rows import check_table, where_sql
from cortexalign.results._second_order import SECOND_ORDER_COLUMNS, SECOND_ORDER_FILTERS

__all__ = ["StoreReads", "SCORE_FILTERS"]

SCORE_FILTERS = ("run_id", "job_key", "model", "model_id", "layer", "target", "metric",
                 "config_hash")
"""The columns ``scores_frame`` filters on."""


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` exists (an older file opened read-only lacks the newer tables)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE "
                            "table_name = ?", [table]).fetchone()[0])


class StoreReads:
    """The reads of ``ResultsStore`` (which supplies ``_connect``)."""

    def frame(self, table: str) -> pd.DataFrame:
        """A whole table as a DataFrame (``runs``, ``jobs``, ``scores``, ``model_cards``...)."""
        check_table(table)
        if table == "partitions":  # absent from version-1 files opened read-only
            return self.partitions_frame()
        if table == "second_order":  # absent from older files opened read-only
            return self.second_order_frame()
        if table == "training":
            return self.training_frame()
        with self._connect() as con:
            if table in DERIVED_COLUMNS and not _has_table(con, table):
                return pd.DataFrame(columns=list(DERIVED_COLUMNS[table]))
            order = " ORDER BY rowid" if table in DERIVED_COLUMNS else ""
            return con.execute(f"SELECT * FROM {table}{order}").df()

    def partitions_frame(self, **filters: str | Sequence[str] | None) -> pd.DataFrame:
        """Variance-partitioning / banded-ridge rows (``partitions``) in write order, filtered
        like ``scores_frame`` (by ``partition``, ``method``, ``target``, ``kind``, ``name``,
        ``run_id``, ``job_key``, ``config_hash``); ``neuroid_ids``/``neuroid_values`` are JSON
        text (``json.loads`` them for the per-neuroid arrays)."""
        return self._filtered_frame("partitions", PARTITION_COLUMNS, PARTITION_FILTERS, filters)

    def second_order_frame(self, **filters: str | Sequence[str] | None) -> pd.DataFrame:
        """Alignment-pattern and discriminability rows (``second_order``) in write order,
        filtered by ``run_id``, ``analysis``, ``target``, ``metric``, ``rule``, ``model``,
        ``layer``, ``kind``, ``name`` or ``config_hash``; ``extra`` is JSON text."""
        return self._filtered_frame("second_order", SECOND_ORDER_COLUMNS, SECOND_ORDER_FILTERS,
                                    filters)

    def _filtered_frame(self, table: str, columns: Sequence[str], allowed: Sequence[str],
                        filters: dict) -> pd.DataFrame:
        """Rows of ``table`` in write order, filtered (``where_sql`` over ``allowed``); a table
        that an older file opened read-only lacks reads as an empty frame of ``columns``."""
        where, args = where_sql(filters, allowed)
        with self._connect() as con:
            if not _has_table(con, table):
                return pd.DataFrame(columns=list(columns))
            return con.execute(f"SELECT * FROM {table}{where} ORDER BY created, rowid",
                               args).df()

    def scores_frame(self, **filters: str | Sequence[str] | None) -> pd.DataFrame:
        """Scores as a DataFrame, in write order, filtered by column values.

        Each filter (``run_id``, ``job_key``, ``model``, ``model_id``, ``layer``, ``target``,
        ``metric``, ``config_hash``) takes one value or a list of accepted values.
        """
        where, args = where_sql(filters, SCORE_FILTERS)
        with self._connect() as con:
            return con.execute("SELECT * FROM scores" + where + " ORDER BY created, rowid",
                               args).df()

    def export(self, path: str | os.PathLike[str], table: str = "scores") -> Path:
        """Write a table to ``path`` as CSV or Parquet (chosen by the suffix), atomically."""
        check_table(table)
        if table == "partitions":  # absent from version-1 files opened read-only: then empty
            return export_frame(self.partitions_frame(), path)
        if table in ("second_order", "training"):  # absent from older files read-only
            return export_frame(self.frame(table), path)

        def copy(target: str, fmt: str) -> None:  # straight from the table: no DataFrame
            with self._connect() as con:
                con.execute(f"COPY (SELECT * FROM {table}) TO '{target}' ({fmt})")

        return copy_atomic(path, copy)
