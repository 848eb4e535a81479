"""The ``partitions:`` entries of an experiment config: analyses of several feature sets at once.

A partition names 2 or more feature sets, each a (model, layer) of the config's ``models``, and
a method from ``PARTITION_METHODS``: variance partitioning (unique and shared R^2 of 2-3 sets;
Lescroart et al. 2015, de Heer et al. 2017; ``metrics.variance_partitioning``) or banded ridge
(one penalty per set, per-set share of R^2; Nunez-Elizalde et al. 2019;
``metrics.banded_ridge``). ``check_partitions`` validates the entries against the rest of the
config when it is loaded, before anything runs: method names, the number of sets, the model and
layer references, the targets, and the options — their names against the method's signature
and their values by the method's own checks, on a small synthetic problem (``_dry_run``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cortexalign.errors import InputError, UnknownNameError, close_matches
from cortexalign.metrics import PARTITION_RESERVED, banded_ridge, variance_partitioning

__all__ = ["PartitionSet", "PartitionSpec", "PartitionMethod", "PARTITION_METHODS",
           "RUN_SET_OPTIONS", "check_partitions", "set_model_index"]

#: Options every partition job gets from the run (the config's ``seed`` and ``device``).
RUN_SET_OPTIONS = ("seed", "device")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionSet(_Strict):
    """One feature set of a partition: a layer of a model of the config."""

    model: str = Field(description="The label (or, when unique, the name) of an entry of "
                                   "'models'; its pooling and features kind give the set's "
                                   "(stimulus, feature) matrix (maps are flattened).")
    layer: str = Field(description="A layer of that model; when the model lists its 'layers', "
                                   "one of them (so it is extracted once, through the cache).")


class PartitionSpec(_Strict):
    """An analysis of several feature sets at once against each responses target."""

    name: str = Field(description="A name for the partition (results and report).")
    method: str = Field(description="'variance_partitioning' (2-3 sets: unique and shared "
                                    "R^2 of every set, cross-validated ridge per union) or "
                                    "'banded_ridge' (2 or more sets: one ridge penalty per set, "
                                    "each set's share of the held-out R^2).")
    sets: dict[str, PartitionSet] = Field(description="Set label -> {model, layer}, e.g. "
                                          "{early: {model: resnet18, layer: layer1}, late: "
                                          "{model: resnet18, layer: layer4}}. Labels name the "
                                          "components (unique:early, shared:early&late) and "
                                          "may not contain + & or :.")
    targets: list[str] | Literal["all"] = Field(
        "all", description="Labels of 'neural' entries to analyse, or 'all' (every target that "
        "holds responses; RDM targets are skipped). One job per (partition, target); a split "
        "target's groups are analysed in that job.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the method: "
        "variance_partitioning {n_folds, alphas, inner_folds, scaling, solver}; banded_ridge "
        "{n_folds, alphas, n_iter, gammas, concentration, inner_folds, scaling, dtype, "
        "target_chunk}. seed and device come from the top of the config.")


@dataclass(frozen=True)
class PartitionMethod:
    """How a partition method runs and what it stores.

    Attributes
    ----------
    fn : ``fn(features {label: (s, d)}, target, *, seed, device, **options) -> result``.
    n_sets : (fewest, most) sets (most None: no limit).
    quantities : ``result -> [(kind, name, (n,) values)]``, the rows of ``partitions``.
    citation : the papers, listed in the report.
    working_bytes : ``(s, [d_1, ..., d_m]) -> bytes``, an estimate of the method's largest
        temporaries beyond its float64 input (``max_feature_memory_gb``; None: not estimated).
    """

    fn: Callable[..., Any]
    n_sets: tuple[int, int | None]
    quantities: Callable[[Any], list[tuple[str, str, np.ndarray]]]
    citation: str
    working_bytes: Callable[[int, list[int]], int] | None = None


def _vpa_quantities(result) -> list[tuple[str, str, np.ndarray]]:
    return ([("r2", k, v) for k, v in result.r2.items()]
            + [("component", k, v) for k, v in result.components.items()])


def _vpa_working_bytes(s: int, widths_m: list[int]) -> int:
    # the scaled concatenation of the largest union (train + test rows) and the ridge's (s, s)
    # kernel and eigenvectors
    return 8 * (s * sum(widths_m) + 2 * s * s)


def _banded_working_bytes(s: int, widths_m: list[int]) -> int:
    # float64 scaled copies of every space, one (s, s) Gram per space, the combined kernel and
    # its eigenvectors
    return 8 * (s * sum(widths_m) + (len(widths_m) + 2) * s * s)


def _banded_quantities(result) -> list[tuple[str, str, np.ndarray]]:
    full = "+".join(result.space_names)
    return ([("r2", full, result.r2), ("r", full, result.r)]
            + [("component", f"split:{k}", v) for k, v in result.r2_split.items()]
            + [("intercept", "intercept", result.r2_intercept)])


PARTITION_METHODS: dict[str, PartitionMethod] = {
    "variance_partitioning": PartitionMethod(
        variance_partitioning, (2, 3), _vpa_quantities,
        "Lescroart, Stansbury & Gallant (2015), Front. Comput. Neurosci. 9:135; de Heer et al. "
        "(2017), J. Neurosci. 37:6539 (variance partitioning)", _vpa_working_bytes),
    "banded_ridge": PartitionMethod(
        banded_ridge, (2, None), _banded_quantities,
        "Nunez-Elizalde, Huth & Gallant (2019), NeuroImage 197:482; Dupre la Tour et al. (2022), "
        "NeuroImage 264:119728 (banded ridge)", _banded_working_bytes),
}
"""Method name -> ``PartitionMethod``. Tests parametrize over it."""


def set_model_index(models: list, ref: str, where: str) -> int:
    """Index in ``models`` of the entry a set names: its label first, else its (unique) name."""
    for i, m in enumerate(models):
        if m.display == ref:
            return i
    named = [i for i, m in enumerate(models) if m.name == ref]
    if len(named) == 1:
        return named[0]
    labels = [m.display for m in models]
    if named:
        raise InputError(where, "the label of one entry of models", f"{ref!r}, the name of "
                         f"{len(named)} models ({', '.join(labels[i] for i in named)})",
                         "use the label of the one you mean")
    hint = close_matches(ref, labels + [m.name for m in models])
    raise InputError(where, f"the label or name of an entry of models ({', '.join(labels)})",
                     repr(ref), (f"did you mean {hint[0]!r}? " if hint else "")
                     + "add the model to models, or fix the reference")


def _option_names(method: PartitionMethod) -> list[str]:
    params = inspect.signature(method.fn).parameters
    return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in RUN_SET_OPTIONS]


def _dry_run(method: PartitionMethod, labels: list[str], options: dict[str, Any]) -> None:
    """Call the method on 24 synthetic stimuli so that its own checks judge the options.

    ``n_folds`` and ``inner_folds`` are bounded by the real stimulus count, unknown here: an int
    >= 2 is tried as 2 (the runner checks ``n_folds`` against the stimuli before anything runs).
    """
    from cortexalign.neural import make_responses

    rng = np.random.default_rng(0)
    s = 24
    feats = {label: rng.normal(size=(s, 2)) for label in labels}
    target = make_responses(rng.normal(size=(s, 2)), [f"s{i}" for i in range(s)])
    opts = dict(options)
    for k in ("n_folds", "inner_folds"):
        v = opts.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
            opts[k] = 2
    method.fn(feats, target, seed=0, device="cpu", **opts)


def _check_options(method_name: str, method: PartitionMethod, spec: PartitionSpec,
                   where: str) -> None:
    valid = _option_names(method)
    clash = sorted(set(spec.options) & set(RUN_SET_OPTIONS))
    if clash:
        raise InputError(f"{where}.options", f"options of {method_name} ({', '.join(valid)})",
                         f"{clash}", "seed and device are set for every job at the top of the "
                         "config: move them there")
    unknown = sorted(set(spec.options) - set(valid))
    if unknown:
        hint = close_matches(unknown[0], valid)
        raise InputError(f"{where}.options", f"options of {method_name}: {', '.join(valid)}",
                         f"{unknown}", (f"did you mean {hint[0]!r}? " if hint else "")
                         + "check the spelling of the option names")
    try:
        _dry_run(method, list(spec.sets), spec.options)
    except UnknownNameError as err:
        raise InputError(f"{where}.options", f"a known {err.kind} ({', '.join(err.choices)})",
                         repr(err.name), "use one of those names") from None
    except InputError as err:
        raise InputError(f"{where}.options.{err.parameter}", err.expected, err.received,
                         err.fix) from None
    except (TypeError, ValueError) as err:  # a value the method could not even convert
        raise InputError(f"{where}.options", f"option values {spec.method} accepts",
                         f"{spec.options!r}"[:200], f"fix the value: {err}") from None


def _check_sets(cfg, spec: PartitionSpec, method: PartitionMethod, where: str) -> None:
    lo, hi = method.n_sets
    if not lo <= len(spec.sets) <= (hi or len(spec.sets)):
        want = f"{lo} to {hi}" if hi else f"at least {lo}"
        raise InputError(f"{where}.sets", f"{want} feature sets for {spec.method}",
                         f"{len(spec.sets)} ({', '.join(spec.sets) or 'none'})",
                         "add or remove sets" + ("; partition more sets in groups of 3, or use "
                                                 "method: banded_ridge" if hi else ""))
    for label, ref in spec.sets.items():
        if not label or any(c in label for c in PARTITION_RESERVED):
            raise InputError(f"{where}.sets", f"set labels without {' '.join(PARTITION_RESERVED)}",
                             repr(label), "rename the set (those characters build the result "
                             "names: A+B, unique:A, shared:A&B)")
        model = cfg.models[set_model_index(cfg.models, ref.model, f"{where}.sets.{label}.model")]
        if isinstance(model.layers, list) and ref.layer not in model.layers:
            hint = close_matches(ref.layer, model.layers)
            raise InputError(f"{where}.sets.{label}.layer", f"a layer listed for model "
                             f"{model.display!r} ({', '.join(model.layers)})", repr(ref.layer),
                             (f"did you mean {hint[0]!r}? " if hint else "")
                             + "add the layer to that model's layers (it is extracted once and "
                             "shared with its per-layer jobs), or fix the name")


def check_partitions(cfg) -> None:
    """Raise ``InputError`` (naming ``partitions[i]...``) for anything wrong in ``cfg.partitions``
    that can be seen without the data: see the module docstring."""
    names = [p.name for p in cfg.partitions]
    labels = [n.display for n in cfg.neural]
    for i, spec in enumerate(cfg.partitions):
        where = f"partitions[{i}] ({spec.name})"
        if spec.name in names[:i]:
            raise InputError(f"partitions[{i}].name", "a name no other partition has",
                             f"{spec.name!r}, the name of partitions[{names.index(spec.name)}]",
                             "give each partition a distinct name")
        if spec.method not in PARTITION_METHODS:
            hint = close_matches(spec.method, PARTITION_METHODS)
            raise InputError(f"{where}.method", f"one of {', '.join(PARTITION_METHODS)}",
                             repr(spec.method), f"did you mean {hint[0]!r}?" if hint else
                             "use one of those methods")
        method = PARTITION_METHODS[spec.method]
        _check_sets(cfg, spec, method, where)
        if spec.targets != "all":
            for t in spec.targets:
                if t not in labels:
                    hint = close_matches(t, labels)
                    raise InputError(f"{where}.targets", f"labels of neural entries "
                                     f"({', '.join(labels)}) or 'all'", repr(t),
                                     f"did you mean {hint[0]!r}?" if hint else
                                     "use a target's label (or its source when it has none)")
        _check_options(spec.method, method, spec, where)
