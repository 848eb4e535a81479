"""The metric registry.

Every metric is a plain function registered with ``@METRICS.register(name, citation=..., target=...)``::

    fn(features_sd, target, *, n_bootstrap=0, seed=0, device=None, **options) -> Score

- ``features_sd``: (s, d) array (numpy or torch) of one layer's features, rows in the target's
  stimulus order (the pipeline aligns ids before calling).
- ``target``: an ``RDMSet`` (``target="rdm"``), an ``xarray.DataArray`` of responses
  (``target="responses"``), or either (``target="any"``).
- metadata keys: ``citation`` (str, required), ``target`` ("rdm" | "responses" | "any"),
  ``description`` (one line), ``higher_is_better`` (bool, default True).
"""

from __future__ import annotations

from cortexalign.registry import Registry

__all__ = ["METRICS"]

METRICS: Registry = Registry("metric")
