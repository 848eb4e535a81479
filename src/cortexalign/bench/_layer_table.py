"""The best-layer table of a finished grid under a layer rule, ``cv`` included.

``best_layers.csv`` (``reports.best_layers``) takes each model's best layer on the same data it
is scored on: with many layers the maximum of noisy scores is optimistic. ``grid_best_layers``
recomputes the table from the run's feature cache with ``analyses.layer_choice`` under a rule:
``cv`` picks the layer on the other stimulus folds and scores it on the held-out fold, for any
measure (map metrics get each fold's stimuli). It writes ``best_layers_<rule>.csv`` beside the
results, and ``cortexalign results OUT --layer-rule cv`` prints it with the rule in its title.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cortexalign.analyses import layer_choice
from cortexalign.atomic import write_atomic
from cortexalign.bench._scoring import RUN_OPTIONS, uses_maps
from cortexalign.bench._second_order import _entry_label, _features, load_run
from cortexalign.errors import CortexAlignError, UnknownNameError

__all__ = ["grid_best_layers", "LAYER_TABLE_COLUMNS"]

LAYER_TABLE_COLUMNS = ("model", "target", "metric", "rule", "layer", "value", "n_folds",
                       "skipped")
"""Columns of ``grid_best_layers``: ``layer`` is the chosen layer (``cv``: one per fold,
comma-separated); ``skipped`` says why a row has no value."""


def grid_best_layers(out: str | Path, *, rule: str = "cv", n_folds: int = 5,
                     seed: int | None = None, target: str | None = None,
                     metric: str | None = None, device: str = "cpu",
                     progress: bool = False) -> pd.DataFrame:
    """Each (model, target group, metric entry)'s score with its layer chosen by ``rule``
    (``best`` or ``cv``, ``analyses.layer_choice``), from the newest run's feature cache;
    ``target``/``metric`` keep only those (a target label or group, a metric name). Written to
    ``best_layers_<rule>.csv`` beside the results (atomically)."""
    if rule not in ("best", "cv"):
        raise UnknownNameError("layer rule", str(rule), ["best", "cv"])
    path, _, cfg, stimuli, targets, cache = load_run(out)
    models, _ = _features(cfg, None, stimuli, cache, device, progress)
    seed = cfg.seed if seed is None else seed
    rows = []
    for label, groups in targets.items():
        for group in groups:
            if target not in (None, label, group.label):
                continue
            for m in cfg.metrics:
                if metric not in (None, m.name):
                    continue
                opts = {k: v for k, v in m.options.items() if k not in RUN_OPTIONS}
                for model, layers in models.for_metric(m.name).items():
                    extra = ({"stimuli": stimuli, "pad_square": models.pad_square[model]}
                             if uses_maps(m.name) else {})
                    row = {"model": model, "target": group.label,
                           "metric": _entry_label(m, cfg), "rule": rule, "layer": "",
                           "value": float("nan"), "n_folds": n_folds if rule == "cv" else 0,
                           "skipped": ""}
                    try:
                        got = layer_choice(layers, group.data, m.name, rule=rule,
                                           n_folds=n_folds, seed=seed, **opts, **extra)
                        row.update(layer=",".join(got.layers), value=got.value)
                    except CortexAlignError as err:
                        row["skipped"] = str(err)
                    rows.append(row)
    frame = pd.DataFrame(rows, columns=list(LAYER_TABLE_COLUMNS))
    write_atomic(path.parent / f"best_layers_{rule}.csv",
                 lambda tmp: frame.to_csv(tmp, index=False))
    return frame
