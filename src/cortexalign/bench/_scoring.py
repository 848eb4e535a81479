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

Features larger than the run's memory budget stay in the feature cache (:class:`CachedLayer`,
issue 9). ``rsa`` and the ``cka_*`` metrics depend on the features only through a stimulus x
stimulus matrix: the RDM (correlation, cosine) or the squared euclidean distances, which give the
centred Gram ``Xc Xc^T = -1/2 J D J`` (classical MDS; Torgerson 1952). That (s, s) matrix is
streamed from the cache (``metrics.streaming_rdm``, two row blocks at a time) and factorised into
an (s, m <= 2s) *stand-in* whose matrix is the same: ``Z = [A, -A]`` with ``A A^T = 1 - RDM``
(rows of zero mean and norm sqrt 2, so its correlation and cosine RDMs are the RDM), or
``A A^T = Xc Xc^T`` scaled so that its squared distances / m are those of X / d (same euclidean
RDM; CKA is invariant to the scale). The metric then runs unchanged on the stand-in — value,
bootstrap over stimuli, ceilings and permutation p-values are those of the features, up to
rounding (eigh in float64). Every other metric needs the features themselves: a layer within
the budget is read whole (``cache.get``); a larger one fails its job with the fix.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cortexalign.bench._stats import PERMUTATION_TESTS, add_fdr
from cortexalign.bench._targets import Target
from cortexalign.errors import InputError
from cortexalign.features import CacheIntegrityError, FeatureCache
from cortexalign.metrics import METRICS, score, streaming_rdm
from cortexalign.results import ScoreRecord
from cortexalign.stimuli import StimulusSet

__all__ = ["score_job", "uses_maps", "jsonable", "CachedLayer", "STREAMED_METRICS", "stand_in"]


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


def _rdm_method(options: dict[str, Any]) -> str:
    default = inspect.signature(METRICS.get("rsa")).parameters["rdm_method"].default
    return options.get("rdm_method", default)


STREAMED_METRICS: dict[str, Any] = {
    "rsa": _rdm_method,
    "cka_linear": lambda options: "euclidean",
    "cka_linear_debiased": lambda options: "euclidean",
    "cka_rbf": lambda options: "euclidean",
}
"""Metric name -> ``f(metric options) -> streaming_rdm method`` whose (s, s) matrix determines
the score (module docstring); these metrics are scored from a stand-in, never the features."""


class _Rows2d:
    """(s, prod(rest)) rows of an (s, ...) cache view, for ``streaming_rdm``."""

    def __init__(self, view: Any):
        self.view = view
        self.shape = (view.shape[0], int(np.prod(view.shape[1:], dtype=np.int64)))

    def __getitem__(self, rows: slice) -> np.ndarray:
        block = self.view[rows]
        return block.reshape(len(block), -1)


def stand_in(source_sd: Any, method: str, block_rows: int | None = None) -> np.ndarray:
    """An (s, m) float64 matrix with the same ``method`` RDM as the (s, d) ``source_sd``.

    ``correlation``/``cosine``: ``[A, -A]`` with ``A A^T = 1 - RDM``; ``euclidean``: ``A``
    with ``A A^T = -d/2 J RDM J`` (classical MDS), scaled by ``sqrt(m / d)``. Only the RDM is
    held (streamed from ``source_sd``, any row-sliceable source), besides the result.
    """
    src = source_sd if len(source_sd.shape) == 2 else _Rows2d(source_sd)
    rdm_ss = streaming_rdm(src, method, block_rows=block_rows)
    d = src.shape[1]
    if method == "euclidean":
        dist_ss = rdm_ss * d
        gram_ss = -0.5 * (dist_ss - dist_ss.mean(axis=0) - dist_ss.mean(axis=1)[:, None]
                          + dist_ss.mean())
    else:
        gram_ss = 1.0 - rdm_ss
    del rdm_ss
    lam, u_sm = np.linalg.eigh(gram_ss)
    keep = lam > 0  # the rest is rounding of a positive semi-definite matrix
    a_sm = u_sm[:, keep] * np.sqrt(lam[keep])
    if method == "euclidean":
        return a_sm * np.sqrt(a_sm.shape[1] / d)
    return np.concatenate([a_sm, -a_sm], axis=1)


@dataclass
class CachedLayer:
    """A layer's (s, ...) features left in the feature cache, scored within a memory budget.

    ``features_for(metric, options)`` gives what ``score_job`` scores: a stand-in for the
    ``STREAMED_METRICS`` (made once per RDM method), the whole features for the others when they
    fit in ``budget_bytes``. ``release()`` drops what is held (the runner calls it when it moves
    to the next layer).
    """

    cache: FeatureCache
    key: str
    layer: str
    budget_bytes: int
    _held: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _view(self) -> Any:
        view = self.cache.open(self.key)
        if view is None:
            raise CacheIntegrityError(f"the cached features of layer {self.layer!r} "
                                      f"({self.key[:12]}...) are missing or corrupt; rerun to "
                                      "extract them again")
        return view

    def features_for(self, metric: str, options: dict[str, Any]) -> np.ndarray:
        if metric in STREAMED_METRICS:
            method = STREAMED_METRICS[metric](options)
            if method not in self._held:
                self._held[method] = stand_in(self._view(), method)
            return self._held[method]
        if "features" not in self._held:
            view = self._view()
            if view.nbytes > self.budget_bytes:
                raise InputError(
                    f"features of layer {self.layer!r}",
                    f"at most max_feature_memory_gb = {self.budget_bytes / 1e9:g} GB in memory "
                    f"for metric {metric!r} (it needs the features themselves; rsa and cka_* "
                    "are streamed from the cache)",
                    f"{view.nbytes / 1e9:.3g} GB ({view.shape[0]} stimuli x "
                    f"{view.nbytes // max(1, view.shape[0] * view.dtype.itemsize)} features, "
                    f"{view.dtype})",
                    "pool this layer to fewer features (pooling: mean or grid2), score fewer "
                    "stimuli, or raise max_feature_memory_gb")
            self._held["features"] = view.read()
        return self._held["features"]

    def release(self) -> None:
        self._held.clear()


def score_job(job, adapter, values: np.ndarray | CachedLayer, groups: list[Target], stimuli: StimulusSet, *,
              n_bootstrap: int, seed: int, n_permutations: int = 0) -> list[ScoreRecord]:
    """One ``ScoreRecord`` per group of the job's target (see the module docstring).

    Parameters
    ----------
    job : a ``ScoreJob``; adapter : the loaded model (for ``model_id`` and its preprocessing).
    values : (s, ...) features of ``job.layer``: (s, d) activations or (s, gh, gw) maps; or a
        ``CachedLayer`` (features left in the cache: streamed, see the module docstring).
    groups : the target's groups (``load_targets``), data in the stimuli's order.
    """
    name = job.metric.name
    entry = METRICS.entry(name)
    if isinstance(values, CachedLayer):
        values = values.features_for(name, job.metric.options)
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
