"""Score one job: a layer's features against every group of a neural target, with statistics.

What the runner adds around ``metrics.score``:

- map metrics (registry metadata ``features="maps"``) get the (s, gh, gw) maps, the others the
  flattened (s, d) features; metrics with ``needs_stimuli=True`` get the context ``stimuli`` and
  ``pad_square`` (true when the model's preprocessing pads to a square, as SAM's does);
- ``n_permutations`` (config) goes to metrics that take it, and ``PERMUTATION_TESTS`` supplies
  the p-value of the others (``rsa``);
- each row's ``extra`` records the group (area, Cre line...), the layer's position and the feature
  kind; with p-values, ``p_fdr`` is Benjamini-Hochberg across the groups of the job;
- ``extra`` is made JSON-safe (arrays to lists, NaN to None);
- a metric's options are checked by ``check_job_options`` (``metrics.score``'s check, with the
  metric's own ``check_options`` such as CKA kinds' and ridge solvers' options, plus the names
  the run sets itself) before any job runs, so a bad option fails the run with ``score``'s
  ``InputError``, naming the config entry, on the in-memory and the streamed path alike.

Features larger than the run's memory budget stay in the feature cache (:class:`CachedLayer`,
issue 9). ``rsa`` and the ``cka_*`` metrics depend on the features only through a stimulus x
stimulus matrix, which is streamed from the cache two row blocks at a time and scored by the
metrics' matrix entry points (``STREAMED_METRICS``): ``rsa`` from the model RDM
(``metrics.streaming_rdm`` with the job's ``rdm_method``, then ``metrics.rsa_from_rdm`` and
``rsa_permutation_p_from_rdm``), ``cka_*`` from the centred linear Gram ``Xc Xc^T``
(``metrics.streaming_gram``, then ``metrics.cka_from_gram``). These give the in-memory Score —
value, bootstrap over stimuli, ceilings, permutation p — up to summation order, and the job
keys are the same. Every other metric needs the features themselves: a layer within the budget
is read whole (``cache.get``); a larger one fails its job with the fix. Attention and conv maps
(``features: attention``/``conv_map``) take the same path when they exceed the budget
(``features.extract`` streams them): ``rsa``/``cka_*`` stream the flattened (s, gh * gw)
rows (``_Rows2d``), and map metrics get the whole (s, gh, gw) maps from ``features_for``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from cortexalign.bench._stats import add_fdr
from cortexalign.bench._targets import Target
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import CacheIntegrityError, FeatureCache
from cortexalign.metrics import (
    METRICS,
    PERMUTATION_TESTS,
    Score,
    check_options,
    cka_from_gram,
    rsa_from_rdm,
    rsa_permutation_p_from_rdm,
    score,
    streaming_gram,
    streaming_rdm,
)
from cortexalign.results import ScoreRecord
from cortexalign.stimuli import StimulusSet

__all__ = ["score_job", "uses_maps", "jsonable", "CachedLayer", "STREAMED_METRICS",
           "StreamedMetric", "check_job_options"]

#: Options every job gets from the run (the config's ``n_bootstrap``/``seed``) or, for metrics
#: with ``needs_stimuli``, from the runner (``stimuli``/``pad_square``): not metric options.
RUN_OPTIONS = ("n_bootstrap", "seed", "stimuli", "pad_square")


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


def check_job_options(metric_name: str, options: dict[str, Any], entry: str | None = None
                      ) -> None:
    """Raise the ``InputError`` of ``metrics.score`` for options the metric does not take or
    refuses (``metrics.check_options``: names, and the metric's own ``check_options`` such as
    CKA kinds' options and ridge solvers' options), and one for options the run sets itself
    (``RUN_OPTIONS``): checked for every metric of a config before anything is written, and
    again by ``score_job``. The errors name the config entry ``entry`` (default
    ``metrics (<metric_name>)``) and its option."""
    where = entry or f"metrics ({metric_name})"
    try:
        check_options(metric_name, options)
    except UnknownNameError as err:  # e.g. an unknown ridge solver
        raise UnknownNameError(err.kind, err.name, err.choices,
                               fix=f"in {where}.options use one of: {', '.join(err.choices)}"
                               ) from err
    except InputError as err:
        option = "" if err.parameter == "options" else f".{err.parameter}"
        raise InputError(f"{where}.options{option}", err.expected, err.received, err.fix
                         ) from err
    clash = sorted(set(options) & set(RUN_OPTIONS))
    if clash:
        raise InputError(f"{where}.options", "options of the metric itself; "
                         "n_bootstrap and seed are set for every job at the top of the config",
                         f"{clash}", "move n_bootstrap/seed to the top level of the config "
                         "(stimuli and pad_square are supplied by the runner)")


def _takes(metric_name: str, option: str) -> bool:
    params = inspect.signature(METRICS.get(metric_name)).parameters
    return option in params and params[option].kind is inspect.Parameter.KEYWORD_ONLY


def _rdm_method(options: dict[str, Any]) -> str:
    default = inspect.signature(METRICS.get("rsa")).parameters["rdm_method"].default
    return options.get("rdm_method", default)


@dataclass(frozen=True)
class StreamedMetric:
    """How a metric is scored from a stimulus x stimulus matrix streamed from the cache."""

    matrix: Callable[[dict[str, Any]], tuple[str, str | None]]
    """metric options -> the matrix: ``("rdm", method)`` (``streaming_rdm``) or ``("gram", None)``
    (``streaming_gram``, centred)."""
    score: Callable[..., Score]
    """``fn(matrix_ss, target, **metric options) -> Score``, equal to the metric on features."""
    p_value: Callable[..., float] | None = None
    """``fn(matrix_ss, target, *, n_permutations, seed, **options) -> p`` when the metric's p
    comes from ``PERMUTATION_TESTS``."""


STREAMED_METRICS: dict[str, StreamedMetric] = {
    "rsa": StreamedMetric(lambda options: ("rdm", _rdm_method(options)), rsa_from_rdm,
                          rsa_permutation_p_from_rdm),
    "cka_linear": StreamedMetric(lambda options: ("gram", None),
                                 partial(cka_from_gram, kind="linear")),
    "cka_linear_debiased": StreamedMetric(lambda options: ("gram", None),
                                          partial(cka_from_gram, kind="linear_debiased")),
    "cka_rbf": StreamedMetric(lambda options: ("gram", None),
                              partial(cka_from_gram, kind="rbf")),
}
"""Metric name -> ``StreamedMetric``: the metrics a ``CachedLayer`` scores without the features."""


class _Rows2d:
    """(s, prod(rest)) rows of an (s, ...) cache view, for ``streaming_rdm``/``streaming_gram``."""

    def __init__(self, view: Any):
        self.view = view
        self.shape = (view.shape[0], int(np.prod(view.shape[1:], dtype=np.int64)))

    def __getitem__(self, rows: slice) -> np.ndarray:
        block = self.view[rows]
        return block.reshape(len(block), -1)


@dataclass
class CachedLayer:
    """A layer's (s, ...) features left in the feature cache, scored within a memory budget.

    ``matrix_for(metric, options)`` gives the (s, s) matrix a ``STREAMED_METRICS`` entry scores
    (streamed once per RDM method, once for the Gram), ``features_for(metric)`` the whole
    features for the other metrics when they fit in ``budget_bytes``. ``release()`` drops what is
    held (the runner calls it when it moves to the next layer). ``maps``: the entry holds
    attention or conv maps (s, gh, gw) rather than activations (only changes an error's advice).
    """

    cache: FeatureCache
    key: str
    layer: str
    budget_bytes: int
    maps: bool = False
    _held: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def _view(self) -> Any:
        view = self.cache.open(self.key)
        if view is None:
            raise CacheIntegrityError(f"the cached features of layer {self.layer!r} "
                                      f"({self.key[:12]}...) are missing or corrupt; rerun to "
                                      "extract them again")
        return view

    def matrix_for(self, metric: str, options: dict[str, Any]) -> np.ndarray:
        """The (s, s) float64 matrix ``STREAMED_METRICS[metric]`` scores, streamed from the
        cache."""
        what = STREAMED_METRICS[metric].matrix(options)
        if what not in self._held:
            view = self._view()
            src = view if len(view.shape) == 2 else _Rows2d(view)
            self._held[what] = (streaming_gram(src) if what[0] == "gram"
                                else streaming_rdm(src, what[1]))
        return self._held[what]

    def features_for(self, metric: str) -> np.ndarray:
        """The whole (s, ...) features, if they fit in the budget (else an ``InputError``)."""
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
                    ("score fewer stimuli or blocks, or raise max_feature_memory_gb (maps are "
                     "one value per grid cell: they cannot be pooled further)")
                    if self.maps else
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
    check_job_options(name, job.metric.options)  # score()'s InputError on the streamed path too
    if isinstance(values, CachedLayer) and name in STREAMED_METRICS:
        streamed = STREAMED_METRICS[name]
        x = values.matrix_for(name, job.metric.options)
        score_fn, p_fn = partial(streamed.score, x), streamed.p_value
    else:
        if isinstance(values, CachedLayer):
            values = values.features_for(name)
        x = np.asarray(values, dtype=np.float64)
        if not uses_maps(name):
            x = x.reshape(len(x), -1)
        score_fn, p_fn = partial(score, name, x), PERMUTATION_TESTS.get(name)
    opts = dict(job.metric.options)
    if entry.meta.get("needs_stimuli"):
        pads = getattr(adapter.preprocess, "resize", "") == "longest_side_pad"
        opts.update(stimuli=stimuli, pad_square=pads)
    own_p = _takes(name, "n_permutations")
    if n_permutations and own_p:  # a metric's own n_permutations option wins (cheaper nulls)
        opts.setdefault("n_permutations", n_permutations)
    records = []
    for target in groups:
        started = time.time()
        result = score_fn(target.data, n_bootstrap=n_bootstrap, seed=seed, **opts)
        if n_permutations and not own_p and p_fn is not None:
            p = p_fn(x, target.data, n_permutations=n_permutations, seed=seed,
                     **job.metric.options)
            result = dataclasses.replace(result, p_value=p)
        if target.ceiling is not None:  # the dataset's own, shown as published
            result = result.with_published_ceiling(*target.ceiling)
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
