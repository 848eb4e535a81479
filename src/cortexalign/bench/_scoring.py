"""Score one job: a layer's features against every group of a neural target, with statistics.

What the runner adds around ``metrics.score``:

- map metrics (registry metadata ``features="maps"``) get the (s, gh, gw) maps, the others the
  flattened (s, d) features; metrics with ``needs_stimuli=True`` get the context ``stimuli`` and
  ``pad_square`` (true when the model's preprocessing pads to a square, as SAM's does);
- ``n_permutations`` (config) goes to metrics that take it, and ``PERMUTATION_TESTS`` supplies
  the p-value of the others (``rsa``);
- each row's ``extra`` records the group (area, Cre line...), the layer's position and the feature
  kind; with p-values, ``p_fdr`` is Benjamini-Hochberg across the groups of the job;
- ``extra`` is made JSON-safe (arrays to lists, NaN to None).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from typing import Any

import numpy as np

from cortexalign.bench._stats import PERMUTATION_TESTS, add_fdr
from cortexalign.bench._targets import Target
from cortexalign.metrics import METRICS, score
from cortexalign.results import ScoreRecord
from cortexalign.stimuli import StimulusSet

__all__ = ["score_job", "uses_maps", "jsonable"]


def uses_maps(metric_name: str) -> bool:
    """Whether a metric compares maps (``features="maps"`` in its registry metadata)."""
    return METRICS.entry(metric_name).meta.get("features", "vectors") == "maps"


def jsonable(x: Any) -> Any:
    """``x`` with arrays as lists, numpy scalars as Python numbers and NaN/Inf as None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _takes(metric_name: str, option: str) -> bool:
    params = inspect.signature(METRICS.get(metric_name)).parameters
    return option in params and params[option].kind is inspect.Parameter.KEYWORD_ONLY


def score_job(job, adapter, values: np.ndarray, groups: list[Target], stimuli: StimulusSet, *,
              n_bootstrap: int, seed: int, n_permutations: int = 0) -> list[ScoreRecord]:
    """One ``ScoreRecord`` per group of the job's target (see the module docstring).

    Parameters
    ----------
    job : a ``ScoreJob``; adapter : the loaded model (for ``model_id`` and its preprocessing).
    values : (s, ...) features of ``job.layer``: (s, d) activations or (s, gh, gw) maps.
    groups : the target's groups (``load_targets``), data in the stimuli's order.
    """
    name = job.metric.name
    entry = METRICS.entry(name)
    x = np.asarray(values, dtype=np.float64)
    if not uses_maps(name):
        x = x.reshape(len(x), -1)
    opts = dict(job.metric.options)
    if entry.meta.get("needs_stimuli"):
        pads = getattr(adapter.preprocess, "resize", "") == "longest_side_pad"
        opts.update(stimuli=stimuli, pad_square=pads)
    own_p = _takes(name, "n_permutations")
    if n_permutations and own_p:
        opts["n_permutations"] = n_permutations
    records = []
    for target in groups:
        started = time.time()
        result = score(name, x, target.data, n_bootstrap=n_bootstrap, seed=seed, **opts)
        if n_permutations and not own_p and name in PERMUTATION_TESTS:
            p = PERMUTATION_TESTS[name](x, target.data, n_permutations=n_permutations, seed=seed,
                                        **job.metric.options)
            result = dataclasses.replace(result, p_value=p)
        record = ScoreRecord.from_score(result, model=job.model.display,
                                        model_id=adapter.model_id, layer=job.layer,
                                        target=target.label, metric=name)
        extra = {**record.extra, **target.extra(), "layer_index": job.layer_index,
                 "n_layers": job.n_layers, "features": job.model.features,
                 "seconds": round(time.time() - started, 4)}
        records.append(dataclasses.replace(record, extra=extra))
    if n_permutations:
        records = add_fdr(records)
    return [dataclasses.replace(r, extra=jsonable(r.extra)) for r in records]
