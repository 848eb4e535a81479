"""The metric registry.

Every metric is a plain function registered with ``@METRICS.register(name, citation=..., target=...)``::

    fn(features_sd, target, *, n_bootstrap=0, seed=0, device=None, **options) -> Score

- ``features_sd``: (s, d) array (numpy or torch) of one layer's features, rows in the target's
  stimulus order (the pipeline aligns ids before calling).
- ``target``: an ``RDMSet`` (``target="rdm"``), an ``xarray.DataArray`` of responses
  (``target="responses"``), or either (``target="any"``).
- metadata keys: ``citation`` (str, required), ``target`` ("rdm" | "responses" | "any"),
  ``description`` (one line), ``higher_is_better`` (bool, default True), ``features``
  ("vectors" (default) | "maps"), ``needs_stimuli`` (bool, default False), ``check_options``
  (``fn(arguments)`` raising ``InputError`` for option values or combinations the metric refuses,
  given its keyword arguments with defaults applied; ``metrics.check_options`` calls it, so a
  config's bad options fail before any job runs. Use the code the metric itself checks with).

Optional context. A metric registered with ``features="maps"`` receives (s, gh, gw) model maps
(attention or conv maps, one per stimulus) instead of (s, d) vectors. A metric registered with
``needs_stimuli=True`` also takes the keyword-only context arguments ``stimuli`` (the
``StimulusSet`` in the rows' order) and ``pad_square`` (bool: the model's maps cover the image
padded bottom/right to a square, as SAM's preprocessing does); the runner passes them to such
metrics only. Metrics that compute a permutation p-value take ``n_permutations`` (0: none) and
store it in ``Score.p_value``.
"""

from __future__ import annotations

from cortexalign.registry import Registry

__all__ = ["METRICS"]

METRICS: Registry = Registry("metric")
