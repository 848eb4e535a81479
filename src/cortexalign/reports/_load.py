"""What a report is drawn from: the results store of a run directory and the artefacts beside it.

``load_report_data(results_dir)`` reads the ``runs``, ``jobs``, ``scores`` and ``model_cards``
tables (read-only, so a report can be written while no run is writing) and looks for the files
other parts of cortexalign leave in the directory:

- SAE-BrainMap outputs (``cortexalign.sae.pipeline``): a folder holding ``dictionary.csv``
  (voxel, layer, unit, r, best_layer[, p, p_fwe]), ``sae_metrics.csv``, optionally
  ``roi_consistency.csv``, ``roi_rsa.csv`` and the surface maps ``surface_best_r.png``, ``surface_best_layer.png``.
- Spiking training logs (``cortexalign.spiking.train``): ``metrics.jsonl`` with one row per epoch
  (model, epoch, step, train_loss, train_acc, test_acc, seconds, seconds_per_step).
- Spiking energy estimates: ``energy*.json`` holding ``{"model", "energy_mj", "macs", "sops",
  "firing_rates": {layer: rate}}`` (the fields of ``cortexalign.spiking.energy.EnergyReport``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cortexalign.errors import InputError
from cortexalign.results import RESULTS_FILE

__all__ = ["ReportData", "SAEArtefacts", "load_report_data", "RESULTS_FILE", "parse_extra"]


_SEARCH_DEPTH = 3  # artefacts are looked for this many folders below the results directory
_SKIP_DIRS = {"cache", ".git", "__pycache__"}


@dataclass
class SAEArtefacts:
    """The files of one SAE-BrainMap output folder (absent ones are None)."""

    folder: Path
    dictionary: pd.DataFrame
    sae_metrics: pd.DataFrame | None = None
    consistency: pd.DataFrame | None = None
    roi_rsa: pd.DataFrame | None = None
    surfaces: dict[str, Path] = field(default_factory=dict)


@dataclass
class ReportData:
    """Everything a report shows; built by ``load_report_data`` or by hand (tests, notebooks).

    Attributes
    ----------
    scores : the ``scores`` table (columns as ``results._schema.SCORE_COLUMNS``); NaN = missing.
    runs, jobs, model_cards : the tables of the same names (may be empty).
    source : the directory the data came from (shown in the report).
    sae : SAE-BrainMap output folders found. spiking_logs : rows of ``metrics.jsonl`` files.
    energy : energy/firing-rate records, one per model.
    maps : ``MapPanel`` rows (stimulus, model map overlay, neuron maps) to draw.
    citations : references to list besides those derived from the stored configs.
    partitions : the ``partitions`` table (variance partitioning, banded ridge; may be empty).
    second_order : the ``second_order`` table (alignment patterns, discriminability; may be
        empty).
    failures : failures known outside the jobs table (e.g. a model that did not load),
        each ``{"job": ..., "error": ...}`` (the store's ``failure`` notes, then any given).
    notes : the ``notes`` table (``citation`` and ``failure`` notes of the runs).
    q_values, comparisons : the statistics the runner stored (FDR q-values of the scores;
        paired tests between models): a report shows them and computes none.
    """

    scores: pd.DataFrame
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    jobs: pd.DataFrame = field(default_factory=pd.DataFrame)
    model_cards: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = ""
    sae: list[SAEArtefacts] = field(default_factory=list)
    spiking_logs: pd.DataFrame = field(default_factory=pd.DataFrame)
    energy: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    maps: list[Any] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)
    partitions: pd.DataFrame = field(default_factory=pd.DataFrame)
    second_order: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: pd.DataFrame = field(default_factory=pd.DataFrame)
    q_values: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)

    def noted(self, kind: str) -> list[tuple[str, str]]:
        """The ``(subject, text)`` notes of ``kind`` (``citation``, ``failure``), in write order,
        each once."""
        if self.notes.empty:
            return []
        rows = self.notes[self.notes["kind"] == kind]
        return list(dict.fromkeys(zip(rows["subject"], rows["text"], strict=True)))

    def configs(self) -> list[dict[str, Any]]:
        """The parsed config of every run (YAML mappings; unreadable ones skipped)."""
        out = []
        for text in self.runs.get("config_yaml", pd.Series(dtype=object)).dropna():
            try:
                cfg = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(cfg, dict):
                out.append(cfg)
        return out


def parse_extra(extra: Any) -> dict[str, Any]:
    """The ``extra`` column of a score row as a dict (JSON text, a dict, or missing)."""
    if isinstance(extra, dict):
        return extra
    if isinstance(extra, str) and extra:
        try:
            d = json.loads(extra)
        except json.JSONDecodeError:
            return {}
        return d if isinstance(d, dict) else {}
    return {}


def _walk(root: Path, name: str) -> list[Path]:
    """Files called ``name`` (a glob) at most ``_SEARCH_DEPTH`` folders below ``root``."""
    found, level = [], [root]
    for _ in range(_SEARCH_DEPTH + 1):
        nxt = []
        for d in level:
            found += sorted(p for p in d.glob(name) if p.is_file())
            nxt += sorted(p for p in d.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS)
        level = nxt
    return found


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _find_sae(root: Path) -> list[SAEArtefacts]:
    out = []
    for csv in _walk(root, "dictionary.csv"):
        table = pd.read_csv(csv)
        if not {"voxel", "layer", "r"} <= set(table.columns):
            continue  # some other dictionary.csv
        folder = csv.parent
        surfaces = {p.stem.removeprefix("surface_"): p for p in sorted(folder.glob("surface_*.png"))}
        out.append(SAEArtefacts(folder, table, _read_csv(folder / "sae_metrics.csv"),
                                _read_csv(folder / "roi_consistency.csv"),
                                _read_csv(folder / "roi_rsa.csv"), surfaces))
    return out


def _find_spiking(root: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    rows = []
    for path in _walk(root, "metrics.jsonl"):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a killed run
            if isinstance(row, dict) and "epoch" in row:
                rows.append({"model": row.get("model", path.parent.name), "log": str(path), **row})
    energy = []
    for path in _walk(root, "energy*.json"):
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and ("energy_mj" in rec or "firing_rates" in rec):
            energy.append({"model": rec.get("model", path.stem), **rec})
    return pd.DataFrame(rows), energy


def load_report_data(results_dir: str | Path,
                     failures: list[dict[str, str]] | None = None) -> ReportData:
    """Read a results directory for a report.

    Parameters
    ----------
    results_dir : the ``--out`` directory of ``cortexalign run`` (holding ``results.duckdb``).
    failures : failures the runner knows of that are not in the ``jobs`` table.

    Raises
    ------
    InputError : the directory does not exist, holds no results database, or no run.
    """
    from cortexalign.results import ResultsStore

    root = Path(results_dir)
    fix = f"run an experiment into it first: `cortexalign run CONFIG.yaml --out {root}`"
    if not root.is_dir():
        raise InputError("results_dir", "a results directory written by `cortexalign run`",
                         f"{str(root)!r}, which is not a directory", fix)
    store_path = root / RESULTS_FILE
    if not store_path.is_file():
        raise InputError("results_dir", f"a directory holding {RESULTS_FILE}",
                         f"{str(root)!r} without one", fix)
    store = ResultsStore(store_path, read_only=True)
    runs = store.frame("runs")
    if runs.empty:
        raise InputError("results_dir", "a results database with at least one run",
                         f"{str(store_path)!r} with no runs recorded", fix)
    sae = _find_sae(root)
    logs, energy = _find_spiking(root)
    notes = store.frame("notes")
    data = ReportData(scores=store.scores_frame(), runs=runs, jobs=store.frame("jobs"),
                      model_cards=store.frame("model_cards"), source=str(root), sae=sae,
                      spiking_logs=logs, energy=energy, partitions=store.partitions_frame(),
                      second_order=store.second_order_frame(), notes=notes,
                      q_values=store.frame("q_values"), comparisons=store.frame("comparisons"))
    data.failures = [{"job": s, "error": t} for s, t in data.noted("failure")]
    data.failures += list(failures or [])
    return data


def finite(x: Any) -> bool:
    """Whether ``x`` is a real number that is not NaN/inf (None, NaN, pd.NA -> False)."""
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
