"""Several feature kinds of one model from the same forward passes.

A study often asks two kinds of the same model: the jalil2026 study scores each SAM-family
encoder's attention maps and its conv maps, as two config entries. :func:`extract_kinds` runs
the model once per batch for both (``_kinds.shared_batch``: the attention hooks ride on the conv
maps' forward) through the one batch loop (``_loop.run_batches``), and stores each kind's
layers under the keys, metadata and ``Features`` that :func:`extract` gives that kind alone, so
a later ``extract`` of either kind reads them from the cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cortexalign.compute import compute_threads
from cortexalign.features._cache import FeatureCache
from cortexalign.features._extract import (
    Features,
    _check_inputs,
    _keys,
    _metadata,
    _resolve_precision,
    extract,
)
from cortexalign.features._kinds import (
    FEATURE_KINDS,
    SHARED_FORWARD,
    FeatureKind,
    kind_options,
    resolve_kind,
    shared_batch,
)
from cortexalign.features._loop import ArrayRows, choose_batch_size, forward_work, run_batches
from cortexalign.stimuli import StimulusSet

__all__ = ["extract_kinds"]


def extract_kinds(adapter: Any, stimuli: StimulusSet,
                  requests: Mapping[str, tuple[Sequence[str], Mapping[str, Any] | None]], *,
                  batch_size: int | None = None, cache: FeatureCache | None = None,
                  progress: bool = True, dtype: str = "float32") -> dict[str, dict[str, Features]]:
    """:func:`extract` of several kinds of one model, in memory, sharing forward passes.

    Parameters
    ----------
    requests : kind -> (layers, options), e.g. ``{"attention": (blocks, {}), "conv_map":
        (layers, {})}``. The kinds of ``SHARED_FORWARD`` share each batch's forward pass when
        both have layers missing from ``cache``; any other request is :func:`extract` of each
        kind in turn (the same result, one pass per kind).
    batch_size, cache, progress, dtype : as in :func:`extract`.

    Returns
    -------
    kind -> layer -> Features: for each kind what ``extract`` of that kind alone returns
    (values, keys, ``from_cache``), and the same cache entries.
    """
    args = {"batch_size": batch_size, "cache": cache, "progress": progress, "dtype": dtype}
    plans = {kind: _Plan(adapter, stimuli, kind, layers, options, cache, args)
             for kind, (layers, options) in requests.items()}
    if set(plans) != SHARED_FORWARD or not all(p.todo for p in plans.values()):
        return {kind: extract(adapter, stimuli, p.names, p.kind, p.opts, **args)
                for kind, p in plans.items()}
    owner = {f"{layer} ({kind})": (kind, layer) for kind, p in plans.items() for layer in p.todo}
    composite = FeatureKind(
        lambda a, x, names, _: _flat(shared_batch(a, x, {k: (p.todo, p.opts)
                                                         for k, p in plans.items()})),
        lambda *_: list(owner), lambda *_: "shared", maps=True, precision="fp32",
        values_name=" and ".join(FEATURE_KINDS.get(k).values_name for k in plans))
    arrays: dict[str, ArrayRows] = {}

    def open_array(name: str, row_shape: tuple[int, ...]) -> ArrayRows:
        if name not in arrays:
            arrays[name] = ArrayRows((len(stimuli), *row_shape), dtype)
        return arrays[name]

    with compute_threads(forward_work(adapter, len(stimuli))):  # as extract's
        chosen = choose_batch_size(adapter, stimuli, list(owner), composite, {}, "fp32",
                                   batch_size, progress)
        run_batches(adapter, stimuli, list(owner), composite, {}, chosen, "fp32", dtype,
                    progress, open_array)
    for name, (kind, layer) in owner.items():
        plans[kind].store(layer, arrays[name].values, chosen)
    return {kind: p.result() for kind, p in plans.items()}


def _flat(by_kind: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{layer} ({kind})": v for kind, maps in by_kind.items() for layer, v in maps.items()}


class _Plan:
    """One kind of the request: its checked layers, options, keys and what the cache holds."""

    def __init__(self, adapter, stimuli, kind, layers, options, cache, args):
        self.names = _check_inputs(adapter, stimuli, layers, args["batch_size"], "auto",
                                   args["dtype"], cache)
        self.adapter, self.stimuli, self.cache, self.dtype = adapter, stimuli, cache, args["dtype"]
        self.kind = resolve_kind(kind, adapter)
        self.feat = FEATURE_KINDS.get(self.kind)
        self.opts = kind_options(self.kind, options)
        self.precision = _resolve_precision(self.feat, "auto", torch.device(adapter.device))
        if self.feat.check is not None:
            self.feat.check(adapter, self.names, self.opts)
        self.keys = _keys(adapter, stimuli, self.names, self.feat, self.opts, self.precision,
                          self.dtype)
        self.label = self.feat.key_name(self.opts, self.names)
        self.found: dict[str, Features] = {}
        for layer in self.names if cache is not None else []:
            hit = cache.get(self.keys[layer])
            if hit is not None and hit[1].get("stimulus_ids") == list(stimuli.ids):
                self.found[layer] = self._features(layer, hit[0], True)
        self.todo = [layer for layer in self.names if layer not in self.found]

    def _features(self, layer: str, values: Any, from_cache: bool) -> Features:
        return Features(values, self.stimuli.ids, self.adapter.model_id, layer, self.label,
                        self.keys[layer], from_cache=from_cache)

    def store(self, layer: str, values: Any, batch_size: int) -> None:
        """Keep a computed layer (and put it in the cache, as ``extract`` does)."""
        if self.cache is not None:
            self.cache.put(self.keys[layer], values, _metadata(
                self.adapter, self.stimuli, self.kind, self.label, self.feat, self.opts,
                self.precision, self.dtype, batch_size, layer))
        self.found[layer] = self._features(layer, values, False)

    def result(self) -> dict[str, Features]:
        """Every layer's ``Features``, in the order asked."""
        return {layer: self.found[layer] for layer in self.names}
