"""Scoring by metric name, and the table of registered metrics."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import xarray as xr

from cortexalign.compute import gram_work, sized_by
from cortexalign.errors import InputError
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._ridge import check_alphas
from cortexalign.metrics._score import Score, check_published_ceiling
from cortexalign.neural import RDMSet

__all__ = ["score", "list_metrics", "check_options"]

_TARGET_TYPES = {"rdm": (RDMSet,), "responses": (xr.DataArray,), "any": (RDMSet, xr.DataArray)}
_TARGET_WORDS = {"rdm": "an RDMSet", "responses": "a responses DataArray (stimulus, neuroid[, "
                 "repetition])", "any": "an RDMSet or a responses DataArray"}


@sized_by(lambda metric_name, features_sd, target, **_: gram_work(features_sd))
def score(metric_name: str, features_sd, target, *,
          ceiling: tuple[float, float] | None = None, **options) -> Score:
    """Score one layer's features against a neural target with a registered metric.

    Parameters
    ----------
    metric_name : a key of ``METRICS`` (``rsa``, ``cka_linear``...); unknown names fail with the
        close matches.
    features_sd : (s, d) features, rows in the target's stimulus order.
    target : ``RDMSet`` or responses ``DataArray``, as the metric's ``target`` metadata says.
    ceiling : the target's own published ceiling ``(low, high)`` (e.g. from the dataset's
        paper), used instead of the computed one and shown as published
        (``Score.with_published_ceiling``).
    options : passed to the metric (``n_bootstrap``, ``seed``, ``device``, ``compare``...).

    Returns
    -------
    Score
    """
    entry = METRICS.entry(metric_name)
    kind = entry.meta.get("target", "any")
    if not isinstance(target, _TARGET_TYPES[kind]):
        hint = (" CKA compares feature spaces, so it needs the responses; use metric 'rsa' for "
                "RDMs." if isinstance(target, RDMSet) and kind == "responses" else "")
        raise InputError("target", f"{_TARGET_WORDS[kind]} for metric {metric_name!r}",
                         type(target).__name__, "load it with cortexalign.neural.load_neural or "
                         f"wrap an array with make_responses / RDMSet.{hint}")
    check_options(metric_name, options)
    if ceiling is not None:
        check_published_ceiling(*_pair(ceiling))
    result = entry.obj(features_sd, target, **options)
    return result if ceiling is None else result.with_published_ceiling(*_pair(ceiling))


def _pair(ceiling) -> tuple:
    if isinstance(ceiling, dict):
        return ceiling.get("low"), ceiling.get("high")
    try:
        low, high = ceiling
    except (TypeError, ValueError):
        return ceiling, None
    return low, high


def check_options(metric_name: str, options) -> None:
    """Raise ``score``'s ``InputError`` for options the metric does not take; the runner calls
    it for every metric of a config before any job runs.

    Option names are checked against the metric's keyword-only parameters (a metric with
    ``**options`` checks its own). A metric registered with ``check_options=fn`` metadata then
    gets ``fn(arguments)``: its keyword arguments bound to ``options`` with the defaults of its
    signature applied (a ``**options`` parameter as the dict under its own name), so it checks
    the combinations it takes (CKA kinds' options, ridge solvers' options) with the same code
    that checks them when it runs.
    """
    entry = METRICS.entry(metric_name)
    signature = _signature(entry.obj)
    params = signature.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise InputError("options", f"options of metric {metric_name!r}: {', '.join(valid)}",
                             f"{unknown}", "check the spelling of the option names")
    check_count_options(options)
    if "ci_level" in options:  # every metric's interval level, checked even with no bootstrap
        from cortexalign.stats import check_ci_level  # stats builds on metrics: imported here

        check_ci_level(options["ci_level"])
    check = entry.meta.get("check_options")
    if check is not None:
        positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
        bound = signature.bind_partial(**{n: None for n in positional}, **dict(options))
        bound.apply_defaults()
        check({n: v for n, v in bound.arguments.items() if n not in positional})


@functools.lru_cache(maxsize=256)
def _signature(fn) -> inspect.Signature:
    """A metric's signature, read once (``inspect.signature`` costs ~0.1 ms a call)."""
    return inspect.signature(fn)


#: integer options shared by several metrics: smallest value, and an example for the fix
_COUNTS = {"n_bootstrap": (0, "1000 (0 switches the bootstrap off)"), "n_permutations": (0, "1000"),
           "n_splits": (1, "100"), "n_folds": (2, "5"), "inner_folds": (2, "5"),
           "n_components": (1, "25"), "seed": (0, "0")}


def check_count_options(options) -> None:
    """The shared integer options and ``alphas``, by type and lower bound (what the stimuli
    bound, such as ``n_folds`` at most the stimulus count, is checked where the data is)."""
    for name, (low, example) in _COUNTS.items():
        value = options.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InputError(name, f"an integer >= {low}", repr(value), f"e.g. {name}: {example}")
    if options.get("alphas") is not None:
        check_alphas(options["alphas"])


def list_metrics() -> list[dict[str, str]]:
    """One row per registered metric: name, target kind, citation, description."""
    return [{"name": e.name, "target": e.meta.get("target", "any"),
             "citation": e.meta.get("citation", ""), "description": e.description}
            for e in METRICS.entries()]
